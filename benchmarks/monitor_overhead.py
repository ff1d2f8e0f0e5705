"""Overhead of a monitor: the demo's training alone, with light probes, and with all the demo's probes.

Prints the wall time of each run, the overhead as a percentage of training time, and the mean time each
probe took per call (read back from the run file's ``probe_seconds``).

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
from jacspec.probes import Performance, SpectralNorm


def run(probes_factory, epochs: int, every: int, tmp: str, name: str):
    def factory(model, data):
        return jacspec.Monitor(
            model, probes_factory(), data=data, every=every, path=Path(tmp) / f"{name}.nc", progress=False
        )

    start = time.perf_counter()
    _, _, _, monitor = train_digits_mlp(epochs=epochs, monitor_factory=factory)
    seconds = time.perf_counter() - start
    tree = jacspec.open_run(monitor.path)
    per_probe = {
        probe: float(node.ds["probe_seconds"].mean()) * (node.ds.sizes.get("split", 1))
        for probe, node in tree.children.items()
    }
    return seconds, len(tree["performance"].ds["step"]), per_probe


def main(epochs: int = 20, every: int = 20) -> None:
    train_digits_mlp(epochs=1)  # warm-up: imports, data, first kernels
    plain = float("inf")
    for _ in range(2):  # the faster of two plain runs
        start = time.perf_counter()
        train_digits_mlp(epochs=epochs)
        plain = min(plain, time.perf_counter() - start)
    rows = [{"run": "training only (440 SGD steps)", "seconds": plain, "overhead [%]": 0.0}]
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, factory in [
            ("light probes (performance, spectral_norm)", lambda: [Performance(), SpectralNorm()]),
            ("all demo probes", demo_probes),
        ]:
            seconds, steps, per_probe = run(factory, epochs, every, tmp, label.split()[0])
            timings.update(per_probe)
            rows.append(
                {
                    "run": f"training + monitor, {label}, {steps} probed steps",
                    "seconds": seconds,
                    "overhead [%]": 100 * (seconds - plain) / plain,
                }
            )
    print(markdown_table(rows, ["run", "seconds", "overhead [%]"]))
    print()
    print(
        markdown_table(
            [{"probe": k, "seconds per probed step (all splits)": v} for k, v in timings.items()],
            ["probe", "seconds per probed step (all splits)"],
        )
    )


if __name__ == "__main__":
    main()
