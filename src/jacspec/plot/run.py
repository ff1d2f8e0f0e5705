"""A one-figure overview of any run file: the key variables of every probe against the training step."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

from jacspec.plot._common import wrap

__all__ = ["plot_run", "curves", "KEY_PANELS"]

_SKIP = {"wall_time", "probe_seconds"}
_LINE_DIMS = ("layer", "output", "mode", "pair")  # a line each, when short
_MAX_LINES = 12


def curves(ds: xr.Dataset, variable: str) -> dict[str, xr.DataArray]:
    """The 1-D curves (over ``step``) that :func:`plot_run` draws for one variable.

    Dims other than ``step``, ``split`` and one short "line" dimension (``layer``, ``output``,
    ``mode``) are averaged over (ignoring NaN), which is noted in the label.

    Examples
    --------
    >>> import xarray as xr
    >>> from jacspec.plot.run import curves
    >>> ds = xr.Dataset({"loss": (("step", "split"), [[2.0, 2.1], [1.0, 1.4]])},
    ...                 coords={"step": [0, 10], "split": ["train", "test"]})
    >>> sorted(curves(ds, "loss"))
    ['test', 'train']
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


#: The panels :func:`plot_run` draws by default for the built-in probes (those present and not constant).
KEY_PANELS = {
    "performance": ["loss", "accuracy"],
    "spectral_norm": ["spectral_norm"],
    "point_jacobian": ["mean_log_singular_value", "mode_fraction"],
    "tangent_kernel": ["effective_rank", "trace_ratio", "cka_labels"],
    "fourier_spectrum": ["amplitude", "normalized_amplitude"],
    "weight_information": ["weight_information_per_sample", "layer_weight_information"],
    "mutual_information": ["mutual_information"],
}


def plot_run(run: Any, path: str | os.PathLike | None = None, variables: dict[str, list[str]] | None = None):
    """Plot the key variables of every probe in a run against the training step, one panel each.

    Parameters
    ----------
    run : xarray.DataTree, str or Path
        A tree from :func:`jacspec.open_run`, or the path of a run file (opened and closed here).
    path : str or Path, optional
        Where to save the figure (PNG); the figure is returned either way.
    variables : dict, optional
        ``{probe name: [variable names]}``: the panels of those probes; probes not named get
        :data:`KEY_PANELS` (built-in probes) or every non-constant variable with a ``step`` dim. Variables
        that are constant over the whole run (a flat line) are left out either way.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_run("runs/demo.nc", "runs/demo.png")  # doctest: +SKIP
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from jacspec.plot.panels import panel_variables, plot_variable

    opened = isinstance(run, (str, os.PathLike))
    if opened:
        from jacspec import open_run

        tree = open_run(run)
    else:
        tree = run
    try:
        panels: list[tuple[str, str, xr.Dataset]] = []
        for node in tree.children.values():
            ds = node.to_dataset(inherit=False)
            names = (variables or {}).get(node.name)
            if names is None:
                names = KEY_PANELS.get(node.name) or panel_variables(ds)
            usable = set(panel_variables(ds))
            panels += [(node.name, v, ds) for v in names if v in usable]
        if not panels:
            raise ValueError("the run holds no non-constant variable with a `step` dimension to plot.")
        ncols = min(3, len(panels))
        nrows = int(np.ceil(len(panels) / ncols))
        fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.7 * nrows), squeeze=False)
        for ax, (group, variable, ds) in zip(axes.flat, panels):
            plot_variable(ds, variable, ax=ax)
            ax.set_title(wrap(f"{group}: {ax.get_title()}".replace("\n", " "), 52), fontsize=9)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig
    finally:
        if opened and callable(getattr(tree, "close", None)):
            tree.close()
