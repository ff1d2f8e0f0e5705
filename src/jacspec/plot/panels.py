"""One figure per probe group of a run, in the papers' plot styles, and a generic panel for any variable.

* :func:`plot_probe` — the figure of one probe group (dispatches on the group's name; any other group,
  e.g. a user's probe, gets :func:`plot_group`).
* :func:`plot_variable` — one panel of any ``step``-indexed variable: lines per split (train solid, test
  dashed) and per short dimension (a legend when it fits, a colour bar otherwise), or a heatmap over a
  long dimension.
* :func:`plot_group` — small multiples of every non-constant variable of a group.
* :func:`plot_performance`, :func:`plot_point_jacobian`, :func:`plot_fourier_spectrum`,
  :func:`plot_mutual_information` — the built-in probes' figures (the tangent kernel, spectral norm and
  weight information ones live in their own modules).

Every function takes an ``xarray.Dataset`` (a probe's results with a ``step`` dim) or an
``xarray.DataTree`` (the run, or its group) and an optional ``ax`` (one Axes, or a sequence of Axes for
the multi-panel figures). matplotlib is imported inside each function.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from jacspec.plot._common import (
    CITATIONS,
    MAX_LEGEND,
    PROBE_CITATION,
    SHORT_CITATIONS,
    as_dataset,
    axis_label,
    is_constant,
    layer_labels,
    legend,
    log_time,
    numeric,
    panel_axes,
    split_style,
    splits,
    steps_of,
    wrap,
)

__all__ = [
    "plot_probe",
    "plot_group",
    "plot_variable",
    "plot_performance",
    "plot_point_jacobian",
    "plot_fourier_spectrum",
    "plot_mutual_information",
    "panel_variables",
]

SKIP = {"wall_time", "probe_seconds"}
_WEIGHT_INFORMATION = {"weight_information", "weight_information_per_sample", "layer_weight_information"}
_LINE_DIMS = ("layer", "mode", "pair", "output", "k", "quantile")
# integer bookkeeping variables that say nothing about learning unless they are non-zero
_COUNTERS = {"n_nonfinite_jacobians", "n_zero_singular_values", "n_clipped", "layer_n_clipped", "layer_n_parameters"}


def _title(ax: Any, text: str, width: int = 48) -> None:
    ax.set_title(wrap(text, width), fontsize=9)


def _dim_labels(da: xr.DataArray, dim: str) -> list[str]:
    values = list(da[dim].values)
    if dim == "layer":
        return layer_labels(values)
    if dim == "pair" and "first" in da.coords and "second" in da.coords:
        return [f"I({a}; {b})" for a, b in zip(layer_labels(da["first"].values), layer_labels(da["second"].values))]
    if dim == "k":
        return [f"k = {v}" for v in values]
    return [f"{dim} {v:g}" if isinstance(v, (float, np.floating)) else f"{dim} {v}" for v in values]


def panel_variables(ds: xr.Dataset) -> list[str]:
    """The variables of a group worth a panel: numeric, with a ``step`` dim, not bookkeeping
    (``wall_time``, ``probe_seconds``), not constant over everything (a flat line says nothing).

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from jacspec.plot.panels import panel_variables
    >>> ds = xr.Dataset({"loss": ("step", [2.0, 1.0]), "counter": ("step", [0, 0])}, coords={"step": [0, 10]})
    >>> panel_variables(ds)  # the constant counter gets no panel
    ['loss']
    """
    out = []
    for name in ds.data_vars:
        da = ds[name]
        if name in SKIP or "step" not in da.dims or not numeric(da) or is_constant(da):
            continue
        if da.dims == ("step", "split", "sample") or "sample" in da.dims:
            continue  # per-example values: summarised by the probe's own scalars
        out.append(str(name))
    return out


def plot_variable(
    data: Any, variable: str, ax: Any = None, split: str | None = None, log_steps: bool | None = None
) -> Any:
    """One panel: a ``step``-indexed variable against the training step.

    Parameters
    ----------
    data : xarray.Dataset or DataTree
        A probe group of a run (dims ``step``, optionally ``split``, and the probe's own dims).
    variable : str
        The variable to draw. Dims besides ``step`` and ``split``: one short dim (≤ 8 entries, e.g.
        ``layer``) gives a line per entry; a long one (e.g. ``eigen``, ``frequency``) gives a heatmap
        over step × that dim (of the first split, or ``split``); further dims are averaged (noted in
        the title).
    ax : matplotlib Axes, optional
    split : str, optional
        Draw only this split.
    log_steps : bool, optional
        Log (symlog) step axis; by default when the probed steps span more than two decades.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> ax = plot_variable(jacspec.open_run("runs/demo.nc")["performance"], "accuracy")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    ds = as_dataset(data)
    if variable not in ds.data_vars:
        raise ValueError(f"`variable` {variable!r} is not in the Dataset; available: {sorted(map(str, ds.data_vars))}.")
    da = ds[variable]
    steps = steps_of(da, f"data[{variable!r}]")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    if split is not None and "split" in da.dims:
        da = da.sel(split=split)
    own = [d for d in da.dims if d not in ("step", "split")]
    line_dim = next((d for d in own if d in _LINE_DIMS and da.sizes[d] <= MAX_LEGEND), None)
    if line_dim is None and len(own) == 1 and da.sizes[own[0]] <= MAX_LEGEND:
        line_dim = own[0]
    long_dim = None
    if line_dim is None and own:
        long_dim = max(own, key=lambda d: da.sizes[d])
    reduce = [d for d in own if d not in (line_dim, long_dim)]
    title = variable
    if reduce:
        da = da.astype(float).mean(dim=reduce, skipna=True)
        title += f" (mean over {', '.join(reduce)})"
    if long_dim is not None:
        _heatmap(ax, da, long_dim, steps, title)
        return ax
    parts = splits(da)
    for index, (name, part) in enumerate(parts):
        style = split_style(name, index)
        suffix = f" ({name})" if name and len(parts) > 1 else ""
        if line_dim is None:
            ax.plot(
                steps,
                np.asarray(part.values, dtype=float),
                linestyle=style,
                marker=".",
                ms=4,
                color="C0",
                label=(name or variable),
            )
        else:
            colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, part.sizes[line_dim]))
            for i, (label, color) in enumerate(zip(_dim_labels(part, line_dim), colors)):
                ax.plot(
                    steps,
                    np.asarray(part.isel({line_dim: i}).values, dtype=float),
                    linestyle=style,
                    marker=".",
                    ms=3,
                    color=color,
                    label=label + suffix,
                )
    log_time(ax, steps, log_steps)
    ax.set_ylabel(axis_label(ds[variable], width=36), fontsize=8)
    if not legend(ax):
        _style_note(ax, parts, line_dim)
    if variable in _WEIGHT_INFORMATION:
        title += " — defined up to an additive constant (C = 0): the sign carries no meaning, compare differences"
    _title(ax, title)
    return ax


def _style_note(ax: Any, parts: list, line_dim: str | None) -> None:
    """With too many lines for a legend: a colour bar for the line dim and a note on the split styles."""
    import matplotlib.pyplot as plt

    if line_dim is not None:
        n = parts[0][1].sizes[line_dim]
        mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(-0.5, n - 0.5))
        bar = ax.figure.colorbar(mappable, ax=ax, ticks=range(n) if n <= 12 else None, pad=0.02)
        if n <= 12:
            bar.ax.set_yticklabels(_dim_labels(parts[0][1], line_dim), fontsize=6)
        bar.set_label(line_dim, fontsize=7)
    names = [name for name, _ in parts if name]
    if len(names) > 1:
        ax.text(
            0.01,
            0.99,
            ", ".join(
                f"{n}: {'solid' if split_style(n, i) == '-' else 'dashed' if split_style(n, i) == '--' else 'dotted'}"
                for i, n in enumerate(names)
            ),
            transform=ax.transAxes,
            fontsize=6,
            va="top",
            color="0.3",
        )


def _heatmap(ax: Any, da: xr.DataArray, dim: str, steps: np.ndarray, title: str) -> None:
    from matplotlib.colors import LogNorm

    parts = splits(da)
    name, part = parts[0]
    values = np.asarray(part.transpose("step", dim).values, dtype=float)
    finite = values[np.isfinite(values)]
    norm = None
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        norm = LogNorm(vmin=max(finite.min(), finite.max() * 1e-6), vmax=finite.max())
    index = np.asarray(da[dim].values)
    y = index if index.dtype.kind in "fiu" else np.arange(len(index))
    mesh = ax.pcolormesh(np.arange(len(steps)), y, values.T, shading="nearest", cmap="viridis", norm=norm)
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 6)).round().astype(int))
    ax.set_xticks(ticks, [f"{steps[t]:g}" for t in ticks])
    ax.set_xlabel("training step (probed steps, evenly spaced)")
    ax.set_ylabel(wrap(str(da[dim].attrs.get("long_name", dim)), 36), fontsize=8)
    ax.figure.colorbar(mesh, ax=ax, pad=0.02).set_label(axis_label(da, width=30), fontsize=7)
    _title(ax, title + (f" ({name})" if name else ""))


def plot_group(data: Any, ax: Any = None, variables: list[str] | None = None, title: str | None = None) -> Any:
    """Small multiples: one :func:`plot_variable` panel per variable of a probe group.

    Parameters
    ----------
    data : xarray.Dataset or DataTree
        A probe group of a run.
    ax : sequence of Axes, optional
        One per panel; a new figure otherwise.
    variables : list of str, optional
        Default :func:`panel_variables` (constant and bookkeeping variables left out).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_group(jacspec.open_run("runs/demo.nc")["performance"])  # doctest: +SKIP
    """
    ds = as_dataset(data)
    names = panel_variables(ds) if variables is None else list(variables)
    if not names:
        raise ValueError(
            f"Nothing to plot: no variable of the group has a 'step' dim and more than one value "
            f"(variables: {sorted(map(str, ds.data_vars))})."
        )
    fig, axes = panel_axes(ax, len(names))
    for axis, name in zip(axes, names):
        plot_variable(ds, name, ax=axis)
    if title and ax is None:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_performance(data: Any, ax: Any = None, log_steps: bool | None = None) -> Any:
    """Loss and accuracy over training, train solid and test dashed.

    Parameters
    ----------
    data : xarray.Dataset or DataTree
        The ``performance`` group of a run (or the run).
    ax : sequence of 2 Axes, optional
    log_steps : bool, optional
        Log step axis (default: when the steps span more than two decades).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_performance(jacspec.open_run("runs/demo.nc"))  # doctest: +SKIP
    """
    ds = as_dataset(data, "performance")
    names = [v for v in ("loss", "accuracy") if v in ds]
    names += [v for v in panel_variables(ds) if v not in names]
    fig, axes = panel_axes(ax, len(names), ncols=len(names))
    for axis, name in zip(axes, names):
        plot_variable(ds, name, ax=axis, log_steps=log_steps)
    return fig


def plot_point_jacobian(data: Any, ax: Any = None, step: int | None = None, log_steps: bool | None = None) -> Any:
    """Point-Jacobian spectra in the style of Brandão et al. (ECML PKDD 2023), Figs. 1–4.

    Panels: the mean log singular value E[log σ] over training (train solid, test dashed); the
    histogram of log σ at ``step`` (default: the last) for each split with the split between the two
    modes and a fitted lognormal per mode; and, when two modes are found, the fraction of singular
    values in the upper mode over training.

    Parameters
    ----------
    data : xarray.Dataset or DataTree
        The ``point_jacobian`` group of a run.
    ax : sequence of Axes, optional
        One per panel (2 + number of splits).
    step : int, optional
        The step of the histograms (default: the last probed step).
    log_steps : bool, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_point_jacobian(jacspec.open_run("runs/demo.nc"))  # doctest: +SKIP
    """
    from jacspec.plot.point_jacobian import spectrum_histogram

    ds = as_dataset(data, "point_jacobian")
    steps_of(ds, "data")
    parts = splits(ds)
    modes = "mode_fraction" in ds and "mode" in ds.dims and not is_constant(ds["mode_fraction"])
    n = 1 + len(parts) + int(modes)
    fig, axes = panel_axes(ax, n, ncols=min(n, 4), width=4.2)
    plot_variable(ds, "mean_log_singular_value", ax=axes[0], log_steps=log_steps)
    axes[0].set_ylabel("E[log σ] [nat]", fontsize=8)
    at = ds["step"].values[-1] if step is None else step
    for axis, (name, part) in zip(axes[1:], parts):
        values = part["singular_values"].sel(step=at)
        spectrum_histogram(values.values, ax=axis, label=name or "")
        _title(axis, f"log σ at step {int(at)}" + (f" ({name})" if name else ""))
        axis.legend(fontsize=6, loc="upper left")
    if modes:
        axis = axes[-1]
        upper = ds["mode_fraction"].isel(mode=-1)
        for index, (name, part) in enumerate(splits(upper)):
            axis.plot(
                steps_of(ds),
                np.asarray(part.values, dtype=float),
                linestyle=split_style(name, index),
                marker=".",
                color="C3",
                label=name or "upper mode",
            )
        log_time(axis, steps_of(ds), log_steps)
        axis.set_ylabel("fraction of σ in the upper mode", fontsize=8)
        _title(axis, "bimodal split: upper-mode fraction (NaN: unimodal)")
        legend(axis)
    return fig


def plot_fourier_spectrum(data: Any, ax: Any = None, variable: str = "amplitude") -> Any:
    """The spectrum of the network function over training, as in Baratin's thesis (2021), Fig. 3.1.

    One heatmap per split, frequency (or kernel eigen-index) × probed step, the colour the amplitude
    (root mean square over output units, log colour scale when it spans decades), and a last panel with
    the spectrum at the first and the last probed step (log scale), one line per split and step.

    Parameters
    ----------
    data : xarray.Dataset or DataTree
        The ``fourier_spectrum`` group of a run.
    ax : sequence of Axes, optional
        One per split plus one.
    variable : str
        The spectrum variable (``amplitude``, or ``normalized_amplitude`` when the probe had a target).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_fourier_spectrum(jacspec.open_run("runs/demo.nc"))  # doctest: +SKIP
    """
    ds = as_dataset(data, "fourier_spectrum")
    if variable not in ds:
        raise ValueError(f"`variable` {variable!r} is not in the Dataset; available: {sorted(map(str, ds.data_vars))}.")
    da = ds[variable]
    steps = steps_of(da, f"data[{variable!r}]")
    freq = next((d for d in ("frequency", "eigen", "target_frequency") if d in da.dims), None)
    if freq is None:
        raise ValueError(f"`data[{variable!r}]` has no frequency dim (frequency, eigen): dims {da.dims}.")
    other = [d for d in da.dims if d not in ("step", "split", freq)]
    rms = np.sqrt((da.astype(float) ** 2).mean(dim=other, skipna=True)) if other else da.astype(float)
    rms.attrs = dict(da.attrs)
    if other:
        rms.attrs["long_name"] = f"{da.attrs.get('long_name', variable)}, RMS over {', '.join(other)}"
    parts = splits(rms)
    fig, axes = panel_axes(ax, len(parts) + 1, ncols=len(parts) + 1, width=4.6)
    for axis, (name, part) in zip(axes, parts):
        _heatmap(axis, part, freq, steps, f"{variable} over training")
        if name:
            axis.set_title(wrap(f"{variable} over training ({name})", 48), fontsize=9)
    axis = axes[-1]
    for index, (name, part) in enumerate(parts):
        for at, color in ((0, "C0"), (-1, "C3")):
            curve = part.isel(step=at)
            axis.plot(
                np.asarray(curve[freq].values, dtype=float),
                np.asarray(curve.values, dtype=float),
                linestyle=split_style(name, index),
                color=color,
                label=f"step {int(steps[at])}" + (f" ({name})" if name else ""),
            )
    axis.set_yscale("log")
    axis.set_xlabel(wrap(str(da[freq].attrs.get("long_name", freq)), 40))
    axis.set_ylabel(axis_label(rms, width=36), fontsize=8)
    _title(axis, "spectrum at the first and last probed step")
    legend(axis)
    return fig


def plot_mutual_information(data: Any, ax: Any = None, log_steps: bool | None = None) -> Any:
    """Mutual-information estimates over training and, when both I(X;T) and I(T;Y) are measured, the
    information plane (Baratin's thesis, 2021, chapter 5).

    Parameters
    ----------
    data : xarray.Dataset or DataTree
        The ``mutual_information`` group of a run.
    ax : sequence of Axes, optional
        One or two (with the information plane).
    log_steps : bool, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_mutual_information(jacspec.open_run("runs/demo.nc"))  # doctest: +SKIP
    """
    from jacspec.plot.mutual_information import plot_information_plane

    ds = as_dataset(data, "mutual_information")
    plane = True
    try:
        probe_plane = "pair" in ds["mutual_information"].dims
        first = [str(v) for v in ds["first"].values] if probe_plane else []
        second = [str(v) for v in ds["second"].values] if probe_plane else []
        plane = probe_plane and any(a == "input" and (b, "label") in zip(first, second) for a, b in zip(first, second))
    except KeyError:
        plane = False
    fig, axes = panel_axes(ax, 1 + int(plane), ncols=1 + int(plane), width=4.8)
    plot_variable(ds, "mutual_information", ax=axes[0], log_steps=log_steps)
    method = ds.attrs.get("method")
    _title(axes[0], "mutual information" + (f" ({method} estimator)" if method else ""))
    if plane:
        plot_information_plane(ds, ax=axes[1])
    return fig


def plot_probe(data: Any, group: str | None = None) -> Any:
    """The figure of one probe group, in its paper's style; any other group gets :func:`plot_group`.

    Parameters
    ----------
    data : xarray.Dataset or DataTree
        A probe group (``tree["tangent_kernel"]``), its Dataset, or the whole run with ``group``.
    group : str, optional
        The probe's name (default: the node's name or the Dataset's ``probe`` attribute).

    Returns
    -------
    matplotlib.figure.Figure
        With a title naming the probe and the paper it follows.

    Examples
    --------
    >>> tree = jacspec.open_run("runs/demo.nc")  # doctest: +SKIP
    >>> plot_probe(tree["tangent_kernel"]).savefig("tangent_kernel.png")  # doctest: +SKIP
    """
    from jacspec.plot.fourier_spectrum import plot_spectral_norms
    from jacspec.plot.tangent_kernel import plot_tangent_kernel_summary
    from jacspec.plot.weight_information import plot_weight_information

    if group is None and isinstance(data, xr.DataTree) and data.parent is not None:
        group = data.name
    ds = as_dataset(data, group)
    group = group or ds.attrs.get("probe")
    figures = {
        "performance": plot_performance,
        "spectral_norm": lambda d: plot_spectral_norms(d).figure,
        "point_jacobian": plot_point_jacobian,
        "tangent_kernel": lambda d: plot_tangent_kernel_summary(d, log_steps=None),
        "fourier_spectrum": plot_fourier_spectrum,
        "weight_information": plot_weight_information,
        "mutual_information": plot_mutual_information,
    }
    draw = figures.get(group or "")
    fig = draw(ds) if draw is not None else plot_group(ds)
    cited = PROBE_CITATION.get(group or "")
    title = (group or "results") + (f" — after {SHORT_CITATIONS[cited]}" if cited else "")
    fig.suptitle(title, fontsize=10, y=1.0)
    fig.tight_layout(rect=getattr(fig, "_jacspec_layout_rect", (0, 0, 1, 1)))
    return fig


FULL_CITATIONS = CITATIONS  # re-exported for the report
