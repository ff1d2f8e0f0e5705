import importlib.util
import math
import pathlib

import numpy as np
import pytest
import torch
import xarray as xr

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "spectral_bias.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("spectral_bias_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("amplitudes", [(1.0, 1.0, 1.0), (0.4, 0.7, 1.0)], ids=["equal", "increasing"])
def test_reduced_spectral_bias_lowest_frequency_first(example, one_thread, amplitudes):
    # Reduced Experiment 1 (4×64 ReLU MLP, 1500 full-batch Adam steps): the lowest frequency's
    # |f̃(k)|/A reaches 1/2 before the highest one does (the highest may not reach it at all: inf).
    frequencies = (5, 10, 20)
    results, models = example.train(
        frequencies, amplitudes, depth=4, width=64, steps=1500, lr=3e-3, every=25, n_phases=1, progress=False
    )
    assert results["normalized_amplitude"].dims == ("phase", "step", "target_frequency")
    assert results["spectral_norm"].sizes["layer"] == 5
    reach = example.learning_step(results["normalized_amplitude"].mean("phase"))
    assert math.isfinite(reach.sel(target_frequency=5).item())
    assert reach.sel(target_frequency=5).item() < reach.sel(target_frequency=20).item()
    # the loss went down and the product of spectral norms grew (Baratin 2021, Fig. 3.1)
    loss = results["loss"].isel(phase=0)
    assert loss.isel(step=-1) < loss.isel(step=0)
    norms = results["spectral_norm"].isel(phase=0)
    assert float(norms.isel(step=-1).prod()) > float(norms.isel(step=0).prod())
    # Experiment 2 on the trained network: finite ratios with dims (frequency, perturbation)
    ratio = example.robustness(models, frequencies, sizes=(0.001, 0.1), n_draws=3)
    assert ratio.dims == ("frequency", "perturbation")
    assert np.isfinite(ratio.values).all()
    assert abs(ratio.sel(frequency=5, perturbation=0.001).item() - 1) < 0.05


def test_learning_step(example):
    values = xr.DataArray(
        [[0.1, 0.0], [0.6, 0.2], [0.9, 0.4]],
        dims=("step", "target_frequency"),
        coords={"step": [0, 10, 20], "target_frequency": [5, 50]},
    )
    out = example.learning_step(values)
    assert out.sel(target_frequency=5).item() == 10
    assert out.sel(target_frequency=50).item() == math.inf


@pytest.fixture(scope="module")
def manifold_example():
    path = EXAMPLE.parent / "manifold_kernel_spectra.py"
    spec = importlib.util.spec_from_file_location("manifold_kernel_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reduced_manifold_and_kernel_spectra(manifold_example):
    # more petals: more of the same network's energy at latent frequencies ≥ 10 (Baratin 2021, eq. 15)
    spectra = manifold_example.manifold_spectra(petals=(0, 16), n_points=200, width=32)
    high = {L: float((a.values[10:] ** 2).sum() / (a.values[1:] ** 2).sum()) for L, a in spectra.items()}
    assert high[16] > 5 * high[0]
    # a faster radial wave puts its energy at higher kernel eigen-indices
    kernel = manifold_example.kernel_spectra(ks=(2, 32), n_samples=150)
    half = {k: int(np.searchsorted(manifold_example.cumulative_energy(a).values, 0.5)) for k, a in kernel.items()}
    assert half[32] > half[2] + 20
