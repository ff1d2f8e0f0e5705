"""Figures of point-Jacobian spectra in the style of Brandão et al., "Is My Neural Net Driven by the MDL
Principle?", ECML PKDD 2023 (LNCS 14170), Figs. 1–4: histograms of log σ with the split between modes
and a fitted lognormal per mode, lognormal probability plots with R², and the mean log singular value
against training step per noise level.

matplotlib is imported inside each function.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from jacspec import fit

__all__ = ["spectrum_histogram", "probability_plots", "mean_log_curves", "spectrum_figure"]


def _values(values: Any) -> np.ndarray:
    """Positive finite singular values from an array, a DataArray or a PointJacobian Dataset."""
    if isinstance(values, xr.Dataset):
        values = values["singular_values"]
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array) & (array > 0)]


def _split(values: np.ndarray, split: fit.ModeSplit | None) -> fit.ModeSplit | None:
    if split is not None:
        return split
    return fit.split_modes(values) if values.size >= fit.MIN_VALUES_SPLIT else None


def spectrum_histogram(values: Any, split: fit.ModeSplit | None = None, ax=None, bins: int = 60, label: str = ""):
    """Histogram (density) of ``log σ`` with the split and the fitted lognormal of each mode.

    Parameters
    ----------
    values : array_like, DataArray or Dataset
        Singular values (a PointJacobian Dataset's ``singular_values`` is used when given a Dataset).
    split : ModeSplit, optional
        A precomputed :func:`jacspec.fit.split_modes` result; computed when omitted.
    ax : matplotlib Axes, optional
    bins : int
    label : str
        Text for the legend (e.g. ``"p = 0.4, epoch 50"``); the mean log σ is appended.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.plot.point_jacobian import spectrum_histogram
    >>> rng = np.random.default_rng(0)
    >>> sigma = np.exp(np.concatenate([rng.normal(-4, 0.5, 2000), rng.normal(0, 0.5, 2000)]))  # two modes
    >>> ax = spectrum_histogram(sigma, label="two modes")
    """
    import matplotlib.pyplot as plt

    x = _values(values)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    logs = np.log(x)
    ax.hist(logs, bins=bins, density=True, color="0.75", label=f"{label} E[log σ] = {logs.mean():.2f}".strip())
    split = _split(x, split)
    if split is not None:
        grid = np.linspace(logs.min(), logs.max(), 400)
        colors = ("tab:blue", "tab:red")
        for i, (fit_, fraction) in enumerate(zip(split.fits, split.fractions)):
            if fit_ is None:
                continue
            density = fraction * np.exp(-0.5 * ((grid - fit_.mu) / fit_.sigma) ** 2) / (fit_.sigma * np.sqrt(2 * np.pi))
            ax.plot(grid, density, color=colors[i], lw=1.5, label=f"mode {i}: μ={fit_.mu:.2f}, s={fit_.sigma:.2f}")
        if split.n_modes == 2:
            ax.axvline(np.log(split.threshold), color="k", ls="--", lw=1, label="split (first deepest trough)")
    ax.set_xlabel("log σ")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return ax


def probability_plots(values: Any, split: fit.ModeSplit | None = None, axes=None):
    """Lognormal probability plot of each mode (normal probability plot of log σ) with its R².

    Parameters
    ----------
    values : array_like, DataArray or Dataset
        Singular values.
    split : ModeSplit, optional
        Precomputed split; computed when omitted.
    axes : sequence of matplotlib Axes, optional
        One per mode (two are created when omitted).

    Returns
    -------
    list of matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.plot.point_jacobian import probability_plots
    >>> rng = np.random.default_rng(0)
    >>> sigma = np.exp(np.concatenate([rng.normal(-4, 0.5, 2000), rng.normal(0, 0.5, 2000)]))
    >>> len(probability_plots(sigma))  # one lognormal probability plot per mode
    2
    """
    import matplotlib.pyplot as plt
    from scipy import stats

    x = _values(values)
    split = _split(x, split)
    groups = split.groups if split is not None else (x,)
    if axes is None:
        _, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3), squeeze=False)
        axes = list(axes[0])
    for i, (ax, group) in enumerate(zip(axes, groups)):
        if group.size < fit.MIN_VALUES_LOGNORMAL:
            ax.set_visible(False)
            continue
        (osm, osr), (slope, intercept, r) = stats.probplot(np.log(group), dist="norm")
        ax.plot(osm, osr, ".", ms=2, color="tab:blue" if i == 0 else "tab:red")
        ax.plot(osm, slope * np.asarray(osm) + intercept, "k-", lw=1)
        ax.set_title(f"mode {i}: R² = {r**2:.3f}", fontsize=9)
        ax.set_xlabel("normal quantile")
        ax.set_ylabel("ordered log σ")
    return axes


def _mean_log_series(run: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(run, (str, os.PathLike)):
        from jacspec import open_run

        run = open_run(run)
    if isinstance(run, xr.DataTree):
        run = run["point_jacobian"].to_dataset()
    da = run["mean_log_singular_value"]
    if "split" in da.dims:
        da = da.sel(split=split)
    return np.asarray(da["step"].values), np.asarray(da.values, dtype=np.float64)


def mean_log_curves(runs: Mapping[str, Any], split: str = "train", ax=None, title: str = ""):
    """Mean log singular value against training step, one curve per run (e.g. per noise level).

    Parameters
    ----------
    runs : mapping
        ``{label: run}`` where a run is a run-file path, an ``xarray.DataTree`` from
        :func:`jacspec.open_run`, or the ``point_jacobian`` group's Dataset.
    split : str
        Which split to plot.
    ax : matplotlib Axes, optional
    title : str

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import xarray as xr
    >>> from jacspec.plot.point_jacobian import mean_log_curves
    >>> def run(values):
    ...     return xr.Dataset({"mean_log_singular_value": (("step", "split"), [[v, v] for v in values])},
    ...                       coords={"step": [0, 100, 200], "split": ["train", "test"]})
    >>> ax = mean_log_curves({"p = 0.0": run([-1.0, -0.8, -0.7]), "p = 0.4": run([-1.0, -0.5, -0.2])})
    >>> len(ax.get_lines())
    2
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    cmap = plt.get_cmap("viridis")
    for i, (label, run) in enumerate(runs.items()):
        steps, values = _mean_log_series(run, split)
        ax.plot(steps, values, marker=".", color=cmap(i / max(1, len(runs) - 1)), label=str(label))
    ax.set_xlabel("training step")
    ax.set_ylabel(f"E[log σ] ({split})")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return ax


def spectrum_figure(values: Any, label: str = "", path: str | os.PathLike | None = None):
    """The paper's Fig. 1 panel: histogram with split and lognormal fits, plus one probability plot
    per mode. Saves to ``path`` when given; returns the figure.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.plot.point_jacobian import spectrum_figure
    >>> rng = np.random.default_rng(0)
    >>> sigma = np.exp(np.concatenate([rng.normal(-4, 0.5, 2000), rng.normal(0, 0.5, 2000)]))
    >>> figure = spectrum_figure(sigma, label="epoch 50")  # pass path="runs/spectrum.png" to save it
    """
    import matplotlib.pyplot as plt

    x = _values(values)
    split = _split(x, None)
    fig = plt.figure(figsize=(10, 3.2))
    grid = fig.add_gridspec(1, 4)
    spectrum_histogram(x, split, ax=fig.add_subplot(grid[0, :2]), label=label)
    probability_plots(x, split, axes=[fig.add_subplot(grid[0, 2]), fig.add_subplot(grid[0, 3])])
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
