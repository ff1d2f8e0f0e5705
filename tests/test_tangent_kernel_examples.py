"""The Disk dataset, the reduced reproduction examples and the tangent-kernel plots."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from jacspec.datasets import DISK_RADIUS, disk, disk_grid

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def examples_path():
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


def test_disk_dataset():
    data = disk(n_train=4000, n_test=10, seed=3)
    x, y = data["train"]
    assert x.shape == (4000, 2) and x.dtype == torch.float32 and y.dtype == torch.long
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    # label 1 exactly inside the disk of radius √(2/π), area 2 = half the square
    assert DISK_RADIUS == pytest.approx(math.sqrt(2 / math.pi))
    torch.testing.assert_close(y, (x.double().norm(dim=1) < DISK_RADIUS).long())
    assert abs(float(y.float().mean()) - 0.5) < 0.03  # balanced: 3 sd of a binomial mean is 0.024
    assert data["test"][0].shape == (10, 2)
    torch.testing.assert_close(disk(n_train=5, seed=1)["train"][0], disk(n_train=5, seed=1)["train"][0])
    with pytest.raises(ValueError, match="`n_train` must be a positive integer"):
        disk(n_train=0)


def test_disk_grid():
    grid = disk_grid(5)
    assert grid.shape == (25, 2)
    assert grid[0].tolist() == [-1.0, -1.0] and grid[1].tolist() == [-1.0, -0.5] and grid[-1].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="`size` must be an integer >= 2"):
        disk_grid(1)


@pytest.mark.parametrize("seeds", [(0, 1, 2, 3)])
def test_disk_example_reduced(examples_path, seeds):
    from disk_tangent_kernel import run

    rises, accuracy_gains = [], []
    for seed in seeds:
        result = run(
            iterations=150,
            checkpoints=(0, 150),
            n_train=150,
            grid_size=16,
            depth=4,
            width=64,
            lr=1.0,
            init="torch",
            n_eigenfunctions=3,
            seed=seed,
        )
        assert result["checkpoints"] == [0, 150]
        assert result["eigenfunctions"].shape == (2, 3, 16, 16)
        # each eigenfunction is a unit eigenvector on the grid
        np.testing.assert_allclose((result["eigenfunctions"] ** 2).sum(axis=(2, 3)), 1.0, rtol=1e-10)
        assert all(0 < r < 1 for r in result["ratio_20_1"])
        cka = result["cka_grid_labels"]
        assert all(0 <= c <= 1 for c in cka)
        rises.append(cka[-1] / cka[0])
        accuracy_gains.append(result["train_accuracy"][-1] - result["train_accuracy"][0])
    # The kernel stretches along the label direction (Baratin, thesis, Fig. 4.1 and Appendix B.3.1):
    # CKA of the grid kernel with the Disk label kernel rises with training. Measured on this reduced
    # setting, seeds 0-11: a rise of 1.91x-7.51x per seed (3.43, 3.60, 2.21, 2.40 for seeds 0-3,
    # geometric mean 2.85x); the assertion asks for a geometric mean of 1.5x (margin 90 %) and a rise on
    # every seed (smallest measured rise 1.91x, margin 91 %).
    # λ20/λ1 itself is not asserted here: at this size its change is seed-dependent (0.39x-4.04x over
    # seeds 0-11, a drop on 8 of 12); the 9x drop of the paper-sized run is in docs/tangent_kernel.md.
    assert math.exp(np.mean(np.log(rises))) > 1.5, rises
    assert min(rises) > 1.0, rises
    assert np.mean(accuracy_gains) > 0.2, accuracy_gains


def test_digits_example_reduced(examples_path, tmp_path):
    from ntk_alignment_digits import run

    ds = run(random_fraction=0.5, steps=20, n_probe=8, width=16, depth=2, per_decade=2, path=tmp_path / "r.nc")
    assert (tmp_path / "r.nc").exists()
    assert list(ds["split"].values) == ["train", "test"]
    assert list(ds["step"].values) == [0, 1, 3, 10]
    r = 8 * 10
    assert ((ds["effective_rank"] >= 1) & (ds["effective_rank"] <= r)).all()
    assert ((ds["cka_labels"] >= -1e-9) & (ds["cka_labels"] <= 1 + 1e-9)).all()
    assert ds["accuracy"].dims == ("step", "split")


def _fake_run() -> xr.Dataset:
    steps, splits, layers, ks = [0, 1, 10, 100], ["train", "test"], ["0", "2", "4"], [10, 40, 160]
    rng = np.random.default_rng(0)
    shape = (len(steps), len(splits))
    return xr.Dataset(
        {
            "max_eigenvalue": (("step", "split"), rng.uniform(1, 2, shape)),
            "mean_eigenvalue": (("step", "split"), rng.uniform(0.1, 0.2, shape)),
            "median_eigenvalue": (("step", "split"), rng.uniform(0.01, 0.02, shape)),
            "effective_rank": (("step", "split"), rng.uniform(5, 50, shape)),
            "trace_ratio": (("step", "split", "k"), rng.uniform(0, 1, (*shape, 3))),
            "cka_labels": (("step", "split"), rng.uniform(0, 1, shape)),
            "layer_cka_labels": (("step", "split", "layer"), rng.uniform(0, 1, (*shape, 3))),
        },
        coords={"step": steps, "split": splits, "layer": layers, "k": ks},
    )


def test_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from jacspec.plot import plot_eigenfunctions, plot_eigenvalue_ratio, plot_layer_alignment, plot_tangent_kernel

    ds = _fake_run()
    figures = {
        "stats": plot_tangent_kernel(ds),
        "stats_one_split": plot_tangent_kernel(ds.sel(split="train"), log_steps=False),
        "layers": plot_layer_alignment(ds),
        "eigenfunctions": plot_eigenfunctions(np.random.rand(2, 3, 5, 5), [0, 10], np.random.rand(2, 5) + 1),
        "ratio": plot_eigenvalue_ratio([0, 10], np.sort(np.random.rand(2, 25))[:, ::-1], ks=(2, 20)),
    }
    for name, fig in figures.items():
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert len(figures["stats"].axes) == 4
    with pytest.raises(ValueError, match="'step' dimension"):
        plot_tangent_kernel(ds.isel(step=0))
    with pytest.raises(ValueError, match="`variable` 'nope'"):
        plot_layer_alignment(ds, variable="nope")
