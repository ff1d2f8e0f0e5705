"""Shared helpers of the figures: inputs, axis labels, time axes, legends, citations.

matplotlib is imported inside the functions that draw.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

#: The papers the probes reproduce, cited in full in every user-facing text.
CITATIONS = {
    "brandao2023": ('Brandão et al., "Is My Neural Net Driven by the MDL Principle?", ECML PKDD 2023 (LNCS 14170)'),
    "baratin2021": (
        'Aristide Baratin, "Some Phenomenological Investigations in Deep Learning", PhD thesis, '
        "Université de Montréal, 2021"
    ),
    "achille2018": (
        'Alessandro Achille and Stefano Soatto, "Emergence of Invariance and Disentanglement in Deep '
        'Representations", JMLR 19(50):1–34, 2018'
    ),
}
#: Short forms for figure titles (the full citation is in the report and the docs).
SHORT_CITATIONS = {
    "brandao2023": "Brandão et al., ECML PKDD 2023",
    "baratin2021": "Baratin, PhD thesis, 2021",
    "achille2018": "Achille & Soatto, JMLR 2018",
}
_INTERNAL = {"000": "brandao2023", "002": "baratin2021", "003": "achille2018"}
_INTERNAL_RE = re.compile(r"\b[Pp]aper (000|002|003)\b")

#: Which paper each built-in probe group reproduces.
PROBE_CITATION = {
    "point_jacobian": "brandao2023",
    "tangent_kernel": "baratin2021",
    "tangent_complexity": "baratin2021",
    "fourier_spectrum": "baratin2021",
    "mutual_information": "baratin2021",
    "weight_information": "achille2018",
}

MAX_LEGEND = 8
SPLIT_STYLES = {"train": "-", "test": "--"}
_OTHER_STYLES = [":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]


def cite(text: str, short: bool = False) -> str:
    """Replace internal document numbers ("paper" and a three-digit number) in ``text`` by the citation.

    Examples
    --------
    >>> cite("Claim 1 of paper " + "003", short=True)
    'Claim 1 of Achille & Soatto, JMLR 2018'
    """
    table = SHORT_CITATIONS if short else CITATIONS
    return _INTERNAL_RE.sub(lambda m: table[_INTERNAL[m.group(1)]], text)


def as_dataset(data: Any, group: str | None = None, argument: str = "data") -> xr.Dataset:
    """The Dataset of a probe's results from a Dataset, a DataTree node or a whole run tree.

    Parameters
    ----------
    data : xarray.Dataset or xarray.DataTree
        A probe's results, a run tree's group (``tree["tangent_kernel"]``) or the whole tree (then
        ``group`` is taken from it).
    group : str, optional
        The probe group to take from a whole run tree.
    argument : str
        Name of the argument, for error messages.
    """
    if isinstance(data, xr.Dataset):
        return data
    if isinstance(data, xr.DataTree):
        if group is not None and group in data.children:
            return data[group].to_dataset(inherit=False)
        if data.has_data or group is None:
            return data.to_dataset(inherit=False)
        raise ValueError(
            f"`{argument}` is a run tree without a {group!r} group; its groups are {sorted(data.children)}. "
            f"Pass tree[{group!r}] of a run that has the probe."
        )
    raise TypeError(
        f"`{argument}` must be an xarray.Dataset or xarray.DataTree (e.g. jacspec.open_run(path)"
        f"{f'[{group!r}]' if group else ''}), but got {type(data).__name__}."
    )


def wrap(text: str, width: int = 40) -> str:
    """``text`` broken into lines of at most ``width`` characters (never cut mid-word)."""
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False)) or text


def axis_label(da: xr.DataArray, width: int = 40, fallback: str | None = None) -> str:
    """An axis label from a variable's ``long_name`` and ``units`` (wrapped, never truncated).

    Examples
    --------
    >>> import xarray as xr
    >>> axis_label(xr.DataArray(1.0, name="loss", attrs={"long_name": "cross-entropy", "units": "nats"}))
    'cross-entropy [nats]'
    """
    name = str(da.attrs.get("long_name") or fallback or da.name or "")
    units = da.attrs.get("units")
    if units and str(units) not in ("1", ""):
        name = f"{name} [{units}]"
    return wrap(name, width)


def splits(data: xr.Dataset | xr.DataArray) -> list[tuple[str | None, Any]]:
    """``[(split, part)]``: the data per split, or ``[(None, data)]`` without a ``split`` dim."""
    if "split" in data.dims:
        return [(str(s), data.sel(split=s)) for s in data["split"].values]
    return [(None, data)]


def split_style(split: str | None, index: int = 0) -> Any:
    """Line style of a split: train solid, test dashed (as in the thesis), others dotted."""
    if split in SPLIT_STYLES:
        return SPLIT_STYLES[split]
    return "-" if split is None else _OTHER_STYLES[index % len(_OTHER_STYLES)]


def steps_of(data: xr.Dataset | xr.DataArray, argument: str = "data") -> np.ndarray:
    """The ``step`` coordinate as floats; a ValueError naming ``argument`` without one."""
    if "step" not in data.dims:
        raise ValueError(
            f"`{argument}` must have a 'step' dimension to plot over training, but has dims {tuple(data.dims)}. "
            "Pass the run's group (jacspec.open_run(path)[probe]) or results concatenated along 'step'."
        )
    return np.asarray(data["step"].values, dtype=float)


def log_time(ax: Any, steps: np.ndarray, log: bool | None = None) -> bool:
    """Put ``ax``'s step axis on a log scale (symlog, so step 0 shows) when ``log`` or, with ``log=None``,
    when the probed steps span more than two decades (log-spaced schedules, as in the papers)."""
    steps = np.asarray(steps, dtype=float)
    if log is None:
        positive = steps[steps > 0]
        log = positive.size > 2 and positive.max() / positive.min() > 100
    if log:
        ax.set_xscale("symlog", linthresh=1, linscale=0.5)
        if steps.size and steps.min() >= 0:
            ax.set_xlim(left=-0.2, right=steps.max() * 1.3 if steps.max() > 0 else None)
    ax.set_xlabel("training step" + (" (log scale)" if log else ""))
    return bool(log)


def is_constant(da: xr.DataArray) -> bool:
    """Whether every finite value of ``da`` is the same (or there is none): nothing to plot."""
    values = np.asarray(da.values)
    if values.dtype.kind not in "fiub":
        return True
    values = values.astype(float)
    values = values[np.isfinite(values)]
    return values.size == 0 or bool(np.all(values == values.flat[0]))


def numeric(da: xr.DataArray) -> bool:
    return np.asarray(da.values).dtype.kind in "fiub"


def legend(ax: Any, title: str | None = None, **kwargs: Any) -> bool:
    """A legend on ``ax`` only when it has 2 to :data:`MAX_LEGEND` labelled entries; returns whether drawn."""
    handles, labels = ax.get_legend_handles_labels()
    if not 1 < len(handles) <= MAX_LEGEND:
        if len(handles) == 1 and title:
            ax.legend(fontsize="small", title=title, **kwargs)
            return True
        return False
    kwargs.setdefault("fontsize", "small")
    kwargs.setdefault("framealpha", 0.6)  # lines under a crowded legend stay visible
    ax.legend(title=title, **kwargs)
    return True


def layer_labels(values: Sequence[Any]) -> list[str]:
    """Display names of ``layer`` coordinate values (module names from ``named_modules()``).

    Modules of an ``nn.Sequential`` are named by their index ("0", "3"): shown as "module 0". A pair of
    modules written "a;b" is shown as "a → b".
    """
    out = []
    for value in values:
        text = str(value)
        parts = [p for p in re.split(r"[;,]", text) if p]
        shown = []
        for part in parts or [text]:
            part = part.strip()
            shown.append(f"module {part}" if part.isdigit() else (part or "(root)"))
        out.append(" → ".join(shown))
    return out


def panel_axes(ax: Any, n: int, width: float = 4.4, height: float = 3.4, ncols: int | None = None) -> tuple[Any, list]:
    """``(figure, [axes])``: ``n`` new panels in a grid, or the ``n`` axes the caller passed as ``ax``."""
    import matplotlib.pyplot as plt

    if ax is not None:
        axes = list(np.ravel(ax)) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(axes) < n:
            raise ValueError(
                f"`ax` must hold {n} Axes (one per panel), but got {len(axes)}. Pass ax=None for a new figure "
                f"or a sequence of {n} Axes."
            )
        return axes[0].figure, axes[:n]
    ncols = ncols or min(n, 3)
    nrows = int(np.ceil(n / ncols))
    fig, grid = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = list(grid.flat)
    for extra in flat[n:]:
        extra.set_visible(False)
    return fig, flat[:n]
