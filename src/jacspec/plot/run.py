"""A generic figure of any run file: every probe variable against the training step."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_run", "curves"]

_SKIP = {"wall_time", "probe_seconds"}
_LINE_DIMS = ("layer", "output", "mode")  # a line each, when short
_MAX_LINES = 12


def curves(ds: xr.Dataset, variable: str) -> dict[str, xr.DataArray]:
    """The 1-D curves (over ``step``) that :func:`plot_run` draws for one variable.

    Dims other than ``step``, ``split`` and one short "line" dimension (``layer``, ``output``,
    ``mode``) are averaged over (ignoring NaN), which is noted in the label.
    """
    da = ds[variable]
    if "step" not in da.dims or da.dtype.kind not in "fiub":
        return {}
    line_dim = next((d for d in _LINE_DIMS if d in da.dims and da.sizes[d] <= _MAX_LINES), None)
    reduce = [d for d in da.dims if d not in ("step", "split", line_dim)]
    label_suffix = f" (mean over {', '.join(map(str, reduce))})" if reduce else ""
    if reduce:
        da = da.astype(float).mean(dim=reduce, skipna=True)
    out: dict[str, xr.DataArray] = {}
    splits = list(da["split"].values) if "split" in da.dims else [None]
    lines = list(da[line_dim].values) if line_dim else [None]
    for split in splits:
        for line in lines:
            sel = da
            if split is not None:
                sel = sel.sel(split=split)
            if line is not None:
                sel = sel.sel({line_dim: line})
            parts = [str(p) for p in (split, line) if p is not None]
            out[(" / ".join(parts) or variable) + label_suffix] = sel
    return out


def plot_run(run: Any, path: str | os.PathLike | None = None, variables: dict[str, list[str]] | None = None):
    """Plot every numeric variable of every probe in a run against the training step.

    Parameters
    ----------
    run : xarray.DataTree, str or Path
        A tree from :func:`jacspec.open_run`, or the path of a run file.
    path : str or Path, optional
        Where to save the figure (PNG); the figure is returned either way.
    variables : dict, optional
        ``{probe name: [variable names]}`` to restrict the panels; by default every variable with a
        ``step`` dimension (at most 4 per probe, favouring scalars per step).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from jacspec.store import open_run

    tree = open_run(run) if isinstance(run, (str, os.PathLike)) else run
    panels: list[tuple[str, str, xr.Dataset]] = []
    for node in tree.children.values():
        ds = node.to_dataset(inherit=False)
        names = variables.get(node.name) if variables else None
        if names is None:
            candidates = [
                v for v in ds.data_vars if v not in _SKIP and "step" in ds[v].dims and ds[v].dtype.kind in "fiub"
            ]
            candidates.sort(key=lambda v: ds[v].ndim)
            names = candidates[:4]
        panels += [(node.name, v, ds) for v in names]
    if not panels:
        raise ValueError("the run holds no variable with a `step` dimension to plot.")
    ncols = min(3, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax, (group, variable, ds) in zip(axes.flat, panels):
        steps = ds["step"].values
        for label, curve in curves(ds, variable).items():
            style = "--" if label.startswith("test") else "-"
            ax.plot(steps, np.asarray(curve.values, dtype=float), style, marker=".", label=label)
        if len(steps) > 2 and steps.max() > 0 and steps.max() / max(steps[steps > 0].min(), 1) > 100:
            ax.set_xscale("symlog", linthresh=1)
        attrs = ds[variable].attrs
        units = attrs.get("units")
        ax.set_title(f"{group}: {variable}", fontsize=9)
        ax.set_ylabel(
            attrs.get("long_name", variable)[:40] + (f" [{units}]" if units and units != "1" else ""), fontsize=8
        )
        ax.set_xlabel("training step")
        handles, _ = ax.get_legend_handles_labels()
        if 1 < len(handles) <= _MAX_LINES:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
