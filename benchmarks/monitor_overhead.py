"""Overhead of the demo's monitor: the demo's training with and without its probes.

Run: python benchmarks/monitor_overhead.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table

import jacspec
from jacspec.cli import demo_probes, train_digits_mlp


def main(epochs: int = 20, every: int = 20) -> None:
    start = time.perf_counter()
    train_digits_mlp(epochs=epochs)
    plain = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:

        def factory(model, data):
            return jacspec.Monitor(
                model, demo_probes(), data=data, every=every, path=Path(tmp) / "run.nc", progress=False
            )

        start = time.perf_counter()
        _, _, _, monitor = train_digits_mlp(epochs=epochs, monitor_factory=factory)
        probed = time.perf_counter() - start
        steps = len(jacspec.open_run(monitor.path)["performance"].ds["step"])
    rows = [
        {"run": "training only", "seconds": plain},
        {"run": f"training + monitor ({steps} probed steps, {[p.name for p in demo_probes()]})", "seconds": probed},
    ]
    print(markdown_table(rows, ["run", "seconds"]))
    print(
        f"\nmonitor overhead: {100 * (probed - plain) / plain:.1f} % of training time "
        f"({(probed - plain) / steps * 1000:.0f} ms per probed step)"
    )


if __name__ == "__main__":
    main()
