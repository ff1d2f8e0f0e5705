"""Command line: ``jacspec demo`` (the main job), ``jacspec report RUN.nc``, ``jacspec probes``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main", "demo", "demo_probes", "train_digits_mlp"]


def demo_probes() -> list:
    """The probes ``jacspec demo`` attaches (each probe issue adds its own here)."""
    from jacspec.probes import (
        FourierSpectrum,
        MutualInformation,
        Performance,
        PointJacobian,
        SpectralNorm,
        TangentKernel,
        WeightInformation,
    )

    probes = [Performance(), SpectralNorm()]
    # singular values of d logits / d input at every example, with the bimodal split and lognormal fits
    probes.append(PointJacobian(fit_modes=True))
    # empirical tangent kernel on 100 examples per split: effective rank, trace ratios, CKA with labels
    probes.append(TangentKernel(max_examples=100, layer_statistics=False))
    # digits are 64-dimensional: the generalized spectrum on RBF-kernel eigenvectors of each split
    probes.append(FourierSpectrum(basis="kernel", max_samples=256))
    # information in the weights (Laplace, Gauss-Newton diagonal: exact for ReLU networks, fast)
    probes.append(WeightInformation(beta=1e-3, hessian="ggn"))
    # information plane of the second hidden layer ("4" is its ReLU): I(X;T) and I(T;Y), KSG estimator
    probes.append(MutualInformation(between=[("input", "4"), ("4", "label")], method="ksg"))
    return probes


# the demo figure's panels per probe (probes not listed, e.g. a user's, get plot_run's default)
DEMO_PANELS = {
    "performance": ["loss", "accuracy"],
    "spectral_norm": ["spectral_norm"],
    "point_jacobian": ["mean_log_singular_value", "mode_fraction"],
    "tangent_kernel": ["effective_rank", "cka_labels"],
    "fourier_spectrum": ["amplitude"],
    "weight_information": ["weight_information_per_sample", "layer_weight_information"],
    "mutual_information": ["mutual_information"],
}


def digits_mlp(width: int = 128, dropout: float = 0.1, seed: int = 0):
    """The demo's model: 64 → width → width → 10 ReLU MLP with dropout."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, width),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(width, 10),
    )


def train_digits_mlp(
    epochs: int = 20,
    monitor_factory=None,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 0.05,
    progress: bool = False,
):
    """Train :func:`digits_mlp` on the embedded digits with SGD (momentum 0.9).

    Parameters
    ----------
    epochs : int
        Passes over the training split.
    monitor_factory : callable, optional
        ``factory(model, data) -> Monitor``; the monitor is attached to the optimizer.
    seed : int
        Seed of the model, the data order and dropout.

    Returns
    -------
    model, optimizer, data, monitor (or None)
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset
    from tqdm.auto import tqdm

    from jacspec.datasets import digits

    data = digits(seed=seed)
    model = digits_mlp(seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    monitor = monitor_factory(model, data) if monitor_factory else None
    if monitor is not None:
        monitor.attach(optimizer, probe_initial=True)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(*data["train"]), batch_size=batch_size, shuffle=True, generator=generator)
    model.train()
    with tqdm(total=epochs * len(loader), desc="training", disable=None if progress else True, unit="step") as bar:
        for _ in range(epochs):
            for xb, yb in loader:
                optimizer.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                optimizer.step()
                bar.update()
    if monitor is not None:
        monitor.close()
    return model, optimizer, data, monitor


def demo(out: str | Path = "runs", epochs: int = 20, every: int = 20, progress: bool = True) -> dict:
    """The main job: train a small MLP on digits with the built-in probes; write a run file and figure.

    Writes ``<out>/demo.nc`` (replacing an earlier demo run) and ``<out>/demo.png``.

    Returns
    -------
    dict
        ``{"run": path, "figure": path, "seconds": wall time, "test_accuracy": float}``
    """
    import jacspec
    from jacspec.plot import plot_run

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_path = out / "demo.nc"
    if run_path.exists():
        print(f"replacing the earlier demo run {run_path}")
    start = time.perf_counter()

    def factory(model, data):
        return jacspec.Monitor(
            model, demo_probes(), data=data, every=every, path=run_path, overwrite=True, progress=False
        )

    _, _, _, monitor = train_digits_mlp(epochs=epochs, monitor_factory=factory, progress=progress)
    seconds = time.perf_counter() - start
    tree = jacspec.open_run(run_path)
    figure = out / "demo.png"
    plot_run(tree, figure, variables=DEMO_PANELS)
    accuracy = float(tree["performance"].ds["accuracy"].sel(split="test").values[-1])
    return {"run": run_path, "figure": figure, "seconds": seconds, "test_accuracy": accuracy}


def report(path: str | Path, figure: str | Path | None = None) -> str:
    """A text summary of a run file (and optionally its figure)."""
    import jacspec
    from jacspec.store import run_attrs

    tree = jacspec.open_run(path)
    attrs = run_attrs(path)
    lines = [f"run {path}", f"  created {attrs.get('created')} with jacspec {attrs.get('jacspec_version')}"]
    for name, node in tree.children.items():
        ds = node.to_dataset(inherit=False)
        steps = ds["step"].values
        lines.append(
            f"  {name}: {len(steps)} steps ({steps.min() if len(steps) else '-'}..{steps.max() if len(steps) else '-'})"
        )
        for var in ds.data_vars:
            if var in ("wall_time", "probe_seconds"):
                continue
            da = ds[var]
            last = da.isel(step=-1)
            if last.ndim == 0:
                value = f"{float(last):.6g}"
            elif "split" in last.dims and last.ndim == 1:
                value = ", ".join(f"{s}={float(v):.6g}" for s, v in zip(last["split"].values, last.values))
            else:
                value = f"dims {dict(last.sizes)}"
            lines.append(f"    {var:<34} last: {value}")
    if figure is not None:
        from jacspec.plot import plot_run

        plot_run(tree, figure)
        lines.append(f"figure written to {figure}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the ``jacspec`` command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Examples
    --------
    >>> from jacspec.cli import main
    >>> main(["probes"])  # doctest: +SKIP
    0
    """
    parser = argparse.ArgumentParser(prog="jacspec", description="Probes that watch how a network learns.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="train a small MLP on digits with probes; write runs/demo.nc and a PNG")
    p_demo.add_argument("--out", default="runs", help="output directory (default: runs)")
    p_demo.add_argument("--epochs", type=int, default=20, help="training epochs (default: 20)")
    p_demo.add_argument("--every", type=int, default=20, help="probe every N optimizer steps (default: 20)")
    p_demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p_report = sub.add_parser("report", help="summarise a run file, optionally with a figure")
    p_report.add_argument("run", help="run file (.nc)")
    p_report.add_argument("--figure", help="write a PNG of every probe variable against the step")
    sub.add_parser("probes", help="list the available probes (built-in and registered)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        result = demo(args.out, epochs=args.epochs, every=args.every, progress=not args.no_progress)
        print(
            f"demo finished in {result['seconds']:.1f} s: test accuracy {result['test_accuracy']:.3f}\n"
            f"run file: {result['run']}\nfigure:   {result['figure']}"
        )
    elif args.command == "report":
        print(report(args.run, args.figure))
    elif args.command == "probes":
        from jacspec.probes import available_probes

        for name, cls in sorted(available_probes().items()):
            doc = (cls.__doc__ or "").strip().splitlines()
            print(f"{name:<22} {cls.__module__}.{cls.__qualname__}: {doc[0] if doc else ''}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
