import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
from torch import nn  # noqa: E402

from jacspec.datasets import flower_curve  # noqa: E402
from jacspec.plot import plot_manifold_spectra, plot_robustness, plot_spectral_bias, plot_spectral_norms  # noqa: E402
from jacspec.probes import FourierSpectrum  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_heatmap_clips_and_labels():
    data = xr.DataArray(
        np.array([[0.0, 2.0], [0.5, -1.0], [1.0, 0.3]]),
        dims=("step", "target_frequency"),
        coords={"step": [0, 100, 200], "target_frequency": [5, 50]},
    )
    ax = plot_spectral_bias(data, title="equal")
    mesh = ax.collections[0]
    assert mesh.get_array().max() == 1.0 and mesh.get_array().min() == 0.0
    assert [t.get_text() for t in ax.get_yticklabels()] == ["5", "50"]
    with pytest.raises(ValueError, match="exactly the dims"):
        plot_spectral_bias(data.expand_dims(phase=[0]))


def test_spectral_norm_lines():
    data = xr.DataArray(np.ones((3, 2)), dims=("step", "layer"), coords={"step": [0, 1, 2], "layer": ["0", "2"]})
    ax = plot_spectral_norms(data)
    assert len(ax.lines) == 2


def test_robustness_and_manifold_plots_from_probe_output():
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    spectra = {
        f"L={L}": FourierSpectrum(curve=flower_curve(L), n_points=64).measure(model)["amplitude"] for L in (0, 4)
    }
    ax = plot_manifold_spectra(spectra, max_frequency=20)
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    one_d = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    ds = FourierSpectrum(n_points=32, perturbation=[0.01, 0.1], n_draws=2).measure(one_d)
    ax = plot_robustness(ds["perturbed_amplitude_ratio"], frequencies=[1, 2, 3])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    with pytest.raises(TypeError, match="mapping"):
        plot_manifold_spectra([])
    with pytest.raises(TypeError, match="DataArray"):
        plot_robustness(torch.zeros(2, 2))
