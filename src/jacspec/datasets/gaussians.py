"""Correlated Gaussians with known mutual information (Baratin 2021, chapter 5, section 4.1)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["correlated_gaussians"]


def correlated_gaussians(n: int, d: int, rho: float, seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Samples x, z ∈ ℝ^d with standard normal marginals and corr(x_i, z_j) = δ_ij ρ.

    The ground truth is I(X; Z) = −d/2 · log(1 − ρ²) nats
    (:func:`jacspec.estimators.gaussian_mutual_information`).

    Parameters
    ----------
    n, d : int
        Number of samples and dimension of each variable.
    rho : float
        Componentwise correlation, in (−1, 1).
    seed : int or None
        Seed of a private ``numpy.random.Generator``.

    Returns
    -------
    x, z : np.ndarray
        Float64 arrays of shape ``(n, d)``; z = ρ x + √(1 − ρ²) ε.

    Examples
    --------
    >>> from jacspec.datasets import correlated_gaussians
    >>> x, z = correlated_gaussians(1000, 2, 0.5)
    >>> x.shape, z.shape
    ((1000, 2), (1000, 2))
    """
    if not -1.0 < rho < 1.0:
        raise ValueError(f"`rho` must lie in (-1, 1), but got {rho!r}.")
    if int(n) < 1 or int(d) < 1:
        raise ValueError(f"`n` and `d` must be positive integers, but got n={n!r}, d={d!r}.")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((int(n), int(d)))
    return x, rho * x + math.sqrt(1.0 - rho * rho) * rng.standard_normal((int(n), int(d)))
