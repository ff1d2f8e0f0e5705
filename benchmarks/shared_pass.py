"""One Monitor step with several probes against TangentKernel alone: what the shared pass saves.

The pytorch/examples MNIST CNN (conv 32, conv 64, fc 128; 1.2 M parameters) on scikit-learn's digits
upscaled to 28 × 28, n examples per split, two splits. Each row is one Monitor step (median of
``--repeat``): TangentKernel alone; PointJacobian + TangentKernel + Performance (the probes share one
forward and c backward passes per split, :mod:`jacspec.engine.shared_pass`); the same probes measured one
by one (each its own passes and snapshot, as before the shared pass); and with SpectralNorm too. Prints
seconds per step, the ratio to TangentKernel alone (target ≤ 1.1 for PJ + TK + Performance), the model's
forward calls per step and the peak memory added.

Run: python benchmarks/shared_pass.py [--n 64] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch
from _common import markdown_table, peak_memory_mib
from monitor_overhead import MnistCNN, digits_28

import jacspec
from jacspec.probes import Performance, PointJacobian, SpectralNorm, TangentKernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="examples per split")
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = digits_28()
    data = {"train": (x_train[: args.n], y_train[: args.n]), "test": (x_test[: args.n], y_test[: args.n])}
    model = MnistCNN()
    calls = [0]
    model.register_forward_pre_hook(lambda module, inputs: calls.__setitem__(0, calls[0] + 1))

    def monitor_step(probes):
        monitor = jacspec.Monitor(model, probes, data=data, every=1, progress=False)
        counter = iter(range(1, 10**9))
        return lambda: monitor.step(next(counter), force=True)

    def one_by_one(probes):
        def run():
            for probe in probes:
                for x, y in data.values():
                    probe.measure(model, x, y)

        return run

    cases = [
        ("TangentKernel alone (Monitor)", monitor_step([TangentKernel()])),
        (
            "PointJacobian + TangentKernel + Performance (Monitor, shared pass)",
            monitor_step([PointJacobian(), TangentKernel(), Performance()]),
        ),
        (
            "the same probes one by one (no shared pass)",
            one_by_one([PointJacobian(), TangentKernel(), Performance()]),
        ),
        (
            "+ SpectralNorm (Monitor, shared pass)",
            monitor_step([PointJacobian(), TangentKernel(), Performance(), SpectralNorm()]),
        ),
    ]
    # interleaved: every repeat times each case once, so the ratios are paired (this machine is noisy)
    for _, fn in cases:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in cases]
    for _ in range(args.repeat):
        for k, (_, fn) in enumerate(cases):
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    rows = []
    for k, (label, fn) in enumerate(cases):
        calls[0] = 0
        _, peak = peak_memory_mib(fn)
        ratios = sorted(t / r for t, r in zip(times[k], times[0]))
        rows.append(
            {
                "step": label,
                "seconds": statistics.median(times[k]),
                "× TangentKernel alone": statistics.median(ratios),
                "ratio range": f"{ratios[0]:.3f}–{ratios[-1]:.3f}",
                "forward calls": calls[0],
                "peak MiB": peak,
            }
        )
    print(
        f"MNIST CNN (1.2 M parameters), n = {args.n} per split, 2 splits, c = 10, "
        f"{torch.get_num_threads()} thread(s), median of {args.repeat}"
    )
    columns = ["step", "seconds", "× TangentKernel alone", "ratio range", "forward calls", "peak MiB"]
    print(markdown_table(rows, columns))


if __name__ == "__main__":
    main()
