"""Tangent-kernel spectrum and label alignment over training, with and without random labels.

A small-scale version of Figs. 4.2-4.3 of Aristide Baratin, "Some Phenomenological Investigations in Deep
Learning", PhD thesis, Université de Montréal, 2021 (there: VGG19 on CIFAR10; Fig. B.5: MLP on MNIST):
an MLP is trained on scikit-learn's 8×8 digits by SGD (momentum 0.9, batch 100), once with clean
labels and once with 50 % of the training labels replaced by random ones. A :class:`jacspec.Monitor`
runs :class:`jacspec.probes.TangentKernel` at log-spaced steps on 100 training and 100 test examples
(kernels 1000 × 1000, centered features as in the thesis) and writes a run file per setting.

Run ``PYTHONPATH=src python examples/ntk_alignment_digits.py``: prints a table of effective rank and
CKA at a few steps and writes ``runs/tangent_kernel_digits.png`` and ``runs/tangent_kernel_digits_layers.png``
(``--out docs/`` regenerates the documentation's figures; ``--quick``: a tiny network for 30 steps).
:func:`run` with small arguments is the reduced version run by the tests.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

import jacspec
from jacspec.datasets import digits
from jacspec.probes import TangentKernel
from jacspec.schedules import LogSpaced


def make_mlp(depth: int = 4, width: int = 128, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    d = 64
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, 10))
    return nn.Sequential(*layers)


def run(
    random_fraction: float = 0.0,
    steps: int = 3000,
    n_probe: int = 100,
    width: int = 128,
    depth: int = 4,
    lr: float = 0.02,
    batch_size: int = 100,
    per_decade: int = 8,
    path: str | Path | None = None,
    seed: int = 0,
):
    """Train one MLP on digits (``random_fraction`` of the training labels randomised) under a Monitor.

    Returns
    -------
    xarray.Dataset
        The ``tangent_kernel`` results with dims ``(step, split, ...)`` plus ``accuracy``
        ``(step, split)`` (on the full splits; train accuracy against the possibly noisy labels).
    """
    data = digits(seed=seed)
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    generator = torch.Generator().manual_seed(seed + 1)
    y_noisy = y_train.clone()
    flip = torch.rand(len(y_train), generator=generator) < random_fraction
    y_noisy[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=generator)
    model = make_mlp(depth, width, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    probe_data = {"train": (x_train[:n_probe], y_noisy[:n_probe]), "test": (x_test[:n_probe], y_test[:n_probe])}
    schedule = LogSpaced(per_decade)
    accuracy: dict[int, list[float]] = {}

    def record_accuracy(step: int) -> None:
        with torch.no_grad():
            model.eval()
            acc_train = float((model(x_train).argmax(1) == y_noisy).float().mean())
            acc_test = float((model(x_test).argmax(1) == y_test).float().mean())
            model.train()
        accuracy[step] = [acc_train, acc_test]

    with tempfile.TemporaryDirectory() as tmp:
        run_path = Path(path) if path is not None else Path(tmp) / "run.nc"
        probe = TangentKernel(center_features=True, layer_statistics=False)
        with jacspec.Monitor(
            model, [probe], data=probe_data, every=schedule, path=run_path, overwrite=True, progress=False
        ) as monitor:
            generator = torch.Generator().manual_seed(seed)
            step = 0
            monitor.step(0)
            record_accuracy(0)
            model.train()
            while step < steps:
                order = torch.randperm(len(x_train), generator=generator)
                for start in range(0, len(order) - batch_size + 1, batch_size):
                    index = order[start : start + batch_size]
                    optimizer.zero_grad()
                    nn.functional.cross_entropy(model(x_train[index]), y_noisy[index]).backward()
                    optimizer.step()
                    step += 1
                    if schedule(step):
                        monitor.step(step)
                        record_accuracy(step)
                    if step >= steps:
                        break
        ds = jacspec.open_run(run_path)["tangent_kernel"].to_dataset().load()
    probed = [int(s) for s in ds["step"].values]
    ds["accuracy"] = (("step", "split"), np.array([accuracy[s] for s in probed]), {"long_name": "accuracy"})
    return ds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--quick", action="store_true", help="a tiny network for 30 steps: a check that it runs")
    args = parser.parse_args(argv)
    options = dict(steps=30, n_probe=20, width=16, depth=2, per_decade=3) if args.quick else dict(steps=args.steps)
    results = {fraction: run(random_fraction=fraction, **options) for fraction in (0.0, 0.5)}
    print("| random labels | step | split | accuracy | effective rank | T_40 | CKA(K, YY^T) |")
    print("|---|---|---|---|---|---|---|")
    for fraction, ds in results.items():
        steps = ds["step"].values
        for step in [steps[0], steps[len(steps) // 3], steps[2 * len(steps) // 3], steps[-1]]:
            for split in ("train", "test"):
                row = ds.sel(step=step, split=split)
                print(
                    f"| {fraction:.0%} | {int(step)} | {split} | {float(row['accuracy']):.3f} | "
                    f"{float(row['effective_rank']):.1f} | {float(row['trace_ratio'].sel(k=40)):.3f} | "
                    f"{float(row['cka_labels']):.3f} |"
                )
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 4, figsize=(16, 3.3 * len(results)), squeeze=False)
    for row_axes, (fraction, ds) in zip(axes, results.items()):
        x = np.maximum(ds["step"].values, 1)
        for split, style in (("train", "-"), ("test", "--")):
            part = ds.sel(split=split)
            row_axes[0].plot(x, part["accuracy"], style, color="k", label=split)
            row_axes[1].plot(x, part["effective_rank"], style, color="C0", label=split)
            for j, k in enumerate((10, 40, 160)):
                row_axes[2].plot(x, part["trace_ratio"].sel(k=k), style, color=f"C{j}", label=f"T_{k} {split}")
            row_axes[3].plot(x, part["cka_labels"], style, color="C3", label=split)
        for ax, title in zip(row_axes, ("accuracy", "effective rank", "trace ratios", "CKA(K, YY^T)")):
            ax.set_xscale("log")
            ax.set_title(f"{title}, {fraction:.0%} random labels", fontsize=9)
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "tangent_kernel_digits.png", dpi=100)
    from jacspec.plot.tangent_kernel import plot_layer_alignment

    plot_layer_alignment(results[0.0]).savefig(args.out / "tangent_kernel_digits_layers.png", dpi=100)
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
