"""Generators for the spectral-bias experiments of Baratin 2021 (Baratin, thesis), chapter 3.

* :func:`sum_of_sines` — λ(z) = Σ_i A_i sin(2π k_i z + φ_i) (eq. 8, Experiment 1), and
  :func:`spectral_bias_data` — its samples on the regular grid of ``[0, 1)`` with random phases.
* :func:`flower_curve` — γ_L(z) = (1 + ½ sin 2πLz)(cos 2πz, sin 2πz) (eq. 13, Experiment 5), and
  :func:`embed_curve` — the same curve isometrically embedded in ℝ^d.
* :func:`radial_wave` — ψ_k(x) = sin(k‖x‖) (eq. 10, Experiment 3).

Nothing is downloaded; everything is computed from the arguments (and a seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "Curve",
    "EmbeddedCurve",
    "FlowerCurve",
    "embed_curve",
    "flower_curve",
    "radial_wave",
    "spectral_bias_data",
    "sum_of_sines",
]


def _as_1d(values: float | Sequence[float] | torch.Tensor, n: int, name: str, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.as_tensor(values, dtype=dtype)
    if tensor.dim() == 0:
        tensor = tensor.expand(n).clone()
    if tensor.shape != (n,):
        raise ValueError(
            f"`{name}` must be a number or have one entry per frequency ({n}), but got shape {tuple(tensor.shape)}."
        )
    return tensor


def sum_of_sines(
    z: torch.Tensor,
    frequencies: Sequence[float] | torch.Tensor,
    amplitudes: float | Sequence[float] | torch.Tensor = 1.0,
    phases: float | Sequence[float] | torch.Tensor = 0.0,
) -> torch.Tensor:
    """λ(z) = Σ_i A_i sin(2π k_i z + φ_i) (Baratin 2021, eq. 8).

    Parameters
    ----------
    z : torch.Tensor
        Points, any shape (a trailing singleton axis ``(n, 1)`` is kept).
    frequencies, amplitudes, phases : sequences or tensors
        ``k_i``, ``A_i`` (a number: the same for all) and ``φ_i`` in radians.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``z`` (float64 for an integer ``z``).

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([0.0, 0.25])
    >>> sum_of_sines(z, [1], [2.0]).tolist()
    [0.0, 2.0]
    """
    dtype = z.dtype if z.is_floating_point() else torch.float64
    k = torch.as_tensor(frequencies, dtype=dtype, device=z.device).reshape(-1)
    a = _as_1d(amplitudes, k.numel(), "amplitudes", dtype).to(z.device)
    phi = _as_1d(phases, k.numel(), "phases", dtype).to(z.device)
    zz = z.to(dtype)[..., None]
    return (a * torch.sin(2 * math.pi * k * zz + phi)).sum(-1)


def spectral_bias_data(
    n_points: int = 200,
    frequencies: Sequence[float] = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50),
    amplitudes: float | Sequence[float] = 1.0,
    seed: int | None = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Experiment 1 of Baratin 2021 (A.1.1): λ on ``n_points`` equally spaced points of ``[0, 1)``.

    Phases are drawn from U(0, 2π) with a private generator (``seed``; the global RNG is untouched).

    Returns
    -------
    x : torch.Tensor
        ``(n_points, 1)`` grid ``z_n = n / N`` (the default grid of :class:`~jacspec.probes.FourierSpectrum`).
    y : torch.Tensor
        ``(n_points, 1)`` targets λ(z_n).
    phases : torch.Tensor
        ``(len(frequencies),)`` the phases drawn.

    Examples
    --------
    >>> from jacspec.datasets.fourier import spectral_bias_data
    >>> x, y, phases = spectral_bias_data(n_points=200, frequencies=(5, 10))
    >>> x.shape, y.shape, phases.shape
    (torch.Size([200, 1]), torch.Size([200, 1]), torch.Size([2]))
    """
    generator = torch.Generator().manual_seed(int(seed)) if seed is not None else torch.Generator()
    if seed is None:
        generator.seed()
    phases = 2 * math.pi * torch.rand(len(frequencies), generator=generator, dtype=torch.float64)
    z = torch.arange(n_points, dtype=torch.float64) / n_points
    y = sum_of_sines(z, frequencies, amplitudes, phases)
    return z[:, None].to(dtype), y[:, None].to(dtype), phases


class Curve:
    """A curve γ: [0, 1) → ℝ^d; call it on ``z`` of shape ``(n,)`` to get points ``(n, d)``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.datasets.fourier import Curve
    >>> class Segment(Curve):
    ...     dim = 2
    ...     def __call__(self, z):
    ...         return torch.stack([z, 2 * z], dim=-1)
    >>> Segment()(torch.tensor([0.0, 0.5]))
    tensor([[0.0000, 0.0000],
            [0.5000, 1.0000]])
    """

    dim: int = 2

    def __call__(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:  # used in the probe's configuration JSON
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class FlowerCurve(Curve):
    """γ_L(z) = (1 + ½ sin 2πLz)(cos 2πz, sin 2πz): a flower with ``L`` petals (a circle for L = 0).

    Examples
    --------
    >>> import torch
    >>> from jacspec.datasets.fourier import FlowerCurve
    >>> FlowerCurve(petals=0)(torch.tensor([0.0, 0.25], dtype=torch.float64)).round(decimals=6)  # the unit circle
    tensor([[1., 0.],
            [0., 1.]], dtype=torch.float64)
    """

    dim = 2

    def __init__(self, petals: int):
        if not isinstance(petals, int) or isinstance(petals, bool) or petals < 0:
            raise ValueError(f"`petals` (L) must be an integer ≥ 0, but got {petals!r}.")
        self.petals = petals

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        z = torch.as_tensor(z)
        z = z.reshape(-1) if z.dim() == 2 and z.shape[1] == 1 else z
        dtype = z.dtype if z.is_floating_point() else torch.float64
        z = z.to(dtype)
        radius = 1 + 0.5 * torch.sin(2 * math.pi * self.petals * z)
        return torch.stack([radius * torch.cos(2 * math.pi * z), radius * torch.sin(2 * math.pi * z)], dim=-1)


def flower_curve(petals: int) -> FlowerCurve:
    """The flower-shaped curve γ_L of Baratin 2021, eq. 13 (Experiment 5), as a callable ``z ↦ (n, 2)``.

    Parameters
    ----------
    petals : int
        ``L ≥ 0``; ``L = 0`` is the unit circle.

    Examples
    --------
    >>> import torch
    >>> gamma = flower_curve(4)
    >>> gamma(torch.tensor([0.0, 0.25], dtype=torch.float64)).shape
    torch.Size([2, 2])
    """
    return FlowerCurve(petals)


class EmbeddedCurve(Curve):
    """``z ↦ γ(z) Qᵀ``: a curve mapped into ℝ^d by a matrix ``Q`` with orthonormal columns (an isometry).

    Examples
    --------
    >>> import torch
    >>> from jacspec.datasets.fourier import EmbeddedCurve, FlowerCurve
    >>> curve = EmbeddedCurve(FlowerCurve(3), dim=8)
    >>> z = torch.linspace(0, 1, 5, dtype=torch.float64)
    >>> bool(torch.allclose(torch.cdist(curve(z), curve(z)), torch.cdist(FlowerCurve(3)(z), FlowerCurve(3)(z))))
    True
    """

    def __init__(self, curve: Curve, dim: int, seed: int = 0):
        base_dim = int(getattr(curve, "dim", 2))
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < base_dim:
            raise ValueError(f"`dim` must be an integer ≥ the curve's dimension ({base_dim}), but got {dim!r}.")
        self.curve = curve
        self.dim = dim
        self.seed = seed
        generator = torch.Generator().manual_seed(int(seed))
        gaussian = torch.randn(dim, base_dim, generator=generator, dtype=torch.float64)
        self._basis, _ = torch.linalg.qr(gaussian)  # (dim, base_dim), orthonormal columns

    @property
    def basis(self) -> torch.Tensor:
        """The ``(dim, curve.dim)`` matrix ``Q`` with orthonormal columns."""
        return self._basis

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        points = self.curve(z)
        return points @ self._basis.to(points.dtype).T


def embed_curve(curve: Curve, dim: int, seed: int = 0) -> EmbeddedCurve:
    """Embed a curve into ℝ^dim by a random isometry (orthonormal columns, drawn with ``seed``).

    Distances, and therefore the spectrum of any radial or kernel function along the curve, are those
    of the original curve; only the ambient dimension changes.

    Examples
    --------
    >>> import torch
    >>> gamma = embed_curve(flower_curve(3), dim=10)
    >>> gamma(torch.zeros(5, dtype=torch.float64)).shape
    torch.Size([5, 10])
    """
    return EmbeddedCurve(curve, dim, seed)


def radial_wave(x: torch.Tensor, k: float) -> torch.Tensor:
    """Radial-wave noise ψ_k(x) = sin(k‖x‖) (Baratin 2021, eq. 10), ‖·‖ over all but the first axis.

    Parameters
    ----------
    x : torch.Tensor
        ``(n, ...)`` samples (e.g. flattened images in [0, 1]^784).
    k : float
        Radial frequency (radians per unit norm).

    Returns
    -------
    torch.Tensor
        ``(n,)``.

    Examples
    --------
    >>> import math, torch
    >>> radial_wave(torch.tensor([[3.0, 4.0]]), k=math.pi / 10).tolist()
    [1.0]
    """
    flat = x.reshape(x.shape[0], -1)
    flat = flat if flat.is_floating_point() else flat.double()
    return torch.sin(float(k) * torch.linalg.vector_norm(flat, dim=1))
