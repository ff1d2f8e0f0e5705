import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import jacspec  # noqa: E402
from jacspec import fit  # noqa: E402
from jacspec.plot import mean_log_curves, probability_plots, spectrum_figure, spectrum_histogram  # noqa: E402
from jacspec.probes import PointJacobian  # noqa: E402

from zoo import mlp  # noqa: E402


def bimodal(seed=0):
    rng = np.random.default_rng(seed)
    return np.exp(np.concatenate([rng.normal(-3, 0.5, 3000), rng.normal(1, 0.5, 2000)]))


def test_histogram_draws_split_and_two_fits():
    values = bimodal()
    split = fit.split_modes(values)
    ax = spectrum_histogram(values, split, label="test")
    assert len(ax.lines) == 3  # two fitted densities and the split line
    assert ax.lines[-1].get_xdata()[0] == pytest.approx(np.log(split.threshold))
    # the mode curves are fraction-weighted normal densities of log σ: their areas are the fractions
    for line, fraction in zip(ax.lines[:2], split.fractions):
        x, y = line.get_xdata(), line.get_ydata()
        assert np.trapezoid(y, x) == pytest.approx(fraction, abs=0.02)
    plt.close("all")


def test_probability_plots_report_r2():
    values = bimodal(1)
    split = fit.split_modes(values)
    axes = probability_plots(values, split)
    assert len(axes) == 2
    for ax, fit_ in zip(axes, split.fits):
        assert f"R² = {fit_.r2:.3f}" in ax.get_title()
    plt.close("all")


def test_spectrum_figure_from_probe_dataset(tmp_path):
    torch.manual_seed(0)
    model = mlp(d_in=10, width=32, c=6).double()
    ds = PointJacobian().measure(model, torch.randn(30, 10, dtype=torch.float64))
    fig = spectrum_figure(ds, label="init", path=tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
    plt.close(fig)


def test_mean_log_curves_from_run_files(tmp_path):
    torch.manual_seed(0)
    paths = {}
    for scale in (1.0, 2.0):
        model = mlp(d_in=6, width=8, c=3)
        x = torch.randn(20, 6)
        path = tmp_path / f"run{scale}.nc"
        monitor = jacspec.Monitor(model, [PointJacobian()], data={"train": (x, None)}, every=1, path=path)
        for step in range(3):
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(scale)
            monitor.step(step)
        paths[f"scale {scale}"] = path
    ax = mean_log_curves(paths, split="train")
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 1, 2])
    tree = jacspec.open_run(paths["scale 2.0"])
    expected = tree["point_jacobian"].to_dataset()["mean_log_singular_value"].sel(split="train").values
    np.testing.assert_allclose(ax.lines[1].get_ydata(), expected)
    plt.close("all")
