"""The run report: one PNG per probe group and a self-contained HTML page, and the overlay of runs.

Used by ``jacspec report RUN --out DIR`` and ``jacspec compare RUN... --var probe/variable``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from jacspec.plot._common import CITATIONS, PROBE_CITATION, axis_label, legend, log_time, split_style, splits

__all__ = ["summary_rows", "write_report", "compare_figure"]

_SKIP = {"wall_time", "probe_seconds"}


def summary_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    """The key numbers of a probe group: every scalar-per-step variable at its first and last probed step.

    Parameters
    ----------
    ds : xarray.Dataset
        A probe group of a run (dims ``step`` and optionally ``split``).

    Returns
    -------
    list of dict
        One ``{"variable", "split", "first_step", "first", "last_step", "last", "long_name", "units"}``
        per variable and split; the first/last steps are those with a finite value.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"loss": ("step", [2.0, 1.0, 0.5])}, coords={"step": [0, 10, 20]})
    >>> [(r["first_step"], r["first"], r["last_step"], r["last"]) for r in summary_rows(ds)]
    [(0, 2.0, 20, 0.5)]
    """
    rows = []
    for name in ds.data_vars:
        da = ds[name]
        if name in _SKIP or "step" not in da.dims or set(da.dims) - {"step", "split"}:
            continue
        if np.asarray(da.values).dtype.kind not in "fiub":
            continue
        for split, part in splits(da):
            values = np.asarray(part.values, dtype=float)
            finite = np.flatnonzero(np.isfinite(values))
            if finite.size == 0:
                continue
            steps = np.asarray(part["step"].values)
            rows.append(
                {
                    "variable": str(name),
                    "split": split,
                    "first_step": int(steps[finite[0]]),
                    "first": float(values[finite[0]]),
                    "last_step": int(steps[finite[-1]]),
                    "last": float(values[finite[-1]]),
                    "long_name": str(da.attrs.get("long_name", "")),
                    "units": str(da.attrs.get("units", "")),
                }
            )
    return rows


def _png(fig: Any, path: Path | None = None, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    data = buffer.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_report(tree: xr.DataTree, out: str | os.PathLike, source: str | None = None) -> dict[str, Any]:
    """Write ``<out>/<group>.png`` for every probe group of a run and ``<out>/report.html``.

    The HTML page is self-contained (figures inlined as base64 PNG): provenance (the run's root
    attributes), then per group its figure (:func:`jacspec.plot.plot_probe`), the paper it follows (full
    citation), and a table of the first and last probed value of every scalar variable per split.

    Parameters
    ----------
    tree : xarray.DataTree
        A run from :func:`jacspec.open_run`.
    out : str or Path
        Output directory (created if needed).
    source : str, optional
        The run file's path, shown in the page.

    Returns
    -------
    dict
        ``{"html": Path, "figures": {group: Path}, "skipped": {group: reason}}``.

    Examples
    --------
    >>> write_report(jacspec.open_run("runs/demo.nc"), "runs/demo_report")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    from jacspec.plot.panels import plot_probe

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    sections = []
    for name, node in tree.children.items():
        ds = node.to_dataset(inherit=False)
        try:
            fig = plot_probe(ds, group=name)
        except ValueError as err:  # e.g. a group with nothing but constant values
            skipped[name] = " ".join(str(err).split())
            fig = None
        image = ""
        if fig is not None:
            path = out / f"{name}.png"
            data = _png(fig, path)
            plt.close(fig)
            figures[name] = path
            image = (
                f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{html.escape(name)}">'
            )
        else:
            image = f"<p><em>no figure: {html.escape(skipped[name])}</em></p>"
        cited = PROBE_CITATION.get(name)
        citation = f"<p class='cite'>After {html.escape(CITATIONS[cited])}.</p>" if cited else ""
        steps = ds["step"].values if "step" in ds.coords else []
        facts = f"{len(steps)} probed steps" + (f", {int(steps[0])} to {int(steps[-1])}" if len(steps) else "")
        if "split" in ds.coords:
            facts += f"; splits: {', '.join(map(str, ds['split'].values))}"
        sections.append(
            f"<section><h2>{html.escape(name)}</h2><p>{html.escape(facts)}</p>{citation}{image}"
            f"{_table(summary_rows(ds))}{_attrs_table(ds.attrs, 'probe attributes')}</section>"
        )
    attrs = {key: _decode(value) for key, value in tree.attrs.items()}
    title = f"jacspec run report: {source}" if source else "jacspec run report"
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<nav>{' · '.join(f'<a href=#{html.escape(n)}>{html.escape(n)}</a>' for n in tree.children)}</nav>"
        f"{_attrs_table(attrs, 'provenance')}"
        + "".join(
            s.replace("<section>", f"<section id='{html.escape(n)}'>", 1) for s, n in zip(sections, tree.children)
        )
        + "</body></html>"
    )
    page_path = out / "report.html"
    page_path.write_text(page, encoding="utf-8")
    return {"html": page_path, "figures": figures, "skipped": skipped}


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = ("variable", "split", "first step", "value", "last step", "value", "meaning")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    body = []
    for row in rows:
        meaning = row["long_name"] + (f" [{row['units']}]" if row["units"] and row["units"] != "1" else "")
        body.append(
            f"<tr><td><code>{html.escape(row['variable'])}</code></td><td>{html.escape(row['split'] or '')}</td>"
            f"<td>{row['first_step']}</td><td>{row['first']:.6g}</td><td>{row['last_step']}</td>"
            f"<td>{row['last']:.6g}</td><td>{html.escape(meaning)}</td></tr>"
        )
    return f"<table class='numbers'>{head}{''.join(body)}</table>"


def _attrs_table(attrs: Mapping[str, Any], caption: str) -> str:
    if not attrs:
        return ""
    rows = []
    for key, value in attrs.items():
        text = json.dumps(value, indent=1, default=str) if isinstance(value, (dict, list)) else str(value)
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td><pre>{html.escape(text)}</pre></td></tr>")
    return f"<details><summary>{html.escape(caption)}</summary><table class='attrs'>{''.join(rows)}</table></details>"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1400px;margin:1em auto;padding:0 1em;color:#222}"
    "img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0;font-size:90%}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
    "pre{margin:0;white-space:pre-wrap;max-width:1100px}.cite{color:#555;font-style:italic}"
    "section{margin-top:2em}"
)


def compare_figure(series: Mapping[str, xr.DataArray], title: str = "", log_steps: bool | None = None) -> Any:
    """Overlay one scalar-per-step variable of several runs: one line per run and split.

    Parameters
    ----------
    series : mapping
        ``{run label: DataArray}`` with dims ``(step,)`` or ``(step, split)``.
    title : str
        Figure title (e.g. ``"performance/accuracy"``).
    log_steps : bool, optional
        Log (symlog) step axis; by default when the steps span more than two decades.

    Returns
    -------
    matplotlib.figure.Figure
        A legend when there are at most 8 lines; otherwise runs are coloured along a colour map with a
        colour bar (train solid, test dashed).

    Examples
    --------
    >>> import xarray as xr
    >>> a = xr.DataArray([0.1, 0.5], dims="step", coords={"step": [0, 10]})
    >>> fig = compare_figure({"a": a, "b": a * 2}, "performance/accuracy")
    """
    import matplotlib.pyplot as plt

    if not series:
        raise ValueError("`series` must hold at least one run's DataArray, but is empty.")
    fig, ax = plt.subplots(figsize=(7, 4.4))
    labels = list(series)
    many = sum(len(splits(da)) for da in series.values()) > 8
    colors = (
        plt.get_cmap("viridis")(np.linspace(0, 0.9, len(labels)))
        if many
        else [f"C{i % 10}" for i in range(len(labels))]
    )
    all_steps = []
    for label, color in zip(labels, colors):
        da = series[label]
        for index, (split, part) in enumerate(splits(da)):
            steps = np.asarray(part["step"].values, dtype=float)
            all_steps.append(steps)
            ax.plot(
                steps,
                np.asarray(part.values, dtype=float),
                linestyle=split_style(split, index),
                marker=".",
                ms=3,
                color=color,
                label=label + (f" ({split})" if split else ""),
            )
    log_time(ax, np.concatenate(all_steps), log_steps)
    first = next(iter(series.values()))
    ax.set_ylabel(axis_label(first, width=40))
    ax.set_title(title, fontsize=10)
    if not legend(ax):
        mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(-0.5, len(labels) - 0.5))
        bar = fig.colorbar(mappable, ax=ax, ticks=range(len(labels)) if len(labels) <= 20 else None)
        if len(labels) <= 20:
            bar.ax.set_yticklabels(labels, fontsize=6)
        bar.set_label("run")
        ax.text(0.01, 0.99, "train: solid, test: dashed", transform=ax.transAxes, fontsize=7, va="top")
    fig.tight_layout()
    return fig
