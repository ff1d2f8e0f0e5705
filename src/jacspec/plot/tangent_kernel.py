"""Figures of tangent-kernel results (Baratin, PhD thesis, Université de Montréal, 2021, Figs. 4.1-4.3).

matplotlib is imported inside each function.

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

from jacspec.plot._common import (
    as_dataset,
    axis_label,
    is_constant,
    layer_labels,
    legend,
    log_time,
    panel_axes,
    split_style,
    splits,
    steps_of,
    wrap,
)

__all__ = [
    "plot_eigenfunctions",
    "plot_eigenvalue_ratio",
    "plot_layer_alignment",
    "plot_tangent_kernel",
    "plot_tangent_kernel_summary",
]


def _steps(ds: xr.Dataset) -> np.ndarray:
    return steps_of(ds, "ds")


def plot_tangent_kernel(
    ds: Any, log_steps: bool | None = True, trace_ks: Sequence[int] = (10, 40, 160), ax: Any = None
) -> Any:
    """Eigenvalue statistics, effective rank, trace ratios and CKA with the labels over training.

    The panels a reader of Baratin's thesis (2021, ch. 4, Figs. 4.2–4.3) looks at first: the largest,
    mean and median eigenvalue (log scale), the effective rank (eq. 5), the trace ratios T_k (eq. 6)
    and CKA(K, YYᵀ) (eq. 7), train solid and test dashed.

    Parameters
    ----------
    ds : xarray.Dataset or DataTree
        ``tangent_kernel`` results with a ``step`` dimension (and optionally ``split``), e.g.
        ``jacspec.open_run(path)["tangent_kernel"]``.
    log_steps : bool or None
        Logarithmic (symlog, step 0 shown) step axis, as in the thesis' figures; None: only when the
        probed steps span more than two decades.
    trace_ks : sequence of int
        Which trace ratios ``T_k`` to draw (those present; the largest ones present when none is).
    ax : sequence of Axes, optional
        One per panel (3, or 4 with ``cka_labels``); a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_tangent_kernel(jacspec.open_run("runs/demo.nc")["tangent_kernel"])  # doctest: +SKIP
    """
    ds = as_dataset(ds, "tangent_kernel", "ds")
    steps = _steps(ds)
    x = steps
    panels = ["eigen", "effective_rank", "trace_ratio"] + (["cka_labels"] if "cka_labels" in ds else [])
    fig, axes = panel_axes(ax, len(panels), width=4.2, ncols=len(panels))
    ks = list(trace_ks)
    if "trace_ratio" in ds and "k" in ds.dims:
        present = [int(k) for k in ds["k"].values]
        ks = [k for k in ks if k in present] or present[-3:]
    for index, (split, part) in enumerate(splits(ds)):
        style = split_style(split, index)
        suffix = f" ({split})" if split else ""
        for name, color in (("max_eigenvalue", "C0"), ("mean_eigenvalue", "C1"), ("median_eigenvalue", "C2")):
            if name in part:
                axes[0].plot(x, part[name], linestyle=style, color=color, label=name.split("_")[0] + suffix)
        axes[1].plot(x, part["effective_rank"], linestyle=style, color="C0", label=f"effective rank{suffix}")
        if "trace_ratio" in part:
            for j, k in enumerate(ks):
                axes[2].plot(x, part["trace_ratio"].sel(k=k), linestyle=style, color=f"C{j}", label=f"T_{k}{suffix}")
        if "cka_labels" in part:
            axes[3].plot(x, part["cka_labels"], linestyle=style, color="C3", label=f"CKA{suffix}")
    axes[0].set_yscale("log")
    titles = [
        "eigenvalues of K",
        "effective rank (eq. 5)",
        "trace ratios T_k (eq. 6)",
        "CKA(K, YYᵀ) with labels (eq. 7)",
    ]
    units = ds["max_eigenvalue"].attrs.get("units") if "max_eigenvalue" in ds else None
    ylabels = [
        f"eigenvalue [{units}]" if units else "eigenvalue",
        axis_label(ds["effective_rank"], 36),
        wrap("share of the trace in the top k eigenvalues", 36),
        axis_label(ds["cka_labels"], 36) if "cka_labels" in ds else "",
    ]
    for axis, title, ylabel in zip(axes, titles, ylabels):
        axis.set_title(title, fontsize=9)
        axis.set_ylabel(ylabel, fontsize=8)
        log_time(axis, steps, log_steps)
        legend(axis, fontsize=7)
    return fig


def plot_layer_alignment(
    ds: Any, variable: str = "layer_cka_labels", log_steps: bool | None = True, ax: Any = None
) -> Any:
    """Per-layer CKA (or another ``(step, layer)`` variable) over training, layers coloured input → output.

    Parameters
    ----------
    ds : xarray.Dataset or DataTree
        ``tangent_kernel`` results with ``step`` and ``layer`` dims (optionally ``split``).
    variable : str
        A variable with a ``layer`` dim (``layer_cka_labels``, ``layer_trace``, ...).
    log_steps : bool
        Logarithmic (symlog) step axis.
    ax : Axes or sequence of Axes, optional
        One per split; a single Axes draws every split in it (train solid, test dashed).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_layer_alignment(jacspec.open_run("runs/demo.nc")["tangent_kernel"])  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    ds = as_dataset(ds, "tangent_kernel", "ds")
    if variable not in ds:
        raise ValueError(f"`variable` {variable!r} is not in the Dataset; available: {sorted(ds.data_vars)}.")
    steps = _steps(ds)
    layers = list(ds["layer"].values)
    names = layer_labels(layers)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, max(len(layers), 1)))
    parts = splits(ds)
    single = ax is not None and not isinstance(ax, (list, tuple, np.ndarray))
    fig, axes = panel_axes(ax if not single else [ax] * len(parts), len(parts), width=4.5)
    for index, (axis, (split, part)) in enumerate(zip(axes, parts)):
        style = split_style(split, index) if single else "-"
        for layer, name, color in zip(layers, names, colors):
            axis.plot(
                steps,
                part[variable].sel(layer=layer),
                linestyle=style,
                color=color,
                label=name + (f" ({split})" if single and split else ""),
            )
        title = (
            axis_label(ds[variable], 40)
            if single
            else f"{axis_label(ds[variable], 40)}{f' ({split})' if split else ''}"
        )
        axis.set_title(title, fontsize=9)
        log_time(axis, steps, log_steps)
        if not legend(axis, title="layer (module)", fontsize=7):
            mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, max(len(layers) - 1, 1) / 0.85))
            fig.colorbar(mappable, ax=axis, label="layer, input → output")
    return fig


def plot_tangent_kernel_summary(ds: Any, ax: Any = None, log_steps: bool | None = None) -> Any:
    """:func:`plot_tangent_kernel`'s panels plus the per-layer CKA with the labels (when measured and
    not constant), in one figure.

    Parameters
    ----------
    ds : xarray.Dataset or DataTree
        ``tangent_kernel`` results over training.
    ax : sequence of Axes, optional
        One per panel (4 or 5).
    log_steps : bool, optional
        Logarithmic (symlog) step axis; by default when the probed steps span more than two decades
        (log-spaced checkpoints, as in the thesis).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_tangent_kernel_summary(jacspec.open_run("runs/demo.nc")["tangent_kernel"])  # doctest: +SKIP
    """
    ds = as_dataset(ds, "tangent_kernel", "ds")
    base = 4 if "cka_labels" in ds else 3
    layer = "layer_cka_labels" in ds and "layer" in ds.dims and not is_constant(ds["layer_cka_labels"])
    n = base + int(layer)
    fig, axes = panel_axes(ax, n, width=4.2, ncols=3 if n > 4 else n)
    plot_tangent_kernel(ds, log_steps=log_steps, ax=axes[:base])
    if layer:
        plot_layer_alignment(ds, log_steps=log_steps, ax=axes[base])
    return fig


def plot_eigenfunctions(
    eigenfunctions: np.ndarray, checkpoints: Sequence[int], eigenvalues: np.ndarray | None = None
) -> Any:
    """Top eigenfunctions of the kernel on a 2-D grid, one row per checkpoint (Baratin's thesis, 2021, Fig. 4.1).

    Parameters
    ----------
    eigenfunctions : ndarray
        ``(checkpoint, eigenfunction, grid, grid)`` eigenvector entries on the grid.
    checkpoints : sequence of int
        Iteration of each row.
    eigenvalues : ndarray, optional
        ``(checkpoint, >= eigenfunction)`` eigenvalues, shown as λ_j/λ_1 in the panel titles.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.plot.tangent_kernel import plot_eigenfunctions
    >>> grid = np.linspace(-1, 1, 20)
    >>> first, second = np.meshgrid(grid, grid, indexing="ij")
    >>> functions = np.stack([np.stack([first, second, first * second])] * 2)  # (checkpoint, eigenfunction, grid, grid)
    >>> figure = plot_eigenfunctions(functions, checkpoints=[0, 1000])
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
    """``λ_k / λ_1`` over training (log scale), e.g. the thesis' λ20/λ1 on the Disk.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.plot.tangent_kernel import plot_eigenvalue_ratio
    >>> eigenvalues = np.stack([1.0 / np.arange(1, 31) ** power for power in (0.5, 1.0, 2.0)])  # (checkpoint, k)
    >>> figure = plot_eigenvalue_ratio([0, 100, 1000], eigenvalues, ks=(2, 10, 20))
    """
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
