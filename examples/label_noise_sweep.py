"""A sweep summarised from its run files: mean log σ per label-noise level p over training, read lazily.

The label-noise experiment of Brandão et al., "Is My Neural Net Driven by the MDL Principle?", ECML PKDD 2023
(LNCS 14170), section 5.1: one MLP per noise level p on the embedded digits, each watched by a
:class:`jacspec.Monitor` with :class:`~jacspec.probes.PointJacobian` and written to its own run file
(``examples/mdl_label_noise.py`` trains them). This script then opens every run at once with
:func:`jacspec.open_runs`, which stacks them along a new ``p`` dimension lazily (dask): the summary reads
only the ``mean_log_singular_value`` variable, never the per-example singular values, so a sweep of
hundreds of runs is summarised without loading it. With ``dask.distributed`` the same code runs on a cluster.

Expected (the paper's 5.1–5.2): E[log σ] on the training set rises with p once the noisy labels are fitted.

Run::

    PYTHONPATH=src python examples/label_noise_sweep.py            # 6 noise levels, 100 epochs (about 2 minutes)
    PYTHONPATH=src python examples/label_noise_sweep.py --quick    # 2 levels, 4 epochs (seconds)
    PYTHONPATH=src python examples/label_noise_sweep.py --summarise-only   # only read existing run files

Run files go to ``runs/label_noise_sweep/`` (``--runs DIR``), the figure to ``runs/label_noise_sweep.png``
(``--out DIR``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import jacspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mdl_label_noise  # noqa: E402  (the training loop of the full reproduction)

NOISE_LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def train(runs: Path, noise_levels: Sequence[float], quick: bool) -> None:
    """One run file per noise level, ``runs/mlp1_p{p}.nc`` (an MLP with one hidden layer)."""
    if quick:
        options = dict(epochs=4, every_epochs=2, width=64, n_train=200)
    else:
        options = dict(epochs=100, every_epochs=5, width=512)  # noisy labels are fitted by epoch 100
    mdl_label_noise.run(noise_levels=noise_levels, depths=(1,), out=runs, figure=False, **options)


def summarise(runs: Path) -> tuple[np.ndarray, object]:
    """Open the sweep lazily and return the noise levels and E[log σ] on the training split, dims (p, step)."""
    files = sorted(runs.glob("mlp1_p*.nc"), key=lambda f: float(re.search(r"_p([0-9.]+)\.nc$", f.name).group(1)))
    if not files:
        raise SystemExit(f"no run files mlp1_p*.nc in {runs}: run without --summarise-only first")
    levels = [float(re.search(r"_p([0-9.]+)\.nc$", f.name).group(1)) for f in files]
    sweep = jacspec.open_runs(files, dim="p", labels=levels)
    mean_log = sweep["point_jacobian"].ds["mean_log_singular_value"].sel(split="train")
    lazy = mean_log.chunks is not None
    print(f"{len(files)} runs stacked along p; E[log σ] dims {mean_log.dims}, dask-backed: {lazy}")
    return np.asarray(levels), mean_log.compute()


def figure(levels: np.ndarray, mean_log, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    cmap = plt.get_cmap("viridis")
    for i, p in enumerate(levels):
        series = mean_log.sel(p=p)
        ok = np.isfinite(series.values)
        ax.plot(
            series["step"].values[ok],
            series.values[ok],
            marker=".",
            color=cmap(i / max(1, len(levels) - 1)),
            label=f"p = {p:.1f}",
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("E[log σ] on the training split [nat]")
    ax.set_title("label-noise sweep, read lazily with jacspec.open_runs", fontsize=9)
    ax.legend(fontsize="small", framealpha=0.6, title="label noise")
    fig.text(0.01, 0.005, "after Brandão et al., ECML PKDD 2023, sec. 5.1", fontsize=7, color="0.4")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs") / "label_noise_sweep", help="run-file folder")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="figure folder (default: runs)")
    parser.add_argument("--quick", action="store_true", help="two noise levels, 4 epochs: a check that it runs")
    parser.add_argument("--summarise-only", action="store_true", help="only read the run files already there")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    if not args.summarise_only:
        train(args.runs, (0.0, 1.0) if args.quick else NOISE_LEVELS, args.quick)
    levels, mean_log = summarise(args.runs)
    path = args.out / "label_noise_sweep.png"
    figure(levels, mean_log, path)
    print("\n| p | E[log σ] train, first probed step | last probed step |")
    print("| --- | --- | --- |")
    for p in levels:
        values = mean_log.sel(p=p).values
        finite = values[np.isfinite(values)]
        print(f"| {p:.1f} | {finite[0]:+.3f} | {finite[-1]:+.3f} |")
    print(f"\nfigure {path}; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
