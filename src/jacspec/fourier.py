"""Fourier spectra of functions sampled on regular grids, and the generalized (kernel) spectrum.

Plain functions on tensors; :class:`jacspec.probes.FourierSpectrum` calls them. Baratin 2021 (Baratin,
thesis), chapter 3 and appendix A.1: the spectral bias of neural networks is measured by the magnitude
of the single-sided discrete Fourier transform (DFT) of the network evaluated on a regular grid
(Experiment 1, l.704–737; A.1.1), of ``f∘γ`` along a curve γ (Experiment 5, l.793–857; A.1.2), and, in
high dimension, by projecting the network's outputs on a data sample onto the eigenvectors of a Gaussian
RBF kernel matrix (Experiment 4, l.761–791; A.1.4 eq. 5).

Normalisation of the single-sided spectrum
------------------------------------------
For values ``f_n = f(a + n (b − a) / N)``, ``n = 0 … N−1`` on the grid of ``[a, b)`` (endpoint
excluded) with DFT ``F_k = Σ_n f_n exp(−2πi k n / N)``::

    amplitude[0]   = |F_0| / N                    (the mean)
    amplitude[k]   = 2 |F_k| / N    for 0 < k < N/2
    amplitude[N/2] = |F_{N/2}| / N               (Nyquist, even N only)

so that ``A sin(2π k z + φ) + c`` reads ``A`` at ``k`` and ``|c|`` at 0 exactly. The frequency of
bin ``k`` is ``k / (b − a)`` cycles per unit of the grid variable (``k`` itself on ``[0, 1)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "grid",
    "grid_frequencies",
    "single_sided_amplitude",
    "single_sided_coefficients",
    "radial_amplitude",
    "rbf_kernel",
    "median_bandwidth",
    "kernel_eigenbasis",
    "kernel_spectrum",
]


def grid(
    n_points: int,
    interval: tuple[float, float] = (0.0, 1.0),
    dim: int = 1,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Regular grid of ``n_points`` per axis on ``[a, b)^dim`` (endpoint excluded), row-major.

    Parameters
    ----------
    n_points : int
        Points per axis, ``N``.
    interval : (float, float)
        ``(a, b)`` with ``a < b``; the points are ``a + n (b − a) / N``.
    dim : int
        Number of axes ``d``.

    Returns
    -------
    torch.Tensor
        Shape ``(N**d, d)``; the point ``(i_1, …, i_d)`` is row ``i_1 N^{d−1} + … + i_d`` (so the
        values of a function reshape to ``(N,) * d`` in C order).

    Examples
    --------
    >>> grid(4).squeeze(1).tolist()
    [0.0, 0.25, 0.5, 0.75]
    """
    a, b = float(interval[0]), float(interval[1])
    axis = a + (b - a) * torch.arange(n_points, dtype=dtype, device=device) / n_points
    if dim == 1:
        return axis[:, None]
    mesh = torch.meshgrid(*([axis] * dim), indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=1)


def grid_frequencies(n_points: int, interval: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Frequencies (cycles per unit) of the single-sided spectrum: ``k / (b − a)``, ``k = 0 … ⌊N/2⌋``.

    Examples
    --------
    >>> from jacspec.fourier import grid_frequencies
    >>> grid_frequencies(8).tolist(), grid_frequencies(8, interval=(0.0, 2.0)).tolist()
    ([0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 1.0, 1.5, 2.0])
    """
    length = float(interval[1]) - float(interval[0])
    return np.arange(n_points // 2 + 1, dtype=np.float64) / length


def _single_sided_weights(n_points: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Factor applied to ``|F_k|``: 1/N at 0 (and at N/2 for even N), 2/N in between."""
    weights = torch.full((n_points // 2 + 1,), 2.0 / n_points, dtype=dtype, device=device)
    weights[0] = 1.0 / n_points
    if n_points % 2 == 0:
        weights[-1] = 1.0 / n_points
    return weights


def single_sided_coefficients(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Complex single-sided DFT coefficients along ``dim``, scaled so that their modulus is the amplitude.

    ``c_k = w_k F_k`` with ``w_k`` as in :func:`single_sided_amplitude` (1/N at 0 and Nyquist, 2/N
    elsewhere); ``|c_k|`` is the amplitude and averaging ``c_k`` over several functions before taking
    the modulus gives the spectrum of their mean.

    Examples
    --------
    >>> import math
    >>> import torch
    >>> from jacspec.fourier import single_sided_coefficients
    >>> z = torch.arange(8, dtype=torch.float64) / 8
    >>> coefficients = single_sided_coefficients(2.0 * torch.cos(2 * math.pi * z) + 0.5)
    >>> coefficients.abs().round(decimals=6)  # the mean, then amplitude 2 at frequency 1
    tensor([0.5000, 2.0000, 0.0000, 0.0000, 0.0000], dtype=torch.float64)
    """
    n_points = values.shape[dim]
    coefficients = torch.fft.rfft(values, dim=dim)
    real_dtype = coefficients.real.dtype
    weights = _single_sided_weights(n_points, real_dtype, coefficients.device)
    shape = [1] * coefficients.dim()
    shape[dim] = -1
    return coefficients * weights.reshape(shape)


def single_sided_amplitude(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Single-sided DFT magnitude along ``dim`` (``⌊N/2⌋ + 1`` bins), normalised so a sine of amplitude A reads A.

    Parameters
    ----------
    values : torch.Tensor
        Function values on a regular grid of ``N`` points along ``dim`` (endpoint excluded).
    dim : int
        The grid axis.

    Returns
    -------
    torch.Tensor
        Real tensor with ``dim`` of length ``⌊N/2⌋ + 1``: ``|F_0|/N``, ``2|F_k|/N`` for ``0 < k < N/2``
        and ``|F_{N/2}|/N`` for even ``N``, where ``F_k = Σ_n f_n e^{−2πikn/N}`` (Baratin 2021, A.1.1:
        "the magnitude of its (single-sided) discrete Fourier transform at frequencies k_i").

    Examples
    --------
    >>> import math, torch
    >>> z = torch.arange(200, dtype=torch.float64) / 200
    >>> amp = single_sided_amplitude(3 * torch.sin(2 * math.pi * 7 * z + 1.0))
    >>> round(float(amp[7]), 12), float(amp.max()) == float(amp[7])
    (3.0, True)
    """
    return single_sided_coefficients(values, dim).abs()


def _radial_bins(shape: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Radius bin (rounded ``|k|`` in grid-index units) and conjugate-pair weight of every rfftn bin."""
    axes = []
    for i, n in enumerate(shape):
        if i == len(shape) - 1:
            axes.append(torch.arange(n // 2 + 1, dtype=torch.float64, device=device))
        else:
            axes.append(torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device))
    mesh = torch.meshgrid(*axes, indexing="ij")
    radius = torch.sqrt(sum(m**2 for m in mesh))
    shell = torch.round(radius).to(torch.long)
    # every rfftn bin whose last index is neither 0 nor N/2 stands for itself and its conjugate twin
    n_last = shape[-1]
    last = mesh[-1]
    pair = torch.where((last == 0) | ((n_last % 2 == 0) & (last == n_last // 2)), 1.0, 2.0).to(torch.float64)
    return shell, pair


def radial_amplitude(values: torch.Tensor, n_dims: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Radially summed and averaged DFT magnitude of values on a ``d``-dimensional regular grid.

    With ``c(k) = |F(k)| / N^d`` for every frequency vector ``k`` of the full lattice (integer
    components in ``(−N/2, N/2]``), computed with ``torch.fft.rfftn`` and its conjugate symmetry, the
    shell ``r`` collects the ``k`` with ``round(|k|) = r``, ``r = 0 … ⌊N/2⌋`` (corners beyond the
    Nyquist radius are dropped)::

        amplitude[r]      = Σ_{round|k| = r} c(k)          (a plane wave A sin(2π k·x) with |k| = r reads A;
                                                            in 1-D this is the single-sided amplitude)
        mean_amplitude[r] = amplitude[r] / #{k : round|k| = r}

    Parameters
    ----------
    values : torch.Tensor
        Shape ``(..., N, …, N)``: the last ``n_dims`` axes are the grid axes (equal lengths ``N``).
    n_dims : int
        Number of grid axes ``d``.

    Returns
    -------
    amplitude, mean_amplitude : torch.Tensor
        Shape ``(..., ⌊N/2⌋ + 1)``.
    shell_size : torch.Tensor
        Number of lattice frequencies in each shell, shape ``(⌊N/2⌋ + 1,)``.

    Examples
    --------
    >>> import math
    >>> import torch
    >>> from jacspec.fourier import radial_amplitude
    >>> n = 32
    >>> z = torch.arange(n, dtype=torch.float64) / n
    >>> wave = torch.sin(2 * math.pi * 3 * z)[:, None].expand(n, n)  # a plane wave with |k| = 3, amplitude 1
    >>> amplitude, mean_amplitude, shell_size = radial_amplitude(wave, n_dims=2)
    >>> round(float(amplitude[3]), 6)
    1.0
    """
    shape = tuple(values.shape[-n_dims:])
    n_points = shape[0]
    dims = tuple(range(-n_dims, 0))
    magnitude = torch.fft.rfftn(values, dim=dims).abs() / float(np.prod(shape))
    shell, pair = _radial_bins(shape, values.device)
    n_shells = n_points // 2 + 1
    keep = shell < n_shells
    flat = magnitude.reshape(*values.shape[:-n_dims], -1)[..., keep.reshape(-1)]
    index = shell[keep]
    weight = pair[keep].to(flat.dtype)
    out = torch.zeros(*flat.shape[:-1], n_shells, dtype=flat.dtype, device=flat.device)
    out.index_add_(-1, index, flat * weight)
    shell_size = torch.zeros(n_shells, dtype=torch.float64, device=values.device).index_add_(0, index, pair[keep])
    return out, out / shell_size.to(out.dtype), shell_size


def rbf_kernel(x: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Gaussian RBF kernel matrix ``K_ij = exp(−‖x_i − x_j‖² / σ²)`` (Baratin 2021, A.1.4 eq. 1).

    Examples
    --------
    >>> import torch
    >>> from jacspec.fourier import rbf_kernel
    >>> rbf_kernel(torch.tensor([[0.0], [1.0]], dtype=torch.float64), bandwidth=1.0)  # exp(-1) off the diagonal
    tensor([[1.0000, 0.3679],
            [0.3679, 1.0000]], dtype=torch.float64)
    """
    flat = x.reshape(x.shape[0], -1)
    flat = flat if flat.is_floating_point() else flat.double()
    sq = torch.cdist(flat, flat).pow(2)
    return torch.exp(-sq / float(bandwidth) ** 2)


def median_bandwidth(x: torch.Tensor) -> float:
    """Median heuristic: σ = median of the pairwise Euclidean distances ``‖x_i − x_j‖``, ``i < j``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.fourier import median_bandwidth
    >>> median_bandwidth(torch.tensor([[0.0], [1.0], [3.0]]))  # distances 1, 2, 3
    2.0
    """
    flat = x.reshape(x.shape[0], -1)
    flat = flat if flat.is_floating_point() else flat.double()
    n = flat.shape[0]
    if n < 2:
        raise ValueError(f"the median heuristic needs at least 2 samples, but got {n}.")
    distances = torch.cdist(flat, flat)
    rows, cols = torch.triu_indices(n, n, offset=1, device=flat.device)
    sigma = float(torch.quantile(distances[rows, cols].double().cpu(), 0.5))
    if not sigma > 0:
        raise ValueError("the median pairwise distance of the samples is 0; pass an explicit `bandwidth`.")
    return sigma


def kernel_eigenbasis(x: torch.Tensor, bandwidth: float | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Eigenvalues (descending) and orthonormal eigenvectors of the RBF kernel matrix of a sample.

    Returns
    -------
    eigenvalues : torch.Tensor
        ``(n,)``, λ_1 ≥ … ≥ λ_n.
    eigenvectors : torch.Tensor
        ``(n, n)``; column ``j`` is ``v_j``. The sign of each column is fixed so that its entry of
        largest modulus is positive.
    bandwidth : float
        σ used (the median heuristic when ``bandwidth`` is None).

    Examples
    --------
    >>> import torch
    >>> from jacspec.fourier import kernel_eigenbasis
    >>> x = torch.rand(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> eigenvalues, eigenvectors, bandwidth = kernel_eigenbasis(x)
    >>> bool((eigenvalues[:-1] >= eigenvalues[1:]).all()), eigenvectors.shape
    (True, torch.Size([50, 50]))
    >>> bool(torch.allclose(eigenvectors.T @ eigenvectors, torch.eye(50, dtype=torch.float64), atol=1e-8))
    True
    """
    sigma = median_bandwidth(x) if bandwidth is None else float(bandwidth)
    kernel = rbf_kernel(x.double(), sigma)
    eigenvalues, eigenvectors = torch.linalg.eigh(kernel)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    pivot = eigenvectors.abs().argmax(dim=0)
    signs = torch.sign(eigenvectors[pivot, torch.arange(eigenvectors.shape[1], device=eigenvectors.device)])
    eigenvectors = eigenvectors * torch.where(signs == 0, 1.0, signs).to(eigenvectors.dtype)
    return eigenvalues, eigenvectors, sigma


def kernel_spectrum(values: torch.Tensor, eigenvectors: torch.Tensor) -> torch.Tensor:
    """Generalized spectrum ``f̃[n] = f · v_n`` (Baratin 2021, A.1.4 eq. 5) of values ``(n,)`` or ``(n, c)``.

    Returns the signed projections, shape ``(n_eigen,)`` or ``(c, n_eigen)``; their squares sum to
    ``‖f‖²`` (Parseval) when all eigenvectors are used.

    Examples
    --------
    >>> import torch
    >>> from jacspec.fourier import kernel_spectrum
    >>> basis = torch.eye(3, dtype=torch.float64)
    >>> kernel_spectrum(torch.tensor([3.0, -4.0, 0.0], dtype=torch.float64), basis)  # f · v_n
    tensor([ 3., -4.,  0.], dtype=torch.float64)
    """
    v = eigenvectors.to(values.dtype)
    if values.dim() == 1:
        return v.T @ values
    return (v.T @ values).T


def _check_frequency_grid(frequencies: Sequence[float], n_points: int, interval: tuple[float, float]) -> np.ndarray:
    """Indices of ``frequencies`` on the grid's frequency axis; ValueError past Nyquist or off the grid."""
    length = float(interval[1]) - float(interval[0])
    indices = []
    for k in frequencies:
        bin_index = float(k) * length
        if not math.isfinite(bin_index) or bin_index < 0:
            raise ValueError(f"frequencies must be finite and ≥ 0, but got {k!r}.")
        if bin_index >= n_points / 2:
            raise ValueError(
                f"frequency {k!r} is at or above the Nyquist frequency of a grid of {n_points} points on "
                f"{tuple(interval)} (N/2 = {n_points / 2 / length:g} cycles per unit): use n_points > "
                f"{int(2 * bin_index)}."
            )
        rounded = round(bin_index)
        if abs(bin_index - rounded) > 1e-9 * max(1.0, bin_index):
            raise ValueError(
                f"frequency {k!r} is not on the grid's frequency axis (multiples of 1/(b − a) = {1 / length:g})."
            )
        indices.append(int(rounded))
    return np.asarray(indices, dtype=np.int64)
