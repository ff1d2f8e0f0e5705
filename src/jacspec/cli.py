"""Command line: ``jacspec demo`` (the main job), ``report``, ``info``, ``compare``, ``probes`` and ``compact``.

Every command that reads a run file opens it with :func:`jacspec.open_run` and closes it when done. A
missing or foreign file (not written by a jacspec Monitor) is reported in one line on stderr with exit
code 2, as is any other usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["main", "demo", "demo_probes", "train_digits_mlp", "report", "info", "compare", "compact", "CommandError"]


def demo_probes() -> list:
    """The probes ``jacspec demo`` attaches (each probe issue adds its own here).

    Examples
    --------
    >>> from jacspec.cli import demo_probes
    >>> [type(probe).__name__ for probe in demo_probes()][:2]  # doctest: +ELLIPSIS
    [...]
    """
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
    "tangent_kernel": ["effective_rank", "trace_ratio", "cka_labels"],
    "fourier_spectrum": ["amplitude"],
    "weight_information": ["weight_information_per_sample", "layer_weight_information"],
    "mutual_information": ["mutual_information"],
}


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


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

    batch_size : int
        Minibatch size.
    lr : float
        SGD learning rate.
    progress : bool
        Show progress: a tqdm bar on a terminal, and a plain line per epoch on stdout when stdout is not
        a terminal (a log file, a pipe, CI).

    Returns
    -------
    model, optimizer, data, monitor (or None)

    Examples
    --------
    >>> model, optimizer, data, _ = train_digits_mlp(epochs=1)  # doctest: +SKIP
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
    # tqdm draws on a terminal only; without one (a log file, CI, a pipe) print a plain line per epoch
    plain = progress and not _isatty(sys.stdout)
    start = time.perf_counter()
    step = 0
    with tqdm(total=epochs * len(loader), desc="training", disable=None if progress else True, unit="step") as bar:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for xb, yb in loader:
                optimizer.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(xb)
                count += len(xb)
                step += 1
                bar.update()
            if plain:
                print(
                    f"epoch {epoch + 1}/{epochs}: step {step}, mean training loss {total / max(count, 1):.4f}, "
                    f"{time.perf_counter() - start:.1f} s",
                    flush=True,
                )
    if monitor is not None:
        monitor.close()
    return model, optimizer, data, monitor


def demo(out: str | Path = "runs", epochs: int = 20, every: int = 20, progress: bool = True) -> dict:
    """The main job: train a small MLP on digits with the built-in probes; write a run file and figure.

    Writes ``<out>/demo.nc`` (replacing an earlier demo run) and ``<out>/demo.png``.

    Parameters
    ----------
    out : str or Path
        Output directory (created if needed).
    epochs : int
        Training epochs (about 22 optimizer steps each).
    every : int
        Probe every ``every`` optimizer steps (and at step 0).
    progress : bool
        Show progress (a bar on a terminal; plain lines per epoch and probed step otherwise).

    Returns
    -------
    dict
        ``{"run": path, "figure": path, "seconds": wall time, "test_accuracy": float}``

    Examples
    --------
    >>> result = demo("runs", epochs=2)  # doctest: +SKIP
    >>> result["run"]  # doctest: +SKIP
    PosixPath('runs/demo.nc')
    """
    import jacspec
    from jacspec.plot import plot_run

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_path = out / "demo.nc"
    if run_path.exists():
        print(f"replacing the earlier demo run {run_path}")
    start = time.perf_counter()
    plain = progress and not _isatty(sys.stdout)
    printed: list[int] = []

    def announce(step, split, probe_name, dataset):
        # one plain line per probed step (the callback runs once per probe and split)
        if not printed or printed[-1] != step:
            printed.append(step)
            print(f"probed step {step} ({time.perf_counter() - start:.1f} s)", flush=True)

    def factory(model, data):
        return jacspec.Monitor(
            model,
            demo_probes(),
            data=data,
            every=every,
            path=run_path,
            overwrite=True,
            progress=False,
            callbacks=[announce] if plain else (),
        )

    train_digits_mlp(epochs=epochs, monitor_factory=factory, progress=progress)
    seconds = time.perf_counter() - start
    figure = out / "demo.png"
    with _opened(run_path) as tree:
        plot_run(tree, figure, variables=DEMO_PANELS)
        accuracy = float(tree["performance"].ds["accuracy"].sel(split="test").values[-1])
    return {"run": run_path, "figure": figure, "seconds": seconds, "test_accuracy": accuracy}


class CommandError(Exception):
    """A user error of the command line: printed as one line on stderr, exit code 2.

    Examples
    --------
    >>> from jacspec.cli import main
    >>> main(["info", "no-such-run.nc"])  # prints "jacspec: 'no-such-run.nc': no such file" on stderr
    2
    """


@contextlib.contextmanager
def _opened(path: str | Path) -> Iterator[Any]:
    """``jacspec.open_run(path)``, closed on exit; a missing or foreign file is a :class:`CommandError`."""
    import jacspec
    from jacspec.store import live_folder

    path = Path(path)
    if not path.exists() and not live_folder(path).is_dir():  # a live or killed run is a folder run.nc.live
        raise CommandError(f"{str(path)!r}: no such file")
    if path.is_dir():
        raise CommandError(f"{str(path)!r} is a directory, not a run file")
    try:
        tree = jacspec.open_run(path)
    except Exception as err:  # noqa: BLE001 - any failure to read is reported in one line
        reason = " ".join(str(err).split()) or type(err).__name__
        raise CommandError(f"{str(path)!r} is not a readable jacspec run file: {reason}") from err
    try:
        yield tree
    finally:
        close = getattr(tree, "close", None)
        if callable(close):
            close()


def _root_attrs(tree: Any) -> dict[str, Any]:
    """The run's root attributes (provenance), JSON strings decoded."""
    import json

    attrs = {}
    for key, value in dict(tree.attrs).items():
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        attrs[key] = value
    return attrs


def info(path: str | Path) -> str:
    """What a run file holds: its groups, each variable with dims and shape, the steps, the provenance.

    Parameters
    ----------
    path : str or Path
        A run file written by :class:`jacspec.Monitor`.

    Returns
    -------
    str
        The text ``jacspec info`` prints.

    Examples
    --------
    >>> print(info("runs/demo.nc"))  # doctest: +SKIP
    run runs/demo.nc
    ...
    """
    with _opened(path) as tree:
        lines = [f"run {path}"]
        attrs = _root_attrs(tree)
        if attrs:
            lines.append("provenance:")
            for key, value in attrs.items():
                lines.append(f"  {key}: {_short(value)}")
        for name, node in tree.children.items():
            ds = node.to_dataset(inherit=False)
            steps = ds["step"].values if "step" in ds.coords else []
            span = f"{len(steps)} steps" + (f" ({_steps_text(steps)})" if len(steps) else "")
            splits = f", splits {', '.join(map(str, ds['split'].values))}" if "split" in ds.coords else ""
            lines.append(f"group {name}: {span}{splits}")
            for var in ds.data_vars:
                da = ds[var]
                dims = ", ".join(f"{d}={n}" for d, n in da.sizes.items())
                described = da.attrs.get("long_name", "")
                units = da.attrs.get("units")
                if units and units != "1":
                    described += f" [{units}]"
                lines.append(f"  {var:<34} ({dims}) {da.dtype}  {described}".rstrip())
    return "\n".join(lines)


def _short(value: Any, width: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _steps_text(steps: Any) -> str:
    steps = [int(s) for s in steps]
    if len(steps) <= 8:
        return ", ".join(map(str, steps))
    return f"{', '.join(map(str, steps[:4]))}, …, {', '.join(map(str, steps[-2:]))}"


def report(path: str | Path, out: str | Path | None = None, figure: str | Path | None = None) -> str:
    """Summarise a run file; with ``out``, write one PNG per probe group and a self-contained report.html.

    Parameters
    ----------
    path : str or Path
        A run file written by :class:`jacspec.Monitor`.
    out : str or Path, optional
        Directory for ``<group>.png`` (one per probe group) and ``report.html`` (figures inlined as
        base64 PNG, the first and last probed value of every scalar variable per split, provenance).
    figure : str or Path, optional
        Also write one overview PNG of every group (:func:`jacspec.plot.plot_run`).

    Returns
    -------
    str
        The text summary ``jacspec report`` prints.

    Examples
    --------
    >>> print(report("runs/demo.nc", out="runs/demo_report"))  # doctest: +SKIP
    """
    from jacspec.plot.report import summary_rows, write_report

    with _opened(path) as tree:
        attrs = _root_attrs(tree)
        lines = [f"run {path}", f"  created {attrs.get('created')} with jacspec {attrs.get('jacspec_version')}"]
        for name, node in tree.children.items():
            ds = node.to_dataset(inherit=False)
            steps = ds["step"].values if "step" in ds.coords else []
            lines.append(f"  {name}: {len(steps)} steps" + (f" ({_steps_text(steps)})" if len(steps) else ""))
            for row in summary_rows(ds):
                where = f" ({row['split']})" if row["split"] else ""
                lines.append(
                    f"    {row['variable'] + where:<40} step {row['first_step']}: {row['first']:<12.6g} "
                    f"step {row['last_step']}: {row['last']:.6g}"
                )
        if out is not None:
            written = write_report(tree, out, source=str(path))
            lines.append(f"report written to {written['html']} ({len(written['figures'])} figures)")
        if figure is not None:
            from jacspec.plot import plot_run

            plot_run(tree, figure)
            lines.append(f"figure written to {figure}")
    return "\n".join(lines)


def compare(paths: list[str | Path], variable: str, out: str | Path = "compare.png", split: str | None = None) -> Path:
    """Overlay one scalar (per step) variable of several runs: one line per run and split; write a PNG.

    Parameters
    ----------
    paths : list of str or Path
        Run files.
    variable : str
        ``"probe/variable"``, e.g. ``"performance/accuracy"``; the variable must have no dims other than
        ``step`` and ``split``.
    out : str or Path
        The PNG to write.
    split : str, optional
        Draw only this split.

    Returns
    -------
    Path
        ``out``.

    Examples
    --------
    >>> compare(["runs/a.nc", "runs/b.nc"], "performance/accuracy", "accuracy.png")  # doctest: +SKIP
    """
    from jacspec.plot.report import compare_figure

    if variable.count("/") != 1 or not all(variable.split("/")):
        raise CommandError(f"--var must be 'probe/variable' (e.g. performance/accuracy), but got {variable!r}")
    group, name = variable.split("/")
    if not paths:
        raise CommandError("compare needs at least one run file")
    series = {}
    labels = _run_labels([Path(p) for p in paths])
    for path, label in zip(paths, labels):
        with _opened(path) as tree:
            if group not in tree.children:
                raise CommandError(f"{str(path)!r} has no group {group!r}; its groups: {', '.join(tree.children)}")
            ds = tree[group].to_dataset(inherit=False)
            if name not in ds.data_vars:
                raise CommandError(
                    f"group {group!r} of {str(path)!r} has no variable {name!r}; it has: {', '.join(ds.data_vars)}"
                )
            da = ds[name]
            extra = [d for d in da.dims if d not in ("step", "split")]
            if "step" not in da.dims or extra:
                scalars = [
                    str(v) for v in ds.data_vars if "step" in ds[v].dims and set(ds[v].dims) <= {"step", "split"}
                ]
                raise CommandError(
                    f"{variable} has dims {da.dims}: compare overlays variables with one value per step "
                    f"(and split); choose one of: {', '.join(scalars)}"
                )
            if split is not None:
                if "split" not in da.dims or split not in [str(s) for s in da["split"].values]:
                    raise CommandError(f"{variable} of {str(path)!r} has no split {split!r}")
                da = da.sel(split=split)
            series[label] = da.load().copy()
    out = Path(out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    fig = compare_figure(series, title=variable)
    fig.savefig(out, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def _run_labels(paths: list[Path]) -> list[str]:
    """Short distinct labels for run files: the stem, with parent folders added until they differ."""
    for depth in range(1, 6):
        labels = ["/".join(p.with_suffix("").parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def _probe_lines() -> list[str]:
    from jacspec.plot._common import cite
    from jacspec.probes import available_probes

    lines = []
    for name, cls in sorted(available_probes().items()):
        doc = (cls.__doc__ or "").strip().splitlines()
        lines.append(f"{name:<22} {cls.__module__}.{cls.__qualname__}: {cite(doc[0]) if doc else ''}")
    return lines


def compact(path: str | Path) -> str:
    """``jacspec compact RUN``: write the steps of a killed run (``RUN.live/``) into the single file RUN.

    Parameters
    ----------
    path : str or Path
        The run file; its live folder ``RUN.live`` holds the steps of a run that was not closed.

    Returns
    -------
    str
        One line: the file written, its steps and size.

    Examples
    --------
    >>> print(compact("runs/killed.nc"))  # doctest: +SKIP
    runs/killed.nc: 120 steps in one file (19.3 MB)
    """
    from jacspec import store

    path = Path(path)
    if not path.exists() and not store.live_folder(path).is_dir():
        raise CommandError(f"{str(path)!r}: no such file, and no live folder {str(store.live_folder(path))!r}")
    try:
        store.compact(path)
        with _opened(path) as tree:
            groups = [node.ds for node in tree.children.values() if "step" in node.ds.dims]
            steps = {int(s) for ds in groups for s in ds["step"].values}
    except (OSError, store.RunFileError, store.RunLockedError) as err:
        raise CommandError(" ".join(str(err).split())) from err
    return f"{path}: {len(steps)} steps in one file ({path.stat().st_size / 1e6:.1f} MB)"


def _parser() -> argparse.ArgumentParser:
    from jacspec import __version__

    parser = argparse.ArgumentParser(
        prog="jacspec",
        description="Probes that watch how a network learns. Run `jacspec demo`, then `jacspec report runs/demo.nc`.",
    )
    parser.add_argument("--version", action="version", version=f"jacspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_demo = sub.add_parser("demo", help="train a small MLP on digits with probes; write runs/demo.nc and a PNG")
    p_demo.add_argument("--out", default="runs", help="output directory (default: runs)")
    p_demo.add_argument("--epochs", type=int, default=None, help="training epochs (default: 20; 2 with --quick)")
    p_demo.add_argument(
        "--every", type=int, default=None, help="probe every N optimizer steps (default: 20; 10 with --quick)"
    )
    p_demo.add_argument("--quick", action="store_true", help="a short run (2 epochs) to check that everything works")
    p_demo.add_argument("--no-progress", action="store_true", help="hide the progress bar and progress lines")
    p_report = sub.add_parser(
        "report", help="summarise a run; with --out write one PNG per probe and a self-contained report.html"
    )
    p_report.add_argument("run", help="run file (.nc)")
    p_report.add_argument("--out", help="directory for <probe>.png and report.html")
    p_report.add_argument("--figure", help="also write one overview PNG of every probe")
    p_info = sub.add_parser("info", help="groups, variables (dims, shapes), steps and provenance of a run")
    p_info.add_argument("run", help="run file (.nc)")
    p_compare = sub.add_parser("compare", help="overlay one per-step variable of several runs in a PNG")
    p_compare.add_argument("runs", nargs="+", help="run files (.nc)")
    p_compare.add_argument("--var", required=True, help="probe/variable, e.g. performance/accuracy")
    p_compare.add_argument("--split", help="draw only this split (default: every split)")
    p_compare.add_argument("--out", default="compare.png", help="PNG to write (default: compare.png)")
    sub.add_parser("probes", help="list the available probes (built-in and registered)")
    p_compact = sub.add_parser(
        "compact", help="turn the leftovers of a run that was not closed (RUN.live/) into the single file RUN"
    )
    p_compact.add_argument("run", help="run file (.nc) whose RUN.live folder is left over")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``jacspec`` command; returns the exit status (0 success, 2 usage or input error).

    Examples
    --------
    >>> main(["info", "runs/demo.nc"])  # doctest: +SKIP
    0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "demo":
            epochs = args.epochs if args.epochs is not None else (2 if args.quick else 20)
            every = args.every if args.every is not None else (10 if args.quick else 20)
            result = demo(args.out, epochs=epochs, every=every, progress=not args.no_progress)
            print(
                f"demo finished in {result['seconds']:.1f} s: test accuracy {result['test_accuracy']:.3f}\n"
                f"run file: {result['run']}\nfigure:   {result['figure']}\n"
                f"next:     jacspec report {result['run']} --out {Path(args.out) / 'report'}"
            )
        elif args.command == "report":
            print(report(args.run, out=args.out, figure=args.figure))
        elif args.command == "info":
            print(info(args.run))
        elif args.command == "compare":
            print(f"figure written to {compare(args.runs, args.var, args.out, split=args.split)}")
        elif args.command == "probes":
            print("\n".join(_probe_lines()))
        elif args.command == "compact":
            print(compact(args.run))
    except CommandError as err:
        print(f"jacspec {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
