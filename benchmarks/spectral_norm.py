"""Benchmark of the SpectralNorm probe: warm-started power iteration vs an exact SVD per layer vs
torch's own spectral-norm parametrization (its power-iteration estimate), on an MLP and a CNN.

Run: python benchmarks/spectral_norm.py
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import issue_mlp, markdown_table, peak_memory_mib, time_call

from jacspec.probes import SpectralNorm
from jacspec.probes.spectral_norm import weight_matrices


def models():
    torch.manual_seed(0)
    mlp = issue_mlp()
    cnn = nn.Sequential(
        nn.Conv2d(3, 64, 3),
        nn.ReLU(),
        nn.Conv2d(64, 128, 3),
        nn.ReLU(),
        nn.Conv2d(128, 256, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(10),
    )
    cnn(torch.zeros(1, 3, 16, 16))
    return {"MLP 784-512x3-10": mlp, "CNN 3-64-128-256": cnn}


def exact(model):
    return [float(torch.linalg.matrix_norm(w, ord=2)) for w in weight_matrices(model).values()]


def torch_parametrization(model):
    """torch.nn.utils.parametrizations.spectral_norm on a copy: one power iteration per forward."""
    clone = copy.deepcopy(model)
    sigmas = []
    for module in clone.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            torch.nn.utils.parametrizations.spectral_norm(module, n_power_iterations=10)
            param = module.parametrizations.weight[0]
            with torch.no_grad():
                w = param._reshape_weight_to_matrix(module.parametrizations.weight.original)
                u, v = param._u, param._v
                sigmas.append(float(torch.vdot(u, torch.mv(w, v))))
    return sigmas


def main() -> None:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rows = []
    for label, model in models().items():
        reference = exact(model)
        probe = SpectralNorm(n_iterations=10)
        for method, fn in [
            ("exact SVD per layer (naive)", lambda m=model: exact(m)),
            ("torch spectral_norm parametrization (peer)", lambda m=model: torch_parametrization(m)),
            ("jacspec SpectralNorm, 10 warm-started iterations", lambda m=model, p=probe: p.measure(m)),
        ]:
            result, seconds = time_call(fn, repeat=5)
            _, memory = peak_memory_mib(fn)
            values = result["spectral_norm"].values if hasattr(result, "data_vars") else result
            error = max(abs(a - b) / b for a, b in zip(values, reference))
            rows.append(
                {
                    "model": label,
                    "method": method,
                    "time [ms]": 1000 * seconds,
                    "peak memory [MiB]": memory,
                    "max rel. error vs SVD": error,
                }
            )
        base = next(r for r in rows if r["model"] == label and "naive" in r["method"])["time [ms]"]
        for r in rows:
            if r["model"] == label:
                r["speed-up vs naive"] = base / r["time [ms]"]
    print(
        markdown_table(
            rows, ["model", "method", "time [ms]", "peak memory [MiB]", "speed-up vs naive", "max rel. error vs SVD"]
        )
    )


if __name__ == "__main__":
    main()
