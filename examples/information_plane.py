"""Information plane of a small MLP trained on the embedded digits (Baratin 2021, chapter 5).

Aristide Baratin, "Some Phenomenological Investigations in Deep Learning", PhD thesis, Université de
Montréal, 2021, chapter 5 (mutual information neural estimation).

Every ``every`` SGD steps the ``MutualInformation`` probe estimates, with warm-started MINE, I(X; T) and
I(T; Y) for the two hidden layers T (tanh outputs) on 1000 training examples; the trajectory of each
layer is drawn with :func:`jacspec.plot.plot_information_plane` to ``runs/information_plane.png``
(``--out docs/`` regenerates the documentation's figure).

Caveat: T is a deterministic function of X, so I(X; T) of continuous variables is infinite in principle;
the estimate measures what a finite statistics network resolves from 1000 samples (as in the
information-bottleneck literature, which bins or adds noise). I(T; Y) is bounded by H(Y) ≈ log 10.

Run ``python examples/information_plane.py`` (about a minute on 2 busy cores; ``--quick``: a few steps
and a small critic, seconds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import xarray as xr
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from jacspec.datasets import digits
from jacspec.probes import MutualInformation


def run(steps: int = 600, every: int = 60, n_probe: int = 1000, mine_options: dict | None = None, seed: int = 0):
    """Train the MLP and return the probe's Datasets concatenated along ``step``."""
    generator = torch.Generator().manual_seed(seed)
    data = digits()
    x_train, y_train = data["train"]
    x_probe, y_probe = x_train[:n_probe], y_train[:n_probe]
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 10))
    with torch.no_grad():  # seeded initialisation from a private generator
        for p in model.parameters():
            p.uniform_(-1, 1, generator=generator).mul_(1 / p.shape[-1] ** 0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    options = {"iterations": 1000, "hidden": (64, 64), "batch_size": 256} | (mine_options or {})
    probe = MutualInformation(
        between=[("input", "1"), ("1", "label"), ("input", "3"), ("3", "label")],
        method="mine",
        options=options,
        warm_start=True,
        warm_start_iterations=max(1, options["iterations"] // 4),
        seed=seed,
    )
    results = []
    for step in range(steps + 1):
        if step % every == 0:
            results.append(probe.measure(model, x_probe, y_probe).expand_dims(step=[step]))
        if step == steps:
            break
        batch = torch.randint(len(x_train), (64,), generator=generator)
        loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return xr.concat(results, dim="step")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--quick", action="store_true", help="20 steps, a small critic: a check that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        ds = run(20, 10, n_probe=200, mine_options={"iterations": 40, "hidden": (16,)})
    else:
        ds = run(args.steps, args.every)
    args.out.mkdir(parents=True, exist_ok=True)
    output = args.out / "information_plane.png"
    table = ds["mutual_information"].to_pandas()
    print(table.round(3).to_string())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jacspec.plot import plot_information_plane

    ax = plot_information_plane(ds)
    ax.figure.tight_layout()
    ax.figure.savefig(output, dpi=120)
    plt.close(ax.figure)
    print(f"figure written to {output}")


if __name__ == "__main__":
    main()
