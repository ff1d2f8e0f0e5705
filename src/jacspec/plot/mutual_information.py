"""Figures for mutual-information results: the information plane, MINE training curves, estimates vs truth.

matplotlib is imported inside each function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from jacspec.plot._common import layer_labels

__all__ = ["plot_information_plane", "plot_mine_history", "plot_estimates_vs_truth"]


def _dataset(data: Any) -> xr.Dataset:
    if isinstance(data, xr.Dataset):
        return data
    ds = getattr(data, "ds", None)  # an xarray.DataTree node
    if isinstance(ds, xr.Dataset):
        if "mutual_information" not in ds and "mutual_information" in getattr(data, "children", {}):
            return data["mutual_information"].ds
        return ds
    raise TypeError(
        "`data` must be an xarray.Dataset from MutualInformation (or the run tree's 'mutual_information' "
        f"group), but got {type(data).__name__}."
    )


def plot_information_plane(
    data: Any,
    split: str | None = None,
    input_name: str = "input",
    label_name: str = "label",
    ax: Any = None,
    cmap: str = "viridis",
):
    """Information plane: I(X; T) against I(T; Y) for each layer T, coloured by training step.

    Baratin's thesis (2021), chapter 5: the information-bottleneck view of a network's layers.

    Parameters
    ----------
    data : xarray.Dataset or DataTree
        Results of ``MutualInformation(between=[("input", T), (T, "label"), ...])`` over training: a
        ``mutual_information`` variable with dims ``(step, pair)`` (and optionally ``split``), with the
        ``first``/``second`` coordinates along ``pair`` — e.g. ``tree["mutual_information"]`` of a run
        file — or a single step ``(pair,)``.
    split : str, optional
        Which split to draw when the data has a ``split`` dim (default: the first).
    input_name, label_name : str
        Endpoint names of X and Y.
    ax : matplotlib Axes, optional
    cmap : str
        Colour map of the training step.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import xarray as xr
    >>> from jacspec.plot.mutual_information import plot_information_plane
    >>> mi = xr.DataArray([[1.0, 0.2], [1.5, 0.8], [1.2, 1.0]], dims=("step", "pair"),
    ...                   coords={"step": [0, 100, 200], "first": ("pair", ["input", "fc1"]),
    ...                           "second": ("pair", ["fc1", "label"])})
    >>> ax = plot_information_plane(xr.Dataset({"mutual_information": mi}))
    >>> ax.get_xlabel()
    'I(X; T) [nats]'
    """
    import matplotlib.pyplot as plt

    ds = _dataset(data)
    mi = ds["mutual_information"]
    if "pair" not in mi.dims:
        raise ValueError(
            "`data` needs a `pair` dim: measure with between=[(input, T), (T, label), ...] so that both "
            f"I(X;T) and I(T;Y) are present (got dims {mi.dims})."
        )
    if "split" in mi.dims:
        split = split if split is not None else str(mi["split"].values[0])
        mi = mi.sel(split=split)
    if "step" not in mi.dims:
        mi = mi.expand_dims(step=[0])
    first = [str(v) for v in mi["first"].values]
    second = [str(v) for v in mi["second"].values]
    x_of = {b: i for i, (a, b) in enumerate(zip(first, second)) if a == input_name}
    y_of = {a: i for i, (a, b) in enumerate(zip(first, second)) if b == label_name}
    layers = [layer for layer in x_of if layer in y_of]
    if not layers:
        raise ValueError(
            f"No layer T has both ({input_name!r}, T) and (T, {label_name!r}) pairs; pairs given: "
            f"{list(zip(first, second))}."
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    steps = np.asarray(mi["step"].values, dtype=float)
    norm = plt.Normalize(steps.min(), steps.max() if steps.max() > steps.min() else steps.min() + 1)
    markers = "osD^v<>ph*"
    for index, layer in enumerate(layers):
        ix = mi.isel(pair=x_of[layer]).values
        iy = mi.isel(pair=y_of[layer]).values
        ax.plot(ix, iy, color="0.7", lw=0.8, zorder=1)
        points = ax.scatter(
            ix,
            iy,
            c=steps,
            cmap=cmap,
            norm=norm,
            marker=markers[index % len(markers)],
            label=f"T = {layer_labels([layer])[0]}",
            zorder=2,
        )
    ax.figure.colorbar(points, ax=ax, label="step")
    ax.set_xlabel("I(X; T) [nats]")
    ax.set_ylabel("I(T; Y) [nats]")
    ax.set_title("information plane" + (f" ({split})" if split else ""))
    ax.legend(fontsize="small")
    return ax


def plot_mine_history(data: Any, truth: float | None = None, ax: Any = None, smooth: int = 50):
    """MINE training curve: the minibatch bound per iteration (light) and its running mean (dark).

    Parameters
    ----------
    data : xarray.Dataset
        Output of :func:`jacspec.estimators.mutual_information` (``mutual_information_history``).
    truth : float, optional
        Ground truth to draw as a horizontal line.
    smooth : int
        Window of the running mean, in iterations.

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from jacspec.plot.mutual_information import plot_mine_history
    >>> history = 0.5 * (1 - np.exp(-np.arange(300) / 50)) + 0.05 * np.random.default_rng(0).normal(size=300)
    >>> ds = xr.Dataset({"mutual_information_history": ("iteration", history)})
    >>> ax = plot_mine_history(ds, truth=0.5)
    """
    import matplotlib.pyplot as plt

    ds = _dataset(data)
    history = ds["mutual_information_history"]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    values = np.asarray(history.values, dtype=float).reshape(-1, history.sizes["iteration"])
    for row in values:
        line = ax.plot(row, alpha=0.3, lw=0.6)[0]
        finite = row[np.isfinite(row)]
        if finite.size >= smooth:
            running = np.convolve(finite, np.ones(smooth) / smooth, mode="valid")
            ax.plot(np.arange(smooth - 1, finite.size), running, color=line.get_color(), lw=1.5)
    if truth is not None:
        ax.axhline(truth, color="k", ls="--", lw=1, label="ground truth")
        ax.legend()
    ax.set_xlabel("iteration")
    ax.set_ylabel("bound on minibatch [nats]")
    return ax


def plot_estimates_vs_truth(
    rho: Sequence[float],
    estimates: Mapping[str, Sequence[float]],
    truth: Sequence[float],
    ax: Any = None,
    title: str | None = None,
):
    """Estimated mutual information against the correlation ρ, with the ground truth (Baratin's thesis, 2021, Fig. 5.1).

    Parameters
    ----------
    rho : sequence of float
        Correlations.
    estimates : mapping of str to sequence of float
        ``{method: estimates at each ρ}``.
    truth : sequence of float
        Ground truth at each ρ.

    Examples
    --------
    >>> from jacspec.estimators import gaussian_mutual_information
    >>> from jacspec.plot.mutual_information import plot_estimates_vs_truth
    >>> rho = [0.0, 0.5, 0.9]
    >>> truth = [gaussian_mutual_information(r, 2) for r in rho]
    >>> ax = plot_estimates_vs_truth(rho, {"ksg": [0.01, 0.28, 1.6]}, truth)
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(rho, truth, "k-", lw=2, label="ground truth")
    styles = {"mine": "o-", "mine_f": "s--", "ksg": "^:"}
    for method, values in estimates.items():
        ax.plot(rho, values, styles.get(method, "o-"), label=method.upper().replace("_F", "-f"))
    ax.set_xlabel("ρ")
    ax.set_ylabel("I(X; Z) [nats]")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return ax
