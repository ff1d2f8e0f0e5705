"""Overhead of a monitor on a realistic training loop, and on the demo.

Realistic case (the default): the pytorch/examples MNIST CNN (conv 32, conv 64, fc 128) on scikit-learn's
digits upscaled to 28 × 28, Adadelta (lr 1.0), batch 64, 3000 steps, probing PointJacobian + SpectralNorm +
Performance on 256 examples per split every 100 steps. Prints the training wall time with and without the
monitor, the overhead in per cent of training time, and the store's share (time in appends and in the
compaction at close).

Demo case (``--demo``): the demo's digits MLP alone, with light probes, and with all the demo's probes.

Run: python benchmarks/monitor_overhead.py [--steps 3000] [--demo]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch
import torch.nn.functional as F
from _common import markdown_table

import jacspec
from jacspec.cli import demo_probes, train_digits_mlp
from jacspec.probes import Performance, PointJacobian, SpectralNorm


class MnistCNN(torch.nn.Module):
    """The pytorch/examples MNIST network: conv 32, conv 64, max-pool, dropout, fc 128, fc 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 32, 3, 1)
        self.conv2 = torch.nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = torch.nn.Dropout(0.25)
        self.dropout2 = torch.nn.Dropout(0.5)
        self.fc1 = torch.nn.Linear(9216, 128)
        self.fc2 = torch.nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return self.fc2(x)


def digits_28() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits, 8 × 8 upscaled bilinearly to 28 × 28, normalised; a 1500 / 297 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target)
    return x[:1500], y[:1500], x[1500:], y[1500:]


def train_cnn(steps: int, monitor_factory=None, seed: int = 0) -> tuple[float, float, torch.nn.Module]:
    """Train the CNN for ``steps`` Adadelta steps; returns (training seconds, store seconds, model)."""
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = digits_28()
    model = MnistCNN()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    generator = torch.Generator().manual_seed(seed)
    monitor = None
    store_seconds = 0.0
    if monitor_factory is not None:
        data = {"train": (x_train[:256], y_train[:256]), "test": (x_test[:256], y_test[:256])}
        monitor = monitor_factory(model, data)
        append = monitor.store.append

        def timed_append(*args, **kwargs):
            nonlocal store_seconds
            t0 = time.perf_counter()
            try:
                return append(*args, **kwargs)
            finally:
                store_seconds += time.perf_counter() - t0

        monitor.store.append = timed_append
    start = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x_train), (64,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
        optimizer.step()
        if monitor is not None:
            monitor.step(step)
    if monitor is not None:
        t0 = time.perf_counter()
        monitor.close()
        store_seconds += time.perf_counter() - t0
    return time.perf_counter() - start, store_seconds, model


def realistic(steps: int, every: int) -> None:
    train_cnn(20)  # warm-up
    plain, _, plain_model = train_cnn(steps)
    with tempfile.TemporaryDirectory() as tmp:

        def factory(model, data):
            return jacspec.Monitor(
                model,
                [PointJacobian(), SpectralNorm(), Performance()],
                data=data,
                every=every,
                path=Path(tmp) / "cnn.nc",
                progress=False,
            )

        probed, store, probed_model = train_cnn(steps, factory)
        size = (Path(tmp) / "cnn.nc").stat().st_size
    pairs = zip(plain_model.state_dict().values(), probed_model.state_dict().values())
    identical = all(torch.equal(a, b) for a, b in pairs)
    rows = [
        {"run": f"training only ({steps} Adadelta steps, batch 64)", "seconds": plain, "overhead [%]": 0.0},
        {
            "run": f"training + monitor (PointJacobian, SpectralNorm, Performance; 256 ex./split; every {every})",
            "seconds": probed,
            "overhead [%]": 100 * (probed - plain) / plain,
        },
        {
            "run": "of which the store (appends + compaction at close)",
            "seconds": store,
            "overhead [%]": 100 * store / plain,
        },
    ]
    print(markdown_table(rows, ["run", "seconds", "overhead [%]"]))
    print(f"\nrun file: {size / 1e6:.2f} MB; final weights bit-identical to the run without the monitor: {identical}")


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


def demo(epochs: int = 20, every: int = 20) -> None:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="training steps of the realistic case")
    parser.add_argument("--every", type=int, default=100, help="probe every this many steps")
    parser.add_argument("--demo", action="store_true", help="run the demo case instead")
    args = parser.parse_args(argv)
    if args.demo:
        demo()
    else:
        realistic(args.steps, args.every)


if __name__ == "__main__":
    main()
