"""Largest singular value of every weight matrix, by warm-started power iteration.

Baratin 2021 (Baratin), appendix A.1.1: the spectral norm of each layer's weight matrix is tracked over
training with 10 power iterations. A convolution kernel of shape ``(out, in, *k)`` is reshaped to the
``out × (in·∏k)`` matrix (a transposed convolution, ``(in, out, *k)``, to ``out × (in·∏k)`` as well).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch
import xarray as xr
from torch import nn

from jacspec.engine.parameters import module_name, parameter_record
from jacspec.kernels import UnsupportedLayerError
from jacspec.memory import budget_argument, check_memory
from jacspec.probes.base import Probe, probe_generator

__all__ = ["SpectralNorm", "power_iteration", "weight_matrices", "weight_matrix_views"]


_GATES = {nn.LSTM: "ifgo", nn.GRU: "rzn"}


def weight_matrix_views(model: nn.Module) -> list[tuple[str, str, str, torch.Tensor]]:
    """Every weight matrix of the model as ``(matrix name, layer, parameter name, 2-D view)``.

    * a module's ``weight`` with two or more dimensions (Linear, Conv, Embedding, custom modules): one
      matrix named by the module (``"(root)"`` for the root); a convolution kernel ``(out, in, *k)`` is
      ``out × (in·∏k)``, a transposed one ``(in, out, *k)`` is transposed first;
    * ``nn.MultiheadAttention``: ``in_proj_weight`` split into its query, key and value blocks
      (``"attn.in_proj_weight[q]"``, ``[k]``, ``[v]``), or ``q_proj_weight``/``k_proj_weight``/
      ``v_proj_weight`` when key and value sizes differ; ``out_proj`` is a Linear of its own;
    * ``nn.LSTM``/``nn.GRU``/``nn.RNN``: every ``weight_ih_l*``/``weight_hh_l*`` split into its gate
      blocks (LSTM ``i, f, g, o``; GRU ``r, z, n``; RNN one block), and LSTM ``weight_hr_l*``.

    A Parameter shared by several modules (weight tying) is listed once, under its first module.

    Examples
    --------
    >>> import torch
    >>> views = weight_matrix_views(torch.nn.GRU(3, 4))
    >>> [(name, tuple(w.shape)) for name, _, _, w in views][:3]
    [('(root).weight_ih_l0[r]', (4, 3)), ('(root).weight_ih_l0[z]', (4, 3)), ('(root).weight_ih_l0[n]', (4, 3))]
    """
    views: list[tuple[str, str, str, torch.Tensor]] = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        layer = module_name(name)
        prefix = f"{name}." if name else ""
        own = {k: p for k, p in module._parameters.items() if p is not None}
        if isinstance(module, nn.MultiheadAttention):
            for key in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                p = own.get(key)
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                if key == "in_proj_weight":
                    for block, w in zip("qkv", p.detach().chunk(3, dim=0)):
                        views.append((f"{layer}.{key}[{block}]", layer, prefix + key, w))
                else:
                    views.append((f"{layer}.{key}", layer, prefix + key, p.detach()))
            continue
        if isinstance(module, nn.RNNBase):
            gates = _GATES.get(type(module), "h")
            for key, p in own.items():
                if not key.startswith("weight_") or id(p) in seen:
                    continue
                seen.add(id(p))
                if key.startswith("weight_hr"):
                    views.append((f"{layer}.{key}", layer, prefix + key, p.detach()))
                    continue
                for block, w in zip(gates, p.detach().chunk(len(gates), dim=0)):
                    views.append((f"{layer}.{key}[{block}]", layer, prefix + key, w))
            continue
        weight = own.get("weight")
        if weight is None or weight.dim() < 2 or id(weight) in seen:
            continue
        seen.add(id(weight))
        w = weight.detach()
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            w = w.transpose(0, 1)
        views.append((layer, layer, prefix + "weight", w.reshape(w.shape[0], -1)))
    return views


def weight_matrices(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{matrix name: 2-D view}`` of :func:`weight_matrix_views`, in ``named_modules()`` order.

    A module with one weight matrix is named by the module (``"(root)"`` for the root).

    Examples
    --------
    >>> import torch
    >>> {k: tuple(w.shape) for k, w in weight_matrices(torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3))).items()}
    {'0': (5, 27)}
    """
    return {name: w for name, _, _, w in weight_matrix_views(model)}


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

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.spectral_norm import power_iteration
    >>> sigma, vector = power_iteration(torch.diag(torch.tensor([3.0, 1.0])), n_iterations=50,
    ...                                 generator=torch.Generator().manual_seed(0))
    >>> round(sigma, 6)
    3.0
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
    on_unsupported : {"raise", "warn", "ignore"}
        A parameter with two or more dimensions that is not a known weight matrix (a custom module's
        ``nn.Parameter`` named other than ``weight``, e.g. a position-embedding table): raise, warn
        (default: the other matrices are still measured) or skip silently. Skipped parameters are always
        recorded in ``parameters_skipped``.
    max_memory : int, float or str, optional
        Budget of the largest buffers (bytes or a string such as ``"2GB"``); None (default): no check.
        Before any matrix is measured, the largest matrix ``W (m×n)`` is checked: ``8(2mn + min(m, n)²)``
        bytes for ``"exact"`` (its SVD's float64 workspace), ``3 · 8 (m + n)`` for ``"power"`` (the
        singular vectors); :class:`jacspec.memory.MemoryBudgetError` names the ways out.

    Emits
    -----
    spectral_norm : (layer,)
        σ_max of each module's weight matrices (the largest over them when a module has several:
        the q/k/v blocks of ``MultiheadAttention.in_proj_weight``, the gate blocks of an LSTM/GRU);
        ``layer`` holds module names from ``named_modules()``, the root spelled ``"(root)"``.
    matrix_spectral_norm : (matrix,)
        σ_max of every weight matrix (:func:`weight_matrix_views`), with coordinates ``matrix`` (e.g.
        ``"attn.in_proj_weight[q]"``, ``"rnn.weight_hh_l0[f]"``), ``matrix_layer`` and ``matrix_shape``.

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

    def __init__(
        self,
        n_iterations: int = 10,
        method: Literal["power", "exact"] = "power",
        seed: int = 0,
        on_unsupported: Literal["raise", "warn", "ignore"] = "warn",
        max_memory: int | float | str | None = None,
    ):
        if on_unsupported not in ("raise", "warn", "ignore"):
            raise ValueError(f"`on_unsupported` must be 'raise', 'warn' or 'ignore', but got {on_unsupported!r}.")
        self.on_unsupported = on_unsupported
        self.max_memory = budget_argument(max_memory)
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
        views = weight_matrix_views(model)
        covered = {pname for _, _, pname, _ in views}
        unknown = [(pname, p) for pname, p in model.named_parameters() if p.dim() >= 2 and pname not in covered]
        if unknown and self.on_unsupported != "ignore":
            modules = dict(model.named_modules())
            described = ", ".join(
                f"{pname!r} of {module_name(pname.rpartition('.')[0])!r} "
                f"({type(modules[pname.rpartition('.')[0]]).__name__}, shape {tuple(p.shape)})"
                for pname, p in unknown
            )
            message = (
                f"SpectralNorm does not know which matrix to take from {described}: only `weight` "
                "parameters, MultiheadAttention projections and RNN weights are read."
            )
            if self.on_unsupported == "raise":
                raise UnsupportedLayerError(
                    message + " Pass on_unsupported='warn' or 'ignore' to measure the other matrices, or "
                    "rename the parameter `weight` in its own module."
                )
            warnings.warn(message + " They are skipped.", stacklevel=3)
        if not views:
            raise ValueError(
                "`model` has no weight matrix (no module owns a `weight` parameter with two or more "
                "dimensions), so SpectralNorm has nothing to measure."
            )
        if self.max_memory is not None:
            matrix, _, _, w = max(views, key=lambda view: view[3].numel())
            m, k = w.shape[0], w[0].numel()
            exact = self.method == "exact"
            check_memory(
                8 * (2 * m * k + min(m, k) ** 2) if exact else 3 * 8 * (m + k),
                self.max_memory,
                what=f"SpectralNorm's {'SVD' if exact else 'power iteration'} of {matrix!r} ({m}×{k})",
                ways_out=['method="power"'] if exact else [],
            )
        names, values, shapes, owners = [], [], [], []
        nonfinite = []
        with torch.no_grad():
            for matrix, layer, _, w in views:
                if not bool(torch.isfinite(w).all()):
                    nonfinite.append(matrix)  # NaN, never a power iteration on it (nor a stored NaN warm start)
                    sigma = float("nan")
                elif self.method == "exact":
                    sigma = float(torch.linalg.matrix_norm(w, ord=2))
                else:
                    key = (id(model), matrix)
                    sigma, v = power_iteration(w, self.n_iterations, self._vectors.get(key), self._generator)
                    self._vectors[key] = v
                names.append(matrix)
                values.append(sigma)
                shapes.append(f"{w.shape[0]}x{w.shape[1]}")
                owners.append(layer)
        if nonfinite and not getattr(self, "_warned_nonfinite", False):
            self._warned_nonfinite = True  # once per probe: a diverged run would repeat it every step
            warnings.warn(
                f"SpectralNorm: the weight matrices {nonfinite} hold NaN or inf entries (has training diverged?); "
                "their spectral norms are NaN and `nonfinite_count` counts them. Not reported again.",
                RuntimeWarning,
                stacklevel=3,
            )
        layers = list(dict.fromkeys(owners))
        # np.max propagates NaN (Python's max would silently drop it, depending on the order)
        per_layer = [float(np.max([v for v, o in zip(values, owners) if o == layer])) for layer in layers]
        reasons = {pname: "not a weight matrix (fewer than two dimensions)" for pname, p in model.named_parameters()}
        reasons.update({pname: "not a known weight matrix" for pname, _ in unknown})
        return xr.Dataset(
            {
                "spectral_norm": (
                    "layer",
                    np.asarray(per_layer, dtype=np.float64),
                    {"long_name": "largest singular value of the module's weight matrices", "units": "1"},
                ),
                "matrix_spectral_norm": (
                    "matrix",
                    np.asarray(values, dtype=np.float64),
                    {"long_name": "largest singular value of the weight matrix", "units": "1"},
                ),
                "nonfinite_count": (
                    (),
                    len(nonfinite),
                    {"long_name": "weight matrices with NaN or inf entries (their norms are NaN)", "units": "count"},
                ),
            },
            coords={
                "layer": ("layer", np.asarray(layers, dtype=object), {"long_name": "module name"}),
                "matrix": ("matrix", np.asarray(names, dtype=object), {"long_name": "weight matrix"}),
                "matrix_layer": ("matrix", np.asarray(owners, dtype=object), {"long_name": "module name"}),
                "matrix_shape": ("matrix", np.asarray(shapes, dtype=object), {"long_name": "rows x columns"}),
            },
            attrs={
                "method": self.method,
                "n_iterations": self.n_iterations,
                **parameter_record(model, [k for k, _ in model.named_parameters() if k in covered], reasons),
            },
        )
