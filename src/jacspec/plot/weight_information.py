"""Figures for :class:`jacspec.probes.WeightInformation` results (paper 003, section 4 and 6.1)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_log_alpha_quantiles", "plot_random_labels", "plot_weight_information"]


def plot_weight_information(ds: xr.Dataset, per_sample: bool = True, ax: Any = None) -> Any:
    """I(w;D) (total and per layer) over training steps, one line per split when there is a ``split`` dim.

    Parameters
    ----------
    ds : xarray.Dataset
        The ``weight_information`` group of a run file (dims ``step`` and optionally ``split``) or a list
        of probe results concatenated along ``step``.
    per_sample : bool
        Plot ``weight_information_per_sample`` (nats per example) rather than the total.
    ax : matplotlib Axes, optional
        Where to draw; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
    else:
        fig = ax.figure
    variable = "weight_information_per_sample" if per_sample else "weight_information"
    data = ds[variable]
    if "step" not in data.dims:
        raise ValueError(f"`ds[{variable!r}]` must have a 'step' dimension, but has dims {data.dims}.")
    if "split" in data.dims:
        for split in data["split"].values:
            ax.plot(data["step"], data.sel(split=split), marker=".", label=str(split))
        ax.legend()
    else:
        ax.plot(data["step"], data, marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("I(w;D) per sample [nats]" if per_sample else "I(w;D) [nats]")
    ax.set_title(f"information in the weights ({ds.attrs.get('method', '')})")
    return fig


def plot_log_alpha_quantiles(ds: xr.Dataset, ax: Any = None) -> Any:
    """The distribution of log α per layer (median, 25–75 % and 5–95 % ranges, min/max) of one result."""
    import matplotlib.pyplot as plt

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
    ax.set_xlabel("layer")
    ax.set_ylabel("log α")
    ax.legend(fontsize="small")
    return fig


def plot_random_labels(results: xr.Dataset) -> Any:
    """The random-label figure: I(w;D)/N over training per corruption fraction, and at the end of training.

    Parameters
    ----------
    results : xarray.Dataset
        From ``examples/weight_information_random_labels.py``: ``information_per_sample`` with dims
        ``(estimator, fraction, step)`` and ``train_accuracy`` ``(fraction, step)``.
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
