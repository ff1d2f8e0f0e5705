"""Benchmark of the run store: per-append time and footprint, jacspec 0.1's store against the live store.

Every probed step appends a PointJacobian-sized result: two splits x ``--samples`` samples x 10 components,
float64 (160 kB with the default 1000 samples). Reported for each store: the time of the 10th, 100th and 600th
append (median of the five appends around that step), the bytes that append wrote, and at the end
the footprint on disk over the raw data (for the new store: while live, and the single file after
``close()``, with the time the compaction took).

jacspec 0.1 copies the whole file on every append, so its time grows with the run (and its total with the
square of the run's length): by default it runs to step 100 only (``--v01-steps 600`` for the full table:
about 7 GB and an hour of copying).

Run: python benchmarks/store.py [--steps 600] [--v01-steps 100] [--samples 1000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table
from _store_v01 import RunStoreV01

from jacspec.store import RunStore

MARKS = (10, 100, 600)


def step_results(step: int, samples: int) -> dict:
    """One PointJacobian-sized result keyed by split (seeded by the step)."""
    g = np.random.default_rng(step)
    return {
        "point_jacobian": {
            split: xr.Dataset(
                {"sigma": (("sample", "component"), g.normal(size=(samples, 10)), {"long_name": "σ", "units": "1"})},
                coords={"component": np.arange(10)},
            )
            for split in ("train", "test")
        }
    }


def disk_bytes(path: Path) -> int:
    """Size of a file, or of every file under a folder."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def run(store, footprint_of: Path, steps: int, samples: int) -> dict:
    """Append ``steps`` steps; per-append seconds and bytes written, at every step."""
    seconds, written = [], []
    before = disk_bytes(footprint_of)
    for step in range(steps):
        results = step_results(step, samples)
        start = time.perf_counter()
        store.append(step, results)
        seconds.append(time.perf_counter() - start)
        after = disk_bytes(footprint_of)
        # 0.1 rewrites the file: it writes its whole new size; the live store writes the new step only
        written.append(after if isinstance(store, RunStoreV01) else after - before)
        before = after
    return {"seconds": seconds, "written": written, "footprint": disk_bytes(footprint_of)}


def around(values: list[float], mark: int) -> float | None:
    """Median over the five appends around the ``mark``-th (index ``mark - 1``); None if not reached."""
    if mark > len(values):
        return None
    return statistics.median(values[max(0, mark - 3) : mark + 2])


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark and return its markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="steps for the new store (default 600)")
    parser.add_argument("--v01-steps", type=int, default=100, help="steps for the 0.1 store (default 100)")
    parser.add_argument("--samples", type=int, default=1000, help="samples per split (default 1000: 160 kB a step)")
    parser.add_argument("--dir", default=None, help="folder for the run files (default: a temporary folder)")
    args = parser.parse_args(argv)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="jacspec-store-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    raw_step = 2 * args.samples * 10 * 8
    rows = []
    try:
        old_path = folder / "v01.nc"
        old = run(RunStoreV01(old_path, overwrite=True), old_path, args.v01_steps, args.samples)
        old_path.unlink()
        new_path = folder / "new.nc"
        store = RunStore(new_path, overwrite=True)
        new = run(store, store.live, args.steps, args.samples)
        start = time.perf_counter()
        store.close()
        close_seconds = time.perf_counter() - start
        closed = disk_bytes(new_path)
        for label, result, steps in (("0.1 (copy per append)", old, args.v01_steps), ("live store", new, args.steps)):
            row = {"store": label}
            for mark in MARKS:
                t = around(result["seconds"], mark)
                w = around(result["written"], mark)
                row[f"append at {mark} (ms)"] = "not run" if t is None else f"{1e3 * t:.1f}"
                row[f"MB written at {mark}"] = "not run" if w is None else f"{w / 1e6:.2f}"
            row["footprint / raw"] = f"{result['footprint'] / (steps * raw_step):.2f} ({steps} steps)"
            rows.append(row)
        rows.append(
            {
                "store": f"live store, closed (compaction {close_seconds:.1f} s)",
                **{k: "" for k in rows[0] if k not in ("store", "footprint / raw")},
                "footprint / raw": f"{closed / (args.steps * raw_step):.2f} ({args.steps} steps)",
            }
        )
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    table = markdown_table(rows, list(rows[0]))
    print(f"step: 2 splits x {args.samples} samples x 10 components, float64 = {raw_step / 1e3:.0f} kB of data\n")
    print(table)
    return table


if __name__ == "__main__":
    main()
