"""Figures for :class:`jacspec.probes.WeightInformation` results .

After Alessandro Achille and Stefano Soatto, "Emergence of Invariance and Disentanglement in Deep
Representations", JMLR 19(50):1–34, 2018, sections 4 and 6.1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from jacspec.plot._common import (
    as_dataset,
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

__all__ = ["plot_log_alpha_quantiles", "plot_random_labels", "plot_weight_information"]


#: What the sign of I(w;D) means, written on every figure of it.
SIGN_NOTE = (
    "I(w;D) = −½ Σ log α + C with C = 0 (improper log-uniform prior; Achille & Soatto 2018, Remark 4.3): "
    "defined only up to this constant, so the sign carries no meaning; negative values are not an error. "
    "Compare differences between steps, splits or models of the same architecture, β and N."
)


def plot_weight_information(ds: Any, per_sample: bool = True, ax: Any = None, layers: bool | None = None) -> Any:
    """I(w;D) over training, one line per split, with the meaning of its sign written on the figure.

    I(w;D) = −½ Σ_i log α_i + C (Achille and Soatto, JMLR 2018, Claim 1) is reported with C = 0
    (Remark 4.3): the improper prior fixes it only up to an additive constant, so values can be negative
    and only differences (between steps, splits, real and random labels, at the same architecture, β and
    number of examples) are meaningful. The figure says so in a note under the title.

    Parameters
    ----------
    ds : xarray.Dataset or DataTree
        The ``weight_information`` group of a run file (dims ``step`` and optionally ``split``) or a list
        of probe results concatenated along ``step``.
    per_sample : bool
        Plot ``weight_information_per_sample`` (nats per example) rather than the total.
    ax : Axes or sequence of Axes, optional
        Where to draw: one Axes draws the total only; a sequence of two adds the per-layer panel. A new
        figure otherwise.
    layers : bool, optional
        Add a panel with ``layer_weight_information`` (per module, same sign convention; default: when
        present, not constant, and ``ax`` is not a single Axes).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_weight_information(jacspec.open_run("runs/demo.nc")["weight_information"])  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    ds = as_dataset(ds, "weight_information", "ds")
    variable = "weight_information_per_sample" if per_sample else "weight_information"
    if variable not in ds:
        raise ValueError(f"`ds` has no {variable!r} variable; available: {sorted(map(str, ds.data_vars))}.")
    data = ds[variable]
    if "step" not in data.dims:
        raise ValueError(f"`ds[{variable!r}]` must have a 'step' dimension, but has dims {data.dims}.")
    single = ax is not None and not isinstance(ax, (list, tuple, np.ndarray))
    if layers is None:
        layers = (
            not single
            and "layer_weight_information" in ds
            and "layer" in ds.dims
            and not is_constant(ds["layer_weight_information"])
        )
    if single:
        fig, axes = ax.figure, [ax]
    elif ax is not None:
        fig, axes = panel_axes(ax, 1 + int(layers))
    else:
        fig, grid = plt.subplots(1, 1 + int(layers), figsize=(5.2 * (1 + int(layers)), 4.2), squeeze=False)
        axes = list(grid[0])
    steps = steps_of(data, f"ds[{variable!r}]")
    for index, (split, part) in enumerate(splits(data)):
        axes[0].plot(
            steps,
            part,
            linestyle=split_style(split, index),
            marker=".",
            color="C0",
            label=str(split) if split else None,
        )
    legend(axes[0])
    log_time(axes[0], steps)
    axes[0].set_ylabel("I(w;D) per example [nats]" if per_sample else "I(w;D) [nats]", fontsize=8)
    method = ds.attrs.get("method", "")
    beta = ds.attrs.get("beta")
    detail = ", ".join(p for p in (str(method) if method else "", f"β = {beta}" if beta is not None else "") if p)
    axes[0].set_title(wrap(f"information in the weights{f' ({detail})' if detail else ''}", 48), fontsize=9)
    if layers:
        axis = axes[1]
        da = ds["layer_weight_information"]
        if per_sample and "n_examples" in ds.attrs:
            da = da / float(ds.attrs["n_examples"])
        names = layer_labels(ds["layer"].values)
        colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(names)))
        for index, (split, part) in enumerate(splits(da)):
            for i, (name, color) in enumerate(zip(names, colors)):
                axis.plot(
                    steps,
                    part.isel(layer=i),
                    linestyle=split_style(split, index),
                    color=color,
                    label=name + (f" ({split})" if split else ""),
                )
        if not legend(axis, fontsize=7):
            mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, max(len(names) - 1, 1) / 0.85))
            fig.colorbar(mappable, ax=axis, label="layer, input → output")
        log_time(axis, steps)
        unit = "per example " if per_sample and "n_examples" in ds.attrs else ""
        axis.set_ylabel(f"I(w;D) of the module's weights {unit}[nats]", fontsize=8)
        axis.set_title("per module (sums to the total)", fontsize=9)
    note = wrap(SIGN_NOTE, 62 if single else 95 * len(axes))
    if single:
        axes[0].text(0.0, -0.3, note, transform=axes[0].transAxes, fontsize=6, va="top", color="0.25")
    else:
        lines = note.count("\n") + 1
        height = fig.get_figheight()
        bottom = (0.16 * lines + 0.15) / height  # inches of text → figure fraction
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=7, color="0.25")
        fig._jacspec_layout_rect = (0, bottom, 1, 1)  # kept by plot_probe's tight_layout
        fig.tight_layout(rect=fig._jacspec_layout_rect)
    return fig


def plot_log_alpha_quantiles(ds: Any, ax: Any = None) -> Any:
    """The distribution of log α per layer (median, 25–75 % and 5–95 % ranges, min/max) of one result.

    Parameters
    ----------
    ds : xarray.Dataset or DataTree
        A ``weight_information`` result with ``log_alpha_quantiles`` (of a run: the last step and the
        first split are drawn).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_log_alpha_quantiles(jacspec.open_run("runs/demo.nc")["weight_information"])  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    ds = as_dataset(ds, "weight_information", "ds")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
    else:
        fig = ax.figure
    q = ds["log_alpha_quantiles"]
    extra = [d for d in q.dims if d not in ("layer", "quantile")]
    if extra:
        q = q.isel({d: -1 for d in extra})
    positions = np.arange(q.sizes["layer"])
    low, high = q.sel(quantile=0.0).values, q.sel(quantile=1.0).values
    ax.vlines(positions, low, high, color="0.7", lw=1, label="min–max")
    ax.vlines(positions, q.sel(quantile=0.05).values, q.sel(quantile=0.95).values, color="C0", lw=3, label="5–95 %")
    ax.vlines(positions, q.sel(quantile=0.25).values, q.sel(quantile=0.75).values, color="C1", lw=7, label="25–75 %")
    ax.plot(positions, q.sel(quantile=0.5).values, "k_", ms=14, label="median")
    ax.set_xticks(positions, [str(v) for v in q["layer"].values])
    ax.set_xlabel("module (name in named_modules())")
    ax.set_ylabel("log α (clipped)")
    ax.legend(fontsize="small")
    return fig


def plot_random_labels(results: xr.Dataset) -> Any:
    """The random-label figure: I(w;D)/N over training per corruption fraction, and at the end of training.

    Parameters
    ----------
    results : xarray.Dataset
        From ``examples/weight_information_random_labels.py``: ``information_per_sample`` with dims
        ``(estimator, fraction, step)`` and ``train_accuracy`` ``(fraction, step)``.

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from jacspec.plot.weight_information import plot_random_labels
    >>> fractions, steps = [0.0, 0.5, 1.0], [0, 100, 200]
    >>> info = np.array([[[0.1, 0.5 + f, 0.8 + 2 * f] for f in fractions]])  # (estimator, fraction, step)
    >>> results = xr.Dataset(
    ...     {"information_per_sample": (("estimator", "fraction", "step"), info),
    ...      "train_accuracy": (("fraction", "step"), np.full((3, 3), 0.9))},
    ...     coords={"estimator": ["diagonal"], "fraction": fractions, "step": steps})
    >>> figure = plot_random_labels(results)
    >>> len(figure.axes)
    2
    """
    import matplotlib.pyplot as plt

    methods = list(results["estimator"].values)
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(4.2 * (len(methods) + 1), 3.6))
    cmap = plt.get_cmap("viridis")
    fractions = results["fraction"].values
    for ax, method in zip(axes, methods):
        for i, fraction in enumerate(fractions):
            color = cmap(i / max(len(fractions) - 1, 1))
            series = results["information_per_sample"].sel(estimator=method, fraction=fraction)
            ax.plot(results["step"], series, color=color, marker=".", label=f"{fraction:.2g}")
        ax.set_title(f"{method}")
        ax.set_xlabel("training step")
        ax.set_ylabel("I(w;D) / N [nats]")
    axes[0].legend(title="random fraction", fontsize="small")
    ax = axes[-1]
    final = results["information_per_sample"].isel(step=-1)
    for method in methods:
        values = final.sel(estimator=method)
        ax.plot(fractions, values - values.sel(fraction=fractions[0]), marker="o", label=method)
    ax.axhline(np.log(10), color="0.5", ls="--", label="log 10 (paper: ≈ 2 nats)")
    ax.set_xlabel("fraction of random labels")
    ax.set_ylabel("Δ I(w;D) / N vs real labels [nats]")
    ax.set_title("end of training")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
