"""Largest singular value of every weight matrix, by warm-started power iteration.

Baratin 2021 (Baratin), appendix A.1.1: the spectral norm of each layer's weight matrix is tracked over
training with 10 power iterations. A convolution kernel of shape ``(out, in, *k)`` is reshaped to the
``out × (in·∏k)`` matrix (a transposed convolution, ``(in, out, *k)``, to ``out × (in·∏k)`` as well).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import xarray as xr
from torch import nn

from jacspec.probes.base import Probe, probe_generator

__all__ = ["SpectralNorm", "power_iteration", "weight_matrices"]


def weight_matrices(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weight matrix of every module that owns a ``weight`` parameter with two or more dims.

    Returns
    -------
    dict
        ``{module name: 2-D view of the weight}``, in ``named_modules()`` order.
    """
    matrices: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        weight = module._parameters.get("weight") if hasattr(module, "_parameters") else None
        if weight is None or weight.dim() < 2:
            continue
        w = weight.detach()
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            w = w.transpose(0, 1)
        matrices[name or type(module).__name__] = w.reshape(w.shape[0], -1)
    return matrices


def power_iteration(
    matrix: torch.Tensor,
    n_iterations: int = 10,
    v: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[float, torch.Tensor]:
    """Largest singular value of ``matrix`` by power iteration on ``WᵀW``.

    Parameters
    ----------
    matrix : torch.Tensor
        A 2-D tensor ``W`` of shape ``(m, n)``.
    n_iterations : int
        Number of iterations ``v ← WᵀW v / ‖WᵀW v‖``.
    v : torch.Tensor, optional
        Starting right singular vector (a warm start), shape ``(n,)``; random when None.
    generator : torch.Generator, optional
        Source of the random start.

    Returns
    -------
    sigma : float
        ``‖W v‖`` after the last iteration, a lower bound of σ_max that converges to it.
    v : torch.Tensor
        The last right singular vector estimate (to warm-start the next call).
    """
    if matrix.dim() != 2:
        raise ValueError(f"`matrix` must be 2-D, but got shape {tuple(matrix.shape)}.")
    if n_iterations < 1:
        raise ValueError(f"`n_iterations` must be a positive integer, but got {n_iterations!r}.")
    w = matrix.detach()
    if v is None or v.shape != (w.shape[1],) or not torch.isfinite(v).all() or float(v.norm()) == 0:
        v = torch.randn(w.shape[1], generator=generator, dtype=w.dtype, device="cpu").to(w.device)
    v = v.to(dtype=w.dtype, device=w.device)
    v = v / v.norm().clamp_min(torch.finfo(w.dtype).tiny)
    for _ in range(n_iterations):
        u = w @ v
        v = w.T @ u
        norm = v.norm()
        if float(norm) == 0.0:  # W v = 0: the zero matrix, or v in the null space
            break
        v = v / norm
    sigma = float((w @ v).norm())
    return sigma, v


class SpectralNorm(Probe):
    """Spectral norm (largest singular value) of every weight matrix.

    Parameters
    ----------
    n_iterations : int
        Power iterations per call (Baratin 2021, A.1.1, uses 10). Iterations are warm-started from the
        previous call's singular vector, so a probe called every few steps converges quickly.
    method : {"power", "exact"}
        ``"power"``: power iteration; ``"exact"``: ``torch.linalg.matrix_norm(W, ord=2)`` (an SVD).
    seed : int
        Seed of the probe's own generator for the random starting vectors.

    Emits
    -----
    spectral_norm : (layer,)
        σ_max(W) of each module that owns a weight with two or more dimensions; ``layer`` holds module
        names from ``named_modules()``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes import SpectralNorm
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> SpectralNorm(n_iterations=50).measure(model)["spectral_norm"].dims
    ('layer',)
    """

    name = "spectral_norm"
    needs_input = False

    def __init__(self, n_iterations: int = 10, method: Literal["power", "exact"] = "power", seed: int = 0):
        if not isinstance(n_iterations, int) or isinstance(n_iterations, bool) or n_iterations < 1:
            raise ValueError(f"`n_iterations` must be a positive integer, but got {n_iterations!r}.")
        if method not in ("power", "exact"):
            raise ValueError(f"`method` must be 'power' or 'exact', but got {method!r}.")
        self.n_iterations = n_iterations
        self.method = method
        self.seed = seed
        self._generator = probe_generator(seed)
        self._vectors: dict[tuple[int, str], torch.Tensor] = {}

    def reset(self) -> None:
        """Forget the warm-start vectors and reseed the generator."""
        self._vectors.clear()
        self._generator = probe_generator(self.seed)

    def measure(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> xr.Dataset:
        matrices = weight_matrices(model)
        if not matrices:
            raise ValueError(
                "`model` has no weight matrix (no module owns a `weight` parameter with two or more "
                "dimensions), so SpectralNorm has nothing to measure."
            )
        names, values, shapes = [], [], []
        with torch.no_grad():
            for layer, w in matrices.items():
                if self.method == "exact":
                    sigma = float(torch.linalg.matrix_norm(w, ord=2))
                else:
                    key = (id(model), layer)
                    sigma, v = power_iteration(w, self.n_iterations, self._vectors.get(key), self._generator)
                    self._vectors[key] = v
                names.append(layer)
                values.append(sigma)
                shapes.append(f"{w.shape[0]}x{w.shape[1]}")
        return xr.Dataset(
            {
                "spectral_norm": (
                    "layer",
                    np.asarray(values, dtype=np.float64),
                    {"long_name": "largest singular value of the weight matrix", "units": "1"},
                )
            },
            coords={
                "layer": ("layer", np.asarray(names, dtype=object), {"long_name": "module name"}),
                "matrix_shape": ("layer", np.asarray(shapes, dtype=object), {"long_name": "rows x columns"}),
            },
            attrs={"method": self.method, "n_iterations": self.n_iterations},
        )
