import numpy as np
import pytest
import torch

from jacspec.datasets import (
    dataset_noise,
    digits,
    digits_dataset_noise,
    pca_compress,
    symmetric_label_noise,
    with_label_noise,
)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_symmetric_label_noise_rates(p):
    # expected fractions: redrawn ~ p; changed ~ p (1 - 1/K); redrawn labels uniform over K classes
    n, k = 40_000, 10
    y = torch.arange(n) % k
    noisy, redrawn = symmetric_label_noise(y, p, n_classes=k, seed=1)
    assert noisy.dtype == y.dtype and noisy.shape == y.shape
    assert redrawn.float().mean().item() == pytest.approx(p, abs=0.01)
    assert (noisy != y).float().mean().item() == pytest.approx(p * (1 - 1 / k), abs=0.01)
    assert torch.equal(noisy[~redrawn], y[~redrawn])
    if p > 0:
        counts = np.bincount(noisy[redrawn].numpy(), minlength=k) / int(redrawn.sum())
        np.testing.assert_allclose(counts, 1 / k, atol=0.01)


def test_label_noise_is_seeded_and_leaves_global_rng():
    y = torch.arange(100) % 4
    state = torch.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002
    a, _ = symmetric_label_noise(y, 0.5, seed=3)
    b, _ = symmetric_label_noise(y, 0.5, seed=3)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state[0]) and np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002


def test_with_label_noise_corrupts_only_named_splits():
    data = digits()
    noisy = with_label_noise(data, 1.0, seed=0)
    assert torch.equal(noisy["test"][1], data["test"][1])
    assert (noisy["train"][1] != data["train"][1]).float().mean() > 0.8
    assert noisy["train"][0] is data["train"][0]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"y": torch.zeros(3), "p": 0.5}, TypeError, "integer class labels"),
        ({"y": torch.zeros(3, dtype=torch.long), "p": 1.5}, ValueError, r"probability in \[0, 1\]"),
        ({"y": torch.tensor([0, 5]), "p": 0.5, "n_classes": 3}, ValueError, "n_classes"),
    ],
)
def test_label_noise_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        symmetric_label_noise(**kwargs)


def test_pca_compress_matches_truncated_svd():
    # reference: rank-k reconstruction from numpy's SVD of the centred data (Eckart–Young)
    x = torch.randn(50, 12, dtype=torch.float64)
    centred = x.numpy() - x.numpy().mean(0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected = (u[:, :3] * s[:3]) @ vt[:3] + x.numpy().mean(0)
    np.testing.assert_allclose(pca_compress(x, 3).numpy(), expected, atol=1e-10)


def test_dataset_noise_adds_r_times_compressed_similar_data():
    x = torch.randn(20, 8, dtype=torch.float64)
    sim = torch.randn(30, 8, dtype=torch.float64)
    noised = dataset_noise(x, sim, 0.5, n_components=2, seed=0)
    difference = (noised - x) / 0.5
    compressed = pca_compress(sim, 2)
    # every added row is one of the compressed similar examples, each used at most once
    matches = [int(torch.cdist(row[None], compressed).argmin()) for row in difference]
    assert torch.allclose(difference, compressed[matches], atol=1e-12)
    assert len(set(matches)) == 20
    assert torch.equal(dataset_noise(x, sim, 0.0, 2), x)
    with pytest.raises(ValueError, match="non-negative"):
        dataset_noise(x, sim, -1.0)
    with pytest.raises(ValueError, match="same shape"):
        dataset_noise(x, torch.randn(5, 7, dtype=torch.float64), 1.0)


def test_digits_dataset_noise_halves():
    clean = digits_dataset_noise(0.0)
    noisy = digits_dataset_noise(1.0, n_components=5)
    assert clean["train"][0].shape[1] == 64 and clean["train"][0].shape[0] + clean["test"][0].shape[0] == 898
    assert torch.equal(clean["train"][1], noisy["train"][1])
    assert not torch.allclose(clean["train"][0], noisy["train"][0])
