"""Figures of tangent-kernel results (paper 002, Figs. 4.1-4.3), matplotlib imported inside each function.

The time-series plots take the ``tangent_kernel`` Dataset of a run (``jacspec.open_run(path)
["tangent_kernel"].ds``, or a list of probe results concatenated along ``step``), with a ``step``
dimension and optionally a ``split`` dimension: splits are drawn with different line styles (train
solid, test dashed, as in the thesis).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "plot_eigenfunctions",
    "plot_eigenvalue_ratio",
    "plot_layer_alignment",
    "plot_tangent_kernel",
]

_STYLES = ["-", "--", ":", "-."]


def _splits(ds: xr.Dataset) -> list[tuple[str, xr.Dataset]]:
    if "split" in ds.dims:
        return [(str(s), ds.sel(split=s)) for s in ds["split"].values]
    return [("", ds)]


def _steps(ds: xr.Dataset) -> np.ndarray:
    if "step" not in ds.dims:
        raise ValueError(f"The Dataset must have a 'step' dimension to plot over training, but has {dict(ds.sizes)}.")
    return np.asarray(ds["step"].values, dtype=float)


def plot_tangent_kernel(ds: xr.Dataset, log_steps: bool = True, trace_ks: Sequence[int] = (10, 40, 160)) -> Any:
    """Eigenvalue statistics, effective rank, trace ratios and CKA with the labels over training.

    Parameters
    ----------
    ds : xarray.Dataset
        ``tangent_kernel`` results with a ``step`` dimension (and optionally ``split``).
    log_steps : bool
        Logarithmic step axis (the thesis' figures); step 0 is drawn at step 1.
    trace_ks : sequence of int
        Which trace ratios ``T_k`` to draw (those present).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    steps = _steps(ds)
    x = np.maximum(steps, 1) if log_steps else steps
    panels = ["eigen", "effective_rank", "trace_ratio"] + (["cka_labels"] if "cka_labels" in ds else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    axes = axes[0]
    for style, (split, part) in zip(_STYLES * 4, _splits(ds)):
        suffix = f" ({split})" if split else ""
        for name, color in (("max_eigenvalue", "C0"), ("mean_eigenvalue", "C1"), ("median_eigenvalue", "C2")):
            if name in part:
                axes[0].plot(x, part[name], style, color=color, label=name.split("_")[0] + suffix)
        axes[1].plot(x, part["effective_rank"], style, color="C0", label=f"effective rank{suffix}")
        if "trace_ratio" in part:
            for j, k in enumerate(trace_ks):
                if k in part["k"].values:
                    axes[2].plot(x, part["trace_ratio"].sel(k=k), style, color=f"C{j}", label=f"T_{k}{suffix}")
        if "cka_labels" in part:
            axes[3].plot(x, part["cka_labels"], style, color="C3", label=f"CKA{suffix}")
    axes[0].set_yscale("log")
    titles = ["eigenvalues", "effective rank (eq. 5)", "trace ratios (eq. 6)", "CKA with labels (eq. 7)"]
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("step")
        if log_steps:
            ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_layer_alignment(ds: xr.Dataset, variable: str = "layer_cka_labels", log_steps: bool = True) -> Any:
    """Per-layer CKA (or another ``(step, layer)`` variable) over training, layers coloured input → output."""
    import matplotlib.pyplot as plt

    if variable not in ds:
        raise ValueError(f"`variable` {variable!r} is not in the Dataset; available: {sorted(ds.data_vars)}.")
    steps = _steps(ds)
    x = np.maximum(steps, 1) if log_steps else steps
    layers = list(ds["layer"].values)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(layers), 1)))
    parts = _splits(ds)
    fig, axes = plt.subplots(1, len(parts), figsize=(4.5 * len(parts), 3.4), squeeze=False)
    for ax, (split, part) in zip(axes[0], parts):
        for layer, color in zip(layers, colors):
            ax.plot(x, part[variable].sel(layer=layer), color=color, label=str(layer))
        ax.set_title(f"{variable}{f' ({split})' if split else ''}")
        ax.set_xlabel("step")
        if log_steps:
            ax.set_xscale("log")
        ax.legend(fontsize=7, title="layer")
    fig.tight_layout()
    return fig


def plot_eigenfunctions(
    eigenfunctions: np.ndarray, checkpoints: Sequence[int], eigenvalues: np.ndarray | None = None
) -> Any:
    """Top eigenfunctions of the kernel on a 2-D grid, one row per checkpoint (paper 002, Fig. 4.1).

    Parameters
    ----------
    eigenfunctions : ndarray
        ``(checkpoint, eigenfunction, grid, grid)`` eigenvector entries on the grid.
    checkpoints : sequence of int
        Iteration of each row.
    eigenvalues : ndarray, optional
        ``(checkpoint, >= eigenfunction)`` eigenvalues, shown as λ_j/λ_1 in the panel titles.
    """
    import matplotlib.pyplot as plt

    funcs = np.asarray(eigenfunctions)
    rows, cols = funcs.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.8 * rows), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            limit = np.abs(funcs[r, c]).max() or 1.0
            ax.imshow(funcs[r, c].T, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit, extent=(-1, 1, -1, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            title = f"u{c + 1}"
            if eigenvalues is not None:
                title += f"  {eigenvalues[r, c] / eigenvalues[r, 0]:.2g}"
            ax.set_title(title, fontsize=7)
            if c == 0:
                ax.set_ylabel(f"iter {checkpoints[r]}", fontsize=8)
    fig.suptitle("tangent-kernel eigenfunctions on the grid (title: λ_j/λ_1)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_eigenvalue_ratio(
    checkpoints: Sequence[int], eigenvalues: np.ndarray, ks: Sequence[int] = (2, 5, 10, 20)
) -> Any:
    """``λ_k / λ_1`` over training (log scale), e.g. the thesis' λ20/λ1 on the Disk."""
    import matplotlib.pyplot as plt

    values = np.asarray(eigenvalues)
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    for j, k in enumerate(ks):
        ax.plot(checkpoints, values[:, k - 1] / values[:, 0], "o-", color=f"C{j}", label=f"λ{k}/λ1")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("eigenvalue ratio")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
