"""A user's own probe, about 20 lines, used exactly like a built-in one.

Run ``python examples/custom_probe.py`` (5 epochs, a few seconds): it writes ``runs/custom_probe.nc`` and
``runs/custom_probe.png`` (``--out DIR`` elsewhere; ``--quick`` trains one epoch).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import xarray as xr

import jacspec
from jacspec.datasets import digits
from jacspec.plot import plot_run
from jacspec.probes import Performance, Probe


class LogitMargin(Probe):
    """Mean margin between the true-class logit and the largest other logit."""

    name = "logit_margin"
    needs_labels = True

    def __init__(self, quantiles=(0.1, 0.5, 0.9)):
        self.quantiles = quantiles

    def measure(self, model, x=None, y=None):
        with torch.no_grad():
            logits = model(x)
        true = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.scatter(1, y[:, None], float("-inf")).max(dim=1).values
        margin = (true - other).double()
        return xr.Dataset(
            {
                "mean_margin": ((), float(margin.mean()), {"long_name": "mean logit margin", "units": "1"}),
                "margin_quantile": (
                    "quantile",
                    torch.quantile(margin, torch.tensor(self.quantiles).double()).numpy(),
                    {"long_name": "logit margin quantiles", "units": "1"},
                ),
            },
            coords={"quantile": list(self.quantiles)},
        )


def main(out: str | Path = "runs", epochs: int = 5) -> Path:
    """Train a digits MLP for ``epochs`` epochs with the probe; returns the run file's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    data = digits()
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = out / "custom_probe.nc"
    monitor = jacspec.Monitor(model, [LogitMargin(), Performance()], data=data, every=10, path=path, overwrite=True)
    monitor.add_callback(lambda step, split, name, ds: None)  # e.g. log to TensorBoard here
    monitor.attach(optimizer, probe_initial=True)
    x, y = data["train"]
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    monitor.close()
    plot_run(path, out / "custom_probe.png")
    return path


def cli(argv: Sequence[str] | None = None) -> None:
    """The command line: ``python examples/custom_probe.py [--out DIR] [--epochs N] [--quick]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one epoch: a check that the script runs")
    args = parser.parse_args(argv)
    run = main(args.out, epochs=1 if args.quick else args.epochs)
    print(jacspec.open_run(run)["logit_margin"])
    print(f"figure written to {args.out / 'custom_probe.png'}")


if __name__ == "__main__":
    cli()
