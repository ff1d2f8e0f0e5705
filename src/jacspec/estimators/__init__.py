"""Estimators on plain arrays: mutual information by MINE, MINE-f and KSG.

:func:`mutual_information` is the entry point; the maths lives in :mod:`jacspec.estimators.mine` and
:mod:`jacspec.estimators.ksg`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import xarray as xr

from jacspec.estimators._samples import MIN_SAMPLES, as_samples, check_pair, gaussianize, standardize
from jacspec.estimators.ksg import ksg, ksg_counts
from jacspec.estimators.mine import (
    MineResult,
    StatisticsNetwork,
    adaptive_clip,
    donsker_varadhan_bound,
    f_divergence_bound,
    mine,
)

__all__ = [
    "MIN_SAMPLES",
    "METHODS",
    "MineResult",
    "StatisticsNetwork",
    "adaptive_clip",
    "as_samples",
    "check_pair",
    "donsker_varadhan_bound",
    "f_divergence_bound",
    "gaussian_mutual_information",
    "gaussianize",
    "ksg",
    "ksg_counts",
    "mine",
    "mutual_information",
    "standardize",
]

METHODS = ("mine", "mine_f", "ksg")


def gaussian_mutual_information(rho: float, d: int) -> float:
    """Ground truth −d/2·log(1 − ρ²) nats for x, z ∈ ℝ^d with componentwise correlation ρ (Baratin 2021, l.1385).

    Examples
    --------
    >>> from jacspec.estimators import gaussian_mutual_information
    >>> round(gaussian_mutual_information(rho=0.5, d=2), 4)  # -log(1 - 0.25) nats
    0.2877
    """
    return float(-0.5 * d * np.log1p(-rho * rho))


def mutual_information(x: Any, z: Any, method: str = "mine", seed: int | None = 0, **options: Any) -> xr.Dataset:
    r"""Estimate the mutual information I(X; Z) in nats from paired samples.

    Parameters
    ----------
    x, z : array_like
        Paired samples, shapes ``(n, d_x)`` and ``(n, d_z)`` (numpy arrays or torch tensors; 1-D means one
        feature, more dimensions are flattened). At least :data:`MIN_SAMPLES` (20) samples, all finite.
    method : {"mine", "mine_f", "ksg"}
        ``"mine"``: statistics network trained on the Donsker–Varadhan bound
        I ≥ E_P[T] − log E_{P_X⊗P_Z}[e^T] with bias-corrected gradients (Baratin 2021, eqs. 6, 11, Algorithm 1);
        ``"mine_f"``: the f-divergence bound E_P[T] − E_{P_X⊗P_Z}[e^{T−1}] (eq. 8);
        ``"ksg"``: Kraskov–Stögbauer–Grassberger estimator 1, k = 3, max-norm.
    seed : int or None
        Seed of the estimator's private generators (never the global RNG). Same seed, same estimate.
    **options
        Passed to :func:`jacspec.estimators.mine.mine` (``iterations``, ``batch_size``, ``learning_rate``,
        ``hidden``, ``ema_rate``, ``clip``, ``validation_fraction``, ``network`` for a warm start, ...)
        or :func:`jacspec.estimators.ksg.ksg` (``k``, ``noise``, ``algorithm``, ...).

    Returns
    -------
    xarray.Dataset
        ``mutual_information`` ``()`` in nats; for MINE and MINE-f also ``mutual_information_history``
        ``(iteration,)``, the minibatch bound during training (NaN after training stopped). Attributes:
        ``method``, ``n_samples``, ``x_features``, ``z_features``, ``elapsed_seconds``; for the neural
        methods ``iterations_run``, ``best_iteration`` (early stopping on held-out samples) and
        ``stopped_early`` (1 when a non-finite value stopped training).

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.estimators import mutual_information, gaussian_mutual_information
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2000, 2))
    >>> z = 0.5 * x + np.sqrt(1 - 0.5**2) * rng.standard_normal((2000, 2))
    >>> ds = mutual_information(x, z, method="ksg")
    >>> round(gaussian_mutual_information(0.5, 2), 3)
    0.288
    >>> abs(float(ds["mutual_information"]) - 0.288) < 0.06
    True
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, but got {method!r}.")
    start = time.perf_counter()
    x_array, z_array = check_pair(x, z)
    attrs: dict[str, Any] = {
        "method": method,
        "n_samples": int(x_array.shape[0]),
        "x_features": int(x_array.shape[1]),
        "z_features": int(z_array.shape[1]),
        "seed": "" if seed is None else int(seed),
    }
    variables: dict[str, Any] = {}
    if method == "ksg":
        result = ksg(x_array, z_array, seed=seed, **options)
        estimate = result["mutual_information"]
        attrs["k"] = result["k"]
    else:
        result_mine: MineResult = mine(
            x_array, z_array, objective="dv" if method == "mine" else "f", seed=seed, **options
        )
        estimate = result_mine.mutual_information
        history = result_mine.history
        variables["mutual_information_history"] = (
            "iteration",
            history,
            {
                "long_name": f"{'Donsker-Varadhan' if method == 'mine' else 'f-divergence'} bound on each minibatch",
                "units": "nats",
            },
        )
        attrs["iterations_run"] = result_mine.iterations_run
        attrs["best_iteration"] = result_mine.best_iteration
        attrs["stopped_early"] = int(result_mine.stopped_early)
        if result_mine.message:
            attrs["message"] = result_mine.message
    variables["mutual_information"] = (
        (),
        np.float64(estimate),
        {"long_name": f"mutual information estimated by {method}", "units": "nats"},
    )
    attrs["elapsed_seconds"] = time.perf_counter() - start
    coords = {}
    if "mutual_information_history" in variables:
        coords["iteration"] = ("iteration", np.arange(len(variables["mutual_information_history"][1])))
    return xr.Dataset(variables, coords=coords, attrs=attrs)
