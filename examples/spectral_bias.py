"""Spectral bias: lower frequencies are learned first (Baratin 2021, Experiments 1 and 2, appendix A.1.1).

Aristide Baratin, "Some Phenomenological Investigations in Deep Learning", PhD thesis, Université de
Montréal, 2021, chapter 3 and appendix A.1.1.

A 6×256 ReLU MLP regresses λ(z) = Σ_i A_i sin(2π k_i z + φ_i), k = 5, 10, …, 50, on N = 200 equally
spaced points of [0, 1) with full-batch Adam. Every ``every`` steps the probe ``FourierSpectrum`` reads
``|f̃(k_i)| / A_i`` on the same grid and ``SpectralNorm`` the spectral norm of each layer (10 power
iterations). Results are averaged over several phase draws φ ~ U(0, 2π), for equal amplitudes
(A_i = 1) and increasing ones (A_i = 0.1, …, 1). Experiment 2: the trained equal-amplitude networks
are perturbed, θ = θ* + δ‖θ*‖θ̂, and ``|f̃_{Eθ}(k)| / |f̃_θ*(k)|`` is read per frequency.

The thesis trains for 80 000 steps; the default here (5 000 steps, 3 phase draws, 2 settings: 30 000
Adam steps in all) runs in about 4 minutes on one free CPU core (``--threads 1``, the default: small
matrices gain nothing from a second thread, and on a busy machine a second thread slows torch down)
and already shows the ordering.

Run::

    PYTHONPATH=src python examples/spectral_bias.py            # writes runs/spectral_bias.png
    PYTHONPATH=src python examples/spectral_bias.py --out docs/  # regenerates the documentation's figure
    PYTHONPATH=src python examples/spectral_bias.py --steps 1000 --phases 1 --out /tmp
    PYTHONPATH=src python examples/spectral_bias.py --quick    # a small network, 40 steps: seconds
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from jacspec.datasets import spectral_bias_data
from jacspec.probes import FourierSpectrum, SpectralNorm

FREQUENCIES = tuple(range(5, 55, 5))
SETTINGS = {"equal": [1.0] * 10, "increasing": [round(0.1 * i, 1) for i in range(1, 11)]}


def relu_mlp(depth: int = 6, width: int = 256, d_in: int = 1, d_out: int = 1) -> nn.Sequential:
    """``depth`` hidden ReLU layers of ``width`` units, then a linear read-out."""
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def train(
    frequencies: Sequence[int] = FREQUENCIES,
    amplitudes: Sequence[float] = SETTINGS["equal"],
    n_points: int = 200,
    depth: int = 6,
    width: int = 256,
    steps: int = 5000,
    lr: float = 1e-3,
    every: int = 100,
    n_phases: int = 3,
    seed: int = 0,
    progress: bool = True,
) -> tuple[xr.Dataset, list[nn.Module]]:
    """Train one network per phase draw and probe it every ``every`` steps.

    Returns
    -------
    results : xarray.Dataset
        ``normalized_amplitude`` (phase, step, target_frequency), ``spectral_norm`` (phase, step, layer)
        and ``loss`` (phase, step) (the mean squared error before the step's update).
    models : list of nn.Module
        The trained networks, one per phase draw.
    """
    targets = dict(zip(frequencies, amplitudes))
    runs, models = [], []
    bar = tqdm(total=n_phases * steps, disable=not progress, desc=f"training (A={amplitudes[0]}..{amplitudes[-1]})")
    for phase in range(n_phases):
        x, y, _ = spectral_bias_data(n_points, frequencies, amplitudes, seed=seed + phase)
        torch.manual_seed(seed + phase)
        model = relu_mlp(depth, width)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        spectrum = FourierSpectrum(n_points=n_points, normalize_by=targets)
        norms = SpectralNorm(n_iterations=10, seed=seed)
        records = []
        for step in range(steps + 1):
            if step % every == 0 or step == steps:
                with torch.no_grad():
                    loss = float(((model(x) - y) ** 2).mean())
                ds = xr.Dataset(
                    {
                        "normalized_amplitude": spectrum.measure(model)["normalized_amplitude"],
                        "spectral_norm": norms.measure(model)["spectral_norm"].drop_vars(
                            "matrix_shape", errors="ignore"
                        ),
                        "loss": ((), loss, {"long_name": "mean squared error", "units": "1"}),
                    }
                )
                records.append(ds.expand_dims(step=[step]))
            if step == steps:
                break
            optimizer.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            optimizer.step()
            bar.update()
        runs.append(xr.concat(records, dim="step"))
        models.append(model)
    bar.close()
    results = xr.concat(runs, dim="phase").assign_coords(phase=np.arange(n_phases))
    results.attrs.update(steps=steps, lr=lr, depth=depth, width=width, n_points=n_points)
    return results, models


def learning_step(normalized_amplitude: xr.DataArray, threshold: float = 0.5) -> xr.DataArray:
    """First probed step at which each frequency's ``|f̃(k_i)|/A_i`` reaches ``threshold`` (inf if never).

    ``normalized_amplitude`` has dims ``(step, target_frequency)`` (average phase draws first).
    """
    reached = normalized_amplitude >= threshold
    steps = normalized_amplitude["step"].values.astype(np.float64)
    first = np.where(reached.any("step").values, steps[reached.argmax("step").values], np.inf)
    return xr.DataArray(
        first, coords={"target_frequency": normalized_amplitude["target_frequency"]}, dims="target_frequency"
    )


def robustness(
    models: Sequence[nn.Module],
    frequencies: Sequence[int] = FREQUENCIES,
    sizes: Sequence[float] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
    n_draws: int = 20,
    n_points: int = 200,
) -> xr.DataArray:
    """Experiment 2: ``|f̃_{Eθ}(k)| / |f̃_θ*(k)|`` at the target frequencies, averaged over the models (phases)."""
    probe = FourierSpectrum(n_points=n_points, perturbation=list(sizes), n_draws=n_draws)
    ratios = [probe.measure(model)["perturbed_amplitude_ratio"].sel(frequency=list(frequencies)) for model in models]
    return xr.concat(ratios, dim="phase").mean("phase")


def figure(results: dict[str, xr.Dataset], ratio: xr.DataArray, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jacspec.plot import plot_robustness, plot_spectral_bias, plot_spectral_norms

    fig, axes = plt.subplots(2, 3, figsize=(17, 8), constrained_layout=True)
    for row, (setting, ds) in enumerate(results.items()):
        plot_spectral_bias(ds["normalized_amplitude"].mean("phase"), ax=axes[row, 0], title=f"{setting} amplitudes")
        plot_spectral_norms(
            ds["spectral_norm"].mean("phase"), ax=axes[row, 1], title=f"{setting}: layer spectral norms"
        )
    plot_robustness(ratio, ax=axes[0, 2], title="robustness to parameter perturbation (equal)")
    for setting, ds in results.items():
        axes[1, 2].plot(ds["step"], ds["loss"].mean("phase"), label=setting)
    axes[1, 2].set_yscale("log")
    axes[1, 2].set_xlabel("training step")
    axes[1, 2].set_ylabel("MSE")
    axes[1, 2].legend()
    axes[1, 2].set_title("training loss")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--phases", type=int, default=3, help="phase draws per setting")
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--save-run", default=None, help="also write the results to this netCDF file")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="a 2×32 network, 40 steps, 1 phase: a check that it runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.phases, args.every = 40, 1, 20
        size: dict = {"depth": 2, "width": 32}
        robust: dict = {"sizes": (0.01, 0.1), "n_draws": 2}
    else:
        size, robust = {}, {}

    start, cpu_start = time.perf_counter(), time.process_time()
    results = {}
    models = {}
    for setting, amplitudes in SETTINGS.items():
        results[setting], models[setting] = train(
            FREQUENCIES, amplitudes, steps=args.steps, every=args.every, lr=args.lr, n_phases=args.phases, **size
        )
    ratio = robustness(models["equal"], **robust)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    print(
        f"\n## Spectral bias, {args.steps} steps x {args.phases} phase draws x 2 settings: {elapsed:.0f} s wall, "
        f"{cpu:.0f} s CPU ({args.threads} thread(s))\n"
    )
    print("| k | step reaching 1/2 (equal) | (increasing) | final |f(k)|/A (equal) | (increasing) |")
    print("| --- | --- | --- | --- | --- |")
    reach = {s: learning_step(ds["normalized_amplitude"].mean("phase")) for s, ds in results.items()}
    final = {s: ds["normalized_amplitude"].mean("phase").isel(step=-1) for s, ds in results.items()}
    for k in FREQUENCIES:
        row = [f"{reach[s].sel(target_frequency=k).item():g}" for s in SETTINGS]
        row += [f"{final[s].sel(target_frequency=k).item():.2f}" for s in SETTINGS]
        print(f"| {k} | " + " | ".join(row) + " |")
    print("\n## Robustness (equal amplitudes): |f_E[theta](k)| / |f_theta*(k)|\n")
    sizes = ratio["perturbation"].values
    print("| k | " + " | ".join(f"δ={s:g}" for s in sizes) + " |")
    print("| --- |" + " --- |" * len(sizes))
    for k in FREQUENCIES:
        print(f"| {k} | " + " | ".join(f"{v:.2f}" for v in ratio.sel(frequency=k).values) + " |")
    for setting, ds in results.items():
        norms = ds["spectral_norm"].mean("phase")
        product_start = float(norms.isel(step=0).prod())
        product_end = float(norms.isel(step=-1).prod())
        print(f"\n{setting}: product of layer spectral norms {product_start:.3g} -> {product_end:.3g}")
    args.out.mkdir(parents=True, exist_ok=True)
    figure(results, ratio, args.out / "spectral_bias.png")
    print(f"\nfigure written to {args.out / 'spectral_bias.png'}")
    if args.save_run:
        combined = xr.concat(list(results.values()), dim="setting").assign_coords(setting=list(results))
        combined.to_netcdf(args.save_run)
        print(f"results written to {args.save_run}")


if __name__ == "__main__":
    main()
