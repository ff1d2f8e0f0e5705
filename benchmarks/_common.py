"""Timing and peak-memory helpers shared by the benchmark scripts (Linux: /proc/self)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_memory_mib(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn`` once and return its result and the peak resident memory it added, in MiB.

    Resets the high-water mark (``/proc/self/clear_refs`` ← 5), runs ``fn`` and reads ``VmHWM``.
    """
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # pragma: no cover - not Linux or not permitted
        pass
    before = _status_kib("VmRSS")
    result = fn()
    peak = _status_kib("VmHWM")
    return result, max(peak - before, 0) / 1024.0


def time_call(fn: Callable[[], Any], repeat: int = 3, warmup: int = 1) -> tuple[Any, float]:
    """Median wall time of ``fn`` over ``repeat`` runs after ``warmup`` runs; returns (result, seconds)."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return result, times[len(times) // 2]


def markdown_table(rows: list[Any], columns: list[str] | tuple[str, ...]) -> str:
    """Rows (dicts keyed by column, or sequences in column order) as a markdown table.

    Floats are printed with 4 significant digits; anything else with ``str``.
    """
    rows = [row if isinstance(row, dict) else dict(zip(columns, row)) for row in rows]

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def issue_mlp():
    """The MLP 784-512-512-512-10 (ReLU) the benchmark targets are stated on."""
    from torch import nn

    return nn.Sequential(
        nn.Linear(784, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, 10),
    )
