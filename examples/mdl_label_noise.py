"""Reproduce the label-noise experiment of "Is My Neural Net Driven by the MDL Principle?".

Brandão et al., "Is My Neural Net Driven by the MDL Principle?", ECML PKDD 2023 (LNCS 14170); section
numbers below refer to that paper.

MLPs with one and three hidden layers of 512 ReLU units (8.5) are trained on the embedded digits
(8×8, 1347 training images; the paper uses MNIST/CIFAR-10) with symmetric label noise
p ∈ {0, 0.2, 0.4, 0.6, 0.8, 1.0} on the training labels (5.1), by SGD with momentum 0.9, learning rate
0.01 and a decay of 0.95 per epoch, no regularisation (8.5). Inputs are whitened per image, as in the
paper's setup. A :class:`jacspec.Monitor` runs :class:`~jacspec.probes.PointJacobian` (with the
mode split and lognormal fits) on the (noisy) training split and the clean test split every few
epochs and writes one run file per setting.

Expected from the paper (4.4, 5.1, 5.2): the mean log singular value on the training set rises with
p; spectra are bimodal, with a lognormal fitted to each mode.

Run the full experiment (3–7 minutes on 2 busy cores)::

    PYTHONPATH=src python examples/mdl_label_noise.py

It writes the run files ``runs/mdl_label_noise/mlp{depth}_p{p}.nc`` (``--runs DIR`` elsewhere), the
figure ``runs/point_jacobian_label_noise.png`` (``--out docs/`` regenerates the documentation's figure)
and prints a table of the final mean log σ, accuracies and the lognormal fit of each mode. ``--quick``
trains two small settings for a few epochs (seconds). :func:`run` with small arguments is the reduced
version used by the tests.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import jacspec
from jacspec.datasets import digits, with_label_noise
from jacspec.probes import PointJacobian

NOISE_LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
DECAY_EVERY_STEPS = 390
"""Steps per learning-rate decay: one MNIST epoch (50 000 images) at batch size 128 of the paper's
setup [52]. Decaying once per digits epoch (42 steps) instead freezes training long before noisy labels
are fitted."""
DEPTHS = (1, 3)


def whiten(x: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation (TensorFlow's per_image_whitening, as in Brandão et al. 2023, 8.5)."""
    mean = x.mean(dim=1, keepdim=True)
    std = x.std(dim=1, unbiased=False, keepdim=True).clamp_min(1.0 / np.sqrt(x.shape[1]))
    return (x - mean) / std


def mlp(depth: int, width: int = 512, d_in: int = 64, n_classes: int = 10, seed: int = 0) -> nn.Module:
    """ReLU MLP with ``depth`` hidden layers of ``width`` units and a linear 10-unit output."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, n_classes))
    return nn.Sequential(*layers)


def train_one(
    depth: int,
    p: float,
    epochs: int,
    every_epochs: int,
    path: Path | None,
    width: int = 512,
    batch_size: int = 32,
    decay_every_steps: int | None = DECAY_EVERY_STEPS,
    n_train: int | None = None,
    seed: int = 0,
) -> dict:
    """Train one MLP on digits with label noise ``p``, probing every ``every_epochs`` epochs.

    The learning rate is ``0.01 · 0.95^(t / decay_every_steps)`` after ``t`` SGD steps (``None``: decay
    once per digits epoch). ``n_train`` keeps only the first ``n_train`` training examples.
    """
    clean = digits(seed=seed)
    data = {split: (whiten(x), y) for split, (x, y) in clean.items()}
    if n_train is not None:
        data["train"] = (data["train"][0][:n_train], data["train"][1][:n_train])
    data = with_label_noise(data, p, splits=("train",), n_classes=10, seed=seed + 1)
    model = mlp(depth, width=width, seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x_train, y_train = data["train"]
    steps_per_epoch = int(np.ceil(x_train.shape[0] / batch_size))
    decay_steps = steps_per_epoch if decay_every_steps is None else decay_every_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 0.95 ** (t / decay_steps))
    monitor = jacspec.Monitor(
        model,
        [PointJacobian(fit_modes=True)],
        data=data,
        every=every_epochs * steps_per_epoch,
        path=path,
        overwrite=True,
        progress=False,
    )
    monitor.attach(optimizer, probe_initial=True)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(x_train.shape[0], generator=generator)
        for start in range(0, x_train.shape[0], batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(x_train[index]), y_train[index]).backward()
            optimizer.step()
            scheduler.step()
    monitor.close()
    results = monitor.last_results["point_jacobian"]
    summary = {"depth": depth, "p": p, "path": path, "width": width}
    for split in ("train", "test"):
        ds = results[split]
        summary[f"{split}_mean_log_sigma"] = float(ds["mean_log_singular_value"])
        summary[f"{split}_accuracy"] = float(ds["correct"].mean())
    ds = results["train"]
    summary["n_modes"] = int(ds["n_modes"])
    summary["mode_mu"] = ds["mode_mu"].values.tolist()
    summary["mode_sigma"] = ds["mode_sigma"].values.tolist()
    summary["mode_r2"] = ds["mode_r2"].values.tolist()
    summary["mode_fraction"] = ds["mode_fraction"].values.tolist()
    summary["train_singular_values"] = ds["singular_values"].values
    return summary


def run(
    noise_levels=NOISE_LEVELS,
    depths=DEPTHS,
    epochs: int = 100,
    every_epochs: int = 10,
    out: str | Path | None = "runs/mdl_label_noise",
    width: int = 512,
    decay_every_steps: int | None = DECAY_EVERY_STEPS,
    n_train: int | None = None,
    seed: int = 0,
    figure: bool = True,
    verbose: bool = True,
    figure_path: str | Path | None = None,
) -> list[dict]:
    """Run the experiment for every depth and noise level; returns one summary dict per setting.

    With ``out=None`` nothing is written (the tests' reduced version). The figure goes to
    ``figure_path`` (default ``<out>/mdl_label_noise.png``).
    """
    out_dir = None if out is None else Path(out)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    summaries = []
    for depth in depths:
        for p in noise_levels:
            start = time.perf_counter()
            path = None if out_dir is None else out_dir / f"mlp{depth}_p{p:.1f}.nc"
            summary = train_one(
                depth,
                p,
                epochs,
                every_epochs,
                path,
                width=width,
                decay_every_steps=decay_every_steps,
                n_train=n_train,
                seed=seed,
            )
            summary["seconds"] = time.perf_counter() - start
            summaries.append(summary)
            if verbose:
                print(
                    f"MLP {depth}x{width}  p={p:.1f}  E[log σ] train {summary['train_mean_log_sigma']:+.3f} "
                    f"test {summary['test_mean_log_sigma']:+.3f}  acc train {summary['train_accuracy']:.3f} "
                    f"test {summary['test_accuracy']:.3f}  modes {summary['n_modes']}  ({summary['seconds']:.0f} s)",
                    flush=True,
                )
    if figure and out_dir is not None:
        figure_path = out_dir / "mdl_label_noise.png" if figure_path is None else Path(figure_path)
        figure_path.parent.mkdir(parents=True, exist_ok=True)
        make_figure(summaries, figure_path)
    return summaries


def make_figure(summaries: list[dict], path: Path) -> None:
    """Mean log σ against step per noise level (one panel per depth) and the final train spectra
    for p = 0 and p = 1 of the deepest model with their split, lognormal fits and probability plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jacspec.plot import mean_log_curves, probability_plots, spectrum_histogram

    depths = sorted({s["depth"] for s in summaries})
    fig = plt.figure(figsize=(14, 9))
    grid = fig.add_gridspec(3, 4)
    for i, depth in enumerate(depths[:2]):
        runs = {f"p = {s['p']:.1f}": s["path"] for s in summaries if s["depth"] == depth}
        ax = fig.add_subplot(grid[0, 2 * i : 2 * i + 2])
        width = next(s["width"] for s in summaries if s["depth"] == depth)
        title = f"MLP {depth}×{width}, digits: E[log σ] on the training set"
        mean_log_curves(runs, split="train", ax=ax, title=title)
    deepest = depths[-1]
    chosen = [s for s in summaries if s["depth"] == deepest]
    for row, s in zip((1, 2), (chosen[0], chosen[-1])):
        values = s["train_singular_values"]
        label = f"MLP {deepest}×{s['width']}, p = {s['p']:.1f}, train acc {s['train_accuracy']:.2f}"
        ax = fig.add_subplot(grid[row, :2])
        spectrum_histogram(values, ax=ax, label=label)
        probability_plots(values, axes=[fig.add_subplot(grid[row, 2]), fig.add_subplot(grid[row, 3])])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs"), help="figure folder (default: runs)")
    parser.add_argument("--runs", type=Path, default=None, help="run-file folder (default: runs/mdl_label_noise)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--every-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="two small settings, 4 epochs: a check that it runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # batches of 32 on 512-wide layers: more threads only add contention
    runs = args.runs if args.runs is not None else Path("runs") / "mdl_label_noise"
    figure_path = args.out / "point_jacobian_label_noise.png"
    start = time.perf_counter()
    if args.quick:
        options = dict(noise_levels=(0.0, 1.0), depths=(1,), epochs=4, every_epochs=2, width=64, n_train=200)
    else:
        options = dict(epochs=args.epochs, every_epochs=args.every_epochs)
    summaries = run(**options, out=runs, seed=args.seed, figure_path=figure_path)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; run files in {runs}; figure {figure_path}\n")
    print("| model | p | E[log σ] train | E[log σ] test | train acc | test acc | modes | mode μ | mode σ | mode R² |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in summaries:
        fmt = lambda v: ", ".join("–" if np.isnan(a) else f"{a:.2f}" for a in v)  # noqa: E731
        print(
            f"| MLP {s['depth']}×{s['width']} | {s['p']:.1f} | {s['train_mean_log_sigma']:.3f} "
            f"| {s['test_mean_log_sigma']:.3f} "
            f"| {s['train_accuracy']:.3f} | {s['test_accuracy']:.3f} | {s['n_modes']} | {fmt(s['mode_mu'])} "
            f"| {fmt(s['mode_sigma'])} | {fmt(s['mode_r2'])} |"
        )


if __name__ == "__main__":
    main()
