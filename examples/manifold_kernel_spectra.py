"""Spectra along a manifold and in high dimension (Baratin 2021, chapter 3, Experiments 4–5, A.1.2–A.1.4).

Aristide Baratin, "Some Phenomenological Investigations in Deep Learning", PhD thesis, Université de
Montréal, 2021, chapter 3 (spectral bias) and appendix A.1.

(a) One network f: ℝ² → ℝ (a 6×256 ReLU MLP at initialisation) read along flower curves γ_L with
    L = 0, 4, 10, 16 petals on N = 1000 points: the same function of the input has more high-frequency
    content in the latent coordinate z when the curve has more petals (the thesis's eq. 15: the
    coordinate functions of γ_L have a frequency mode at L).
(b) The generalized spectrum (projection on the eigenvectors of a Gaussian RBF kernel matrix, median
    bandwidth) of the radial waves sin(k‖x‖) on 500 digit images (64-dim): a larger k moves the energy
    to higher eigen-indices, so the eigen-index acts as a frequency.

Runs in a few seconds. ``PYTHONPATH=src python examples/manifold_kernel_spectra.py`` writes
``runs/fourier_manifold_kernel.png`` (``--out docs/`` regenerates the documentation's figure;
``--quick``: fewer curves, points and samples).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn

from jacspec.datasets import digits, flower_curve, radial_wave
from jacspec.probes import FourierSpectrum


def relu_mlp(d_in: int = 2, depth: int = 6, width: int = 256, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, 1))
    return nn.Sequential(*layers).double()


def manifold_spectra(
    petals: Sequence[int] = (0, 4, 10, 16), n_points: int = 1000, width: int = 256, seed: int = 0
) -> dict[int, xr.DataArray]:
    """``{L: amplitude of f∘γ_L}`` for one randomly initialised network f."""
    model = relu_mlp(width=width, seed=seed)
    return {L: FourierSpectrum(curve=flower_curve(L), n_points=n_points).measure(model)["amplitude"] for L in petals}


class RadialWave(nn.Module):
    """x ↦ sin(k‖x‖) as a module (its one parameter is an amplitude of 1)."""

    def __init__(self, k: float):
        super().__init__()
        self.k = k
        self.amplitude = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * radial_wave(x, self.k)


def kernel_spectra(ks: Sequence[float] = (2, 4, 8, 32), n_samples: int = 500) -> dict[float, xr.DataArray]:
    """``{k: generalized spectrum |f · v_n| of sin(k‖x‖)}`` on digit images (one cached eigenbasis)."""
    x = digits(dtype=torch.float64)["train"][0][:n_samples]
    probe = FourierSpectrum(basis="kernel")
    return {k: probe.measure(RadialWave(k), x)["amplitude"] for k in ks}


def cumulative_energy(amplitude: xr.DataArray) -> xr.DataArray:
    """Fraction of Σ|f̃|² held by the first bins (a monotone curve, readable where |f̃| is noisy)."""
    energy = amplitude**2
    return energy.cumsum(amplitude.dims[0]) / float(energy.sum())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--quick", action="store_true", help="two curves, small sizes: a check that the script runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        manifold = manifold_spectra(petals=(0, 16), n_points=200, width=32)
        kernel = kernel_spectra(ks=(2, 32), n_samples=150)
    else:
        manifold = manifold_spectra()
        kernel = kernel_spectra()
    args.out.mkdir(parents=True, exist_ok=True)
    output = args.out / "fourier_manifold_kernel.png"

    print("\n| L | energy fraction at frequency ≥ 10 | ≥ 30 |")
    print("| --- | --- | --- |")
    for L, amplitude in manifold.items():
        energy = amplitude.values[1:] ** 2
        print(f"| {L} | {energy[9:].sum() / energy.sum():.4f} | {energy[29:].sum() / energy.sum():.5f} |")
    print("\n| k | eigen-index holding 50 % of the energy | 90 % |")
    print("| --- | --- | --- |")
    for k, amplitude in kernel.items():
        cumulative = cumulative_energy(amplitude).values
        print(f"| {k:g} | {np.searchsorted(cumulative, 0.5) + 1} | {np.searchsorted(cumulative, 0.9) + 1} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jacspec.plot import plot_manifold_spectra

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), constrained_layout=True)
    plot_manifold_spectra(
        {f"L = {L}": a for L, a in manifold.items()},
        ax=axes[0],
        max_frequency=60,
        title="one network f: R² → R along flower curves γ_L (N = 1000)",
    )
    axes[0].set_xlabel("frequency along the curve (cycles per unit z)")
    plot_manifold_spectra(
        {f"sin({k:g}‖x‖)": cumulative_energy(a) for k, a in kernel.items()},
        ax=axes[1],
        log=False,
        title="RBF-kernel spectrum of radial waves on 500 digits (d = 64)",
    )
    axes[1].set_xlabel("kernel eigen-index n (decreasing eigenvalue)")
    axes[1].set_ylabel("cumulative fraction of Σ|f·v_n|²")
    fig.savefig(output, dpi=110)
    plt.close(fig)
    print(f"\nfigure written to {output}")


if __name__ == "__main__":
    main()
