import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

import jacspec.datasets as datasets
from jacspec.datasets import embed_curve, flower_curve, radial_wave, spectral_bias_data, sum_of_sines


def test_exports():
    for name in ("flower_curve", "embed_curve", "radial_wave", "sum_of_sines", "spectral_bias_data"):
        assert name in datasets.__all__


@pytest.mark.parametrize("petals", [0, 1, 4, 20])
def test_flower_curve_matches_closed_form(petals):
    # reference: eq. 13 of Baratin 2021 written out in numpy
    z = np.linspace(0, 1, 37, endpoint=False)
    radius = 1 + 0.5 * np.sin(2 * np.pi * petals * z)
    expected = np.stack([radius * np.cos(2 * np.pi * z), radius * np.sin(2 * np.pi * z)], 1)
    points = flower_curve(petals)(torch.from_numpy(z))
    np.testing.assert_allclose(points.numpy(), expected, rtol=1e-12, atol=1e-14)
    # (n, 1) input is accepted too
    np.testing.assert_allclose(flower_curve(petals)(torch.from_numpy(z)[:, None]).numpy(), expected, atol=1e-14)


def test_flower_curve_bad_petals():
    with pytest.raises(ValueError, match="petals"):
        flower_curve(-1)
    with pytest.raises(ValueError, match="petals"):
        flower_curve(2.5)


@pytest.mark.parametrize("dim", [2, 3, 50])
def test_embedding_is_an_isometry(dim):
    curve = embed_curve(flower_curve(5), dim, seed=3)
    z = torch.rand(20, dtype=torch.float64)
    points = curve(z)
    assert points.shape == (20, dim)
    np.testing.assert_allclose(pdist(points.numpy()), pdist(flower_curve(5)(z).numpy()), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(curve.basis.T @ curve.basis, np.eye(2), atol=1e-12)
    with pytest.raises(ValueError, match="dim"):
        embed_curve(flower_curve(5), 1)


def test_radial_wave_matches_numpy():
    x = torch.rand(10, 28, 28, dtype=torch.float64)
    expected = np.sin(0.7 * np.linalg.norm(x.reshape(10, -1).numpy(), axis=1))
    np.testing.assert_allclose(radial_wave(x, 0.7).numpy(), expected, rtol=1e-12)


def test_sum_of_sines_matches_numpy():
    z = torch.linspace(0, 1, 50, dtype=torch.float64)
    k, a, phi = [3, 7], [1.0, 0.25], [0.1, 2.0]
    expected = sum(ai * np.sin(2 * np.pi * ki * z.numpy() + pi) for ki, ai, pi in zip(k, a, phi))
    np.testing.assert_allclose(sum_of_sines(z, k, a, phi).numpy(), expected, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="amplitudes"):
        sum_of_sines(z, k, [1.0, 2.0, 3.0])


def test_spectral_bias_data_is_seeded_and_leaves_global_rng():
    state = torch.get_rng_state()
    x, y, phases = spectral_bias_data(seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert x.shape == (200, 1) and y.shape == (200, 1) and x.dtype == torch.float32
    np.testing.assert_allclose(x[:, 0].numpy(), np.arange(200) / 200, rtol=1e-7)
    assert ((phases >= 0) & (phases < 2 * math.pi)).all()
    x2, y2, phases2 = spectral_bias_data(seed=4)
    assert torch.equal(y, y2) and torch.equal(phases, phases2)
    assert not torch.equal(spectral_bias_data(seed=5)[2], phases)
    expected = sum_of_sines(torch.arange(200, dtype=torch.float64) / 200, range(5, 55, 5), 1.0, phases)
    np.testing.assert_allclose(y[:, 0].numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
