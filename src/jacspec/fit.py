"""Fits of spectral distributions: lognormal, mode splitting, power law (Brandão et al. 2023, 4.4, 5.2, 8.5, 8.7).

Plain functions on arrays of positive values (e.g. point-Jacobian singular values), each returning a
small frozen result object. Every fit takes finite, strictly positive values only: NaN or ±inf in
``values`` raise a ValueError giving their number and the fix (``values[np.isfinite(values)]``), and so do
values ≤ 0 (``values[values > 0]``); nothing is dropped silently. Values are converted to float64 (float32
exactly). See the "Fits" page of the documentation for the formulas and a benchmark against the
``powerlaw`` package.

* :func:`lognormal` — maximum-likelihood lognormal with location 0 (the paper's scipy fit), with the
  R² of its probability plot;
* :func:`split_modes` — the paper's split of a bimodal log-spectrum at the first deepest trough between
  its two highest modes, with a lognormal fitted to each mode;
* :func:`power_law` — Clauset, Shalizi & Newman (2009): ``x_min`` by Kolmogorov–Smirnov minimisation,
  maximum-likelihood exponent, KS distance;
* :func:`compare_lognormal_power_law` — Vuong's normalised log-likelihood ratio test of a lognormal
  against a power law on the tail ``x ≥ x_min`` (CSN 2009, section 5), with its p-value.

:func:`attach` adds a :class:`ModeSplit` to a probe Dataset as variables along a ``mode`` dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr
from scipy import optimize, signal, special, stats

__all__ = [
    "LognormalFit",
    "ModeSplit",
    "PowerLawFit",
    "LikelihoodRatioTest",
    "lognormal",
    "split_modes",
    "power_law",
    "compare_lognormal_power_law",
    "attach",
    "MIN_VALUES_LOGNORMAL",
    "MIN_VALUES_SPLIT",
    "MIN_VALUES_POWER_LAW",
    "SIGMA_MAX_FACTOR",
    "SIGMA_MIN_FACTOR",
]

MIN_VALUES_LOGNORMAL = 3
"""Fewest values :func:`lognormal` accepts (two parameters, and a probability plot needs three points)."""
MIN_VALUES_SPLIT = 50
"""Fewest values :func:`split_modes` accepts (fewer give no meaningful histogram)."""
MIN_VALUES_POWER_LAW = 50
"""Fewest values :func:`power_law` accepts; also the default fewest values kept in the tail."""


def _as_values(values, name: str, minimum: int, positive: bool) -> np.ndarray:
    """``values`` as a flat float64 array, checked: real, finite, at least ``minimum`` long, ``> 0`` if asked.

    float32 (or integer) input is converted exactly to float64, so a fit of float32 values equals the
    fit of ``values.astype(np.float64)``.
    """
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"`{name}` must be an array of real numbers, but got {type(values).__name__}; "
            "pass e.g. a numpy array of float64."
        )
    try:
        array = np.asarray(values)
        if np.iscomplexobj(array) or (array.dtype == object and any(v is None for v in array.ravel())):
            raise TypeError("complex or None")
        array = array.astype(np.float64, copy=False).ravel()
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`{name}` must be an array of real numbers, but got {type(values).__name__}"
            f"{' of dtype ' + str(np.asarray(values).dtype) if hasattr(values, 'dtype') else ''}; "
            "pass e.g. a numpy array of float64."
        ) from err
    finite = np.isfinite(array)
    if not finite.all():
        bad = int((~finite).sum())
        n_nan = int(np.isnan(array).sum())
        raise ValueError(
            f"`{name}` must be finite, but {bad} of {array.size} values are non-finite ({n_nan} NaN, "
            f"{bad - n_nan} ±inf); drop them first, e.g. values[np.isfinite(values)], or fix the computation "
            "that produced them."
        )
    if array.size < minimum:
        raise ValueError(f"`{name}` must hold at least {minimum} values for this fit, but got {array.size}.")
    if positive and (array <= 0).any():
        bad = int((array <= 0).sum())
        raise ValueError(
            f"`{name}` must be strictly positive for a lognormal or power-law fit, but {bad} of {array.size} "
            f"values are ≤ 0 (smallest {float(array.min())!r}); drop them (e.g. values[values > 0]: zero singular "
            "values carry no scale) or pass a floor explicitly (np.maximum(values, floor))."
        )
    return array


@dataclass(frozen=True)
class LognormalFit:
    """A lognormal ``log X ~ N(mu, sigma²)`` fitted with location 0.

    Attributes
    ----------
    mu, sigma : float
        Mean and standard deviation of ``log X`` (scipy's ``scale = exp(mu)``, shape ``s = sigma``).
    r2 : float
        R² of the least-squares line through the lognormal probability plot on log axes, i.e. the
        normal probability plot of ``log values`` (``scipy.stats.probplot(log(values), dist="norm")``);
        1 for a perfect lognormal. (On linear axes the few largest values dominate the R².)
    n : int
        Number of values.
    log_likelihood : float
        Maximised log-likelihood ``Σ log p(x_i)``.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec import fit
    >>> result = fit.lognormal(np.exp(np.random.default_rng(0).normal(1.0, 0.5, 10_000)))
    >>> round(result.mu, 1), round(result.sigma, 1), result.n
    (1.0, 0.5, 10000)
    """

    mu: float
    sigma: float
    r2: float
    n: int
    log_likelihood: float

    @property
    def scale(self) -> float:
        """scipy's ``scale`` parameter, ``exp(mu)``."""
        return math.exp(self.mu)

    @property
    def shape(self) -> float:
        """scipy's shape parameter ``s``, equal to ``sigma``."""
        return self.sigma

    def pdf(self, x) -> np.ndarray:
        """Density of the fitted lognormal at ``x``."""
        return stats.lognorm.pdf(x, self.sigma, loc=0, scale=self.scale)


def lognormal(values) -> LognormalFit:
    """Maximum-likelihood lognormal fit with location 0, and its probability-plot R².

    The estimates are in closed form: ``mu = mean(log x)``, ``sigma² = mean((log x − mu)²)``, identical
    to ``scipy.stats.lognorm.fit(values, floc=0)`` (shape ``sigma``, scale ``exp(mu)``), the fit the
    paper uses (Brandão et al. 2023, sec. 8.5).

    Parameters
    ----------
    values : array_like
        Strictly positive, finite values; at least :data:`MIN_VALUES_LOGNORMAL`. Converted to float64.

    Returns
    -------
    LognormalFit
        When all values are equal: ``sigma = 0``, ``r2`` NaN (a probability plot of constant data has
        no slope) and ``log_likelihood`` inf (a point mass).

    Raises
    ------
    TypeError
        When ``values`` is not an array of real numbers.
    ValueError
        When ``values`` holds NaN or ±inf (the message gives their number; drop them with
        ``values[np.isfinite(values)]``: the fits never drop values silently), values ≤ 0 (drop them,
        e.g. zero singular values, with ``values[values > 0]``), or fewer than
        :data:`MIN_VALUES_LOGNORMAL` values.

    Examples
    --------
    >>> import numpy as np
    >>> fit = lognormal(np.exp(np.random.default_rng(0).normal(1.0, 0.5, 10_000)))
    >>> round(fit.mu, 1), round(fit.sigma, 1), fit.r2 > 0.99
    (1.0, 0.5, True)
    """
    x = _as_values(values, "values", MIN_VALUES_LOGNORMAL, positive=True)
    logs = np.log(x)
    mu = float(logs.mean())
    # all-equal values: sigma is exactly 0 (the mean of equal logs can round off by an ulp, which would
    # otherwise give sigma ≈ 1e-16 and a meaningless R² and likelihood)
    sigma = 0.0 if np.all(logs == logs[0]) else float(np.sqrt(np.mean((logs - mu) ** 2)))
    if sigma == 0.0:
        mu = float(logs[0])
        return LognormalFit(mu=mu, sigma=0.0, r2=math.nan, n=x.size, log_likelihood=math.inf)
    (_, _), (_, _, r) = stats.probplot(logs, dist="norm", fit=True)
    log_likelihood = float(stats.lognorm.logpdf(x, sigma, loc=0, scale=math.exp(mu)).sum())
    return LognormalFit(mu=mu, sigma=sigma, r2=float(r**2), n=x.size, log_likelihood=log_likelihood)


@dataclass(frozen=True)
class ModeSplit:
    """The modes of a log-spectrum (Brandão et al. 2023, 5.2 and 8.7).

    Attributes
    ----------
    threshold : float
        Split value in the original (not log) scale: the first mode holds ``values < threshold``,
        the second ``values ≥ threshold``; NaN when the data are unimodal.
    n_modes : int
        1 or 2.
    groups : tuple of ndarray
        The values of each mode (one array when unimodal), ascending in location.
    fits : tuple of LognormalFit
        A lognormal fitted to each group (None for a group with fewer than 3 values).
    bin_edges, counts : ndarray
        The histogram of ``log values`` the split was found on (edges in log scale).

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec import fit
    >>> rng = np.random.default_rng(0)
    >>> sigma = np.exp(np.concatenate([rng.normal(-4, 0.5, 2000), rng.normal(0, 0.5, 2000)]))
    >>> split = fit.split_modes(sigma)
    >>> split.n_modes, [round(f.mu) for f in split.fits]
    (2, [-4, 0])
    """

    threshold: float
    n_modes: int
    groups: tuple[np.ndarray, ...]
    fits: tuple[LognormalFit | None, ...]
    bin_edges: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)

    @property
    def fractions(self) -> tuple[float, ...]:
        """Fraction of the values in each mode."""
        total = sum(g.size for g in self.groups)
        return tuple(g.size / total for g in self.groups) if total else ()

    def to_dataset(self) -> xr.Dataset:
        """The split as Dataset variables along a ``mode`` dimension of length 2 (NaN where absent)."""
        mu = np.full(2, np.nan)
        sigma = np.full(2, np.nan)
        r2 = np.full(2, np.nan)
        fraction = np.full(2, np.nan)
        count = np.zeros(2, dtype=np.int64)
        for i, (group, fit_) in enumerate(zip(self.groups, self.fits)):
            count[i] = group.size
            fraction[i] = self.fractions[i]
            if fit_ is not None:
                mu[i], sigma[i], r2[i] = fit_.mu, fit_.sigma, fit_.r2
        return xr.Dataset(
            {
                "mode_mu": (
                    "mode",
                    mu,
                    {"long_name": "mean of log values in the mode (lognormal fit)", "units": "nat"},
                ),
                "mode_sigma": (
                    "mode",
                    sigma,
                    {"long_name": "std of log values in the mode (lognormal fit)", "units": "nat"},
                ),
                "mode_r2": ("mode", r2, {"long_name": "lognormal probability-plot R^2 of the mode", "units": "1"}),
                "mode_fraction": ("mode", fraction, {"long_name": "fraction of values in the mode", "units": "1"}),
                "mode_count": ("mode", count, {"long_name": "number of values in the mode"}),
                "mode_threshold": ((), self.threshold, {"long_name": "split between the modes (NaN: unimodal)"}),
                "n_modes": ((), self.n_modes, {"long_name": "number of modes found (1 or 2)"}),
            },
            coords={"mode": ("mode", np.array([0, 1]), {"long_name": "mode index, ascending location"})},
        )


def split_modes(
    values,
    bins: int | None = None,
    smooth: int = 3,
    min_prominence: float = 0.1,
) -> ModeSplit:
    """Split a spectrum at the first deepest trough of its log-histogram (Brandão et al. 2023, 5.2, 8.5 l.418).

    The histogram of ``log values`` (``bins`` equal bins; by default ``sqrt(n)`` clipped to
    [8, 60], which keeps unimodal samples of 50 or more values from showing spurious modes) is
    smoothed by a centred moving average of ``smooth`` bins. Its modes are the peaks
    (``scipy.signal.find_peaks`` on the zero-padded counts) whose prominence is at least
    ``min_prominence`` times the highest count. With fewer than two such modes the data are reported
    as unimodal (one group, ``threshold`` NaN). Otherwise the split is at the first (leftmost) bin of
    smallest smoothed count between the two highest modes: values below the centre of that trough bin
    form the first mode, the others the second, and a lognormal is fitted to each group
    (:func:`lognormal`).

    Parameters
    ----------
    values : array_like
        Strictly positive, finite values; at least :data:`MIN_VALUES_SPLIT`.
    bins : int, optional
        Number of histogram bins over ``[min log x, max log x]``; default ``clip(sqrt(n), 8, 60)``.
    smooth : int
        Width (in bins) of the moving average applied before finding modes; 1 disables smoothing.
    min_prominence : float
        Smallest prominence of a mode, as a fraction of the highest smoothed count, in (0, 1].

    Returns
    -------
    ModeSplit

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> values = np.exp(np.concatenate([rng.normal(-3, 0.5, 5000), rng.normal(1, 0.5, 5000)]))
    >>> split = split_modes(values)
    >>> split.n_modes, bool(np.exp(-2.5) < split.threshold < np.exp(0.5))
    (2, True)
    """
    x = _as_values(values, "values", MIN_VALUES_SPLIT, positive=True)
    if bins is None:
        bins = int(np.clip(np.sqrt(x.size), 8, 60))
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 3:
        raise ValueError(f"`bins` must be an integer ≥ 3, but got {bins!r}.")
    if not isinstance(smooth, int) or isinstance(smooth, bool) or smooth < 1:
        raise ValueError(f"`smooth` must be a positive integer (1 = no smoothing), but got {smooth!r}.")
    if not 0 < min_prominence <= 1:
        raise ValueError(f"`min_prominence` must be in (0, 1], but got {min_prominence!r}.")
    logs = np.log(x)
    counts, edges = np.histogram(logs, bins=bins)
    smoothed = np.convolve(counts.astype(np.float64), np.ones(smooth) / smooth, mode="same")
    padded = np.concatenate([[0.0], smoothed, [0.0]])
    peaks, props = signal.find_peaks(padded, prominence=min_prominence * smoothed.max())
    peaks = peaks - 1
    if peaks.size < 2 or np.ptp(logs) == 0:
        return ModeSplit(math.nan, 1, (np.sort(x),), (lognormal(x),), edges, counts)
    top_two = np.sort(peaks[np.argsort(smoothed[peaks], kind="stable")[-2:]])
    lo, hi = int(top_two[0]), int(top_two[1])
    between = smoothed[lo : hi + 1]
    trough = lo + int(np.argmin(between))  # argmin returns the first of equal minima
    threshold_log = 0.5 * (edges[trough] + edges[trough + 1])
    threshold = float(np.exp(threshold_log))
    first, second = np.sort(x[x < threshold]), np.sort(x[x >= threshold])
    fits = tuple(lognormal(g) if g.size >= MIN_VALUES_LOGNORMAL else None for g in (first, second))
    return ModeSplit(threshold, 2, (first, second), fits, edges, counts)


@dataclass(frozen=True)
class PowerLawFit:
    """A continuous power law ``p(x) = (alpha − 1)/x_min · (x/x_min)^(−alpha)`` for ``x ≥ x_min``.

    Attributes
    ----------
    alpha : float
        Maximum-likelihood exponent on the tail (CSN 2009, eq. 3.1).
    alpha_stderr : float
        Its standard error ``(alpha − 1)/sqrt(n_tail)``.
    xmin : float
        Lower bound of the power-law tail, chosen to minimise the KS distance: exactly one of the
        values (or exactly the ``xmin`` given), so the tail is exactly ``values >= xmin``.
    ks_distance : float
        Kolmogorov–Smirnov distance between the tail and the fitted power law.
    n_tail, n : int
        Number of values ``≥ xmin``, and in all.
    log_likelihood : float
        Log-likelihood of the tail under the fit.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec import fit
    >>> u = np.random.default_rng(0).random(20_000)
    >>> values = (1 - u) ** (-1 / 1.5)  # Pareto, alpha = 2.5, x_min = 1
    >>> result = fit.power_law(values)
    >>> bool(abs(result.alpha - 2.5) < 0.1), bool(result.n_tail <= result.n)
    (True, True)
    """

    alpha: float
    alpha_stderr: float
    xmin: float
    ks_distance: float
    n_tail: int
    n: int
    log_likelihood: float


def _power_law_alpha(tail_logs_sum: np.ndarray, n_tail: np.ndarray, log_xmin: np.ndarray) -> np.ndarray:
    return 1.0 + n_tail / (tail_logs_sum - n_tail * log_xmin)


_KS_SUBSAMPLE = 2048
"""Tail points per candidate in the first, bounding pass of the ``x_min`` search (see :func:`power_law`)."""


def _ks_distance(
    logs: np.ndarray, ranks: np.ndarray, buffer: np.ndarray, index: int, log_xmin: float, alpha: float, stride: int
) -> float:
    """KS distance between the tail ``logs[index:]`` (sorted) and the power law, over every ``stride``-th point.

    With ``S_j = (x_j/x_min)^(1−alpha)`` the model's survival function at the tail value of rank
    ``r_j = 0 … m−1``, ``D = max_j max((r_j + 1)/m − P_j, P_j − r_j/m)
    = max(max_j (m S_j + r_j) + 1 − m, m − min_j (m S_j + r_j)) / m``, one fused pass (ties are handled:
    the largest rank of a tied group gives the upper step, the smallest the lower). With ``stride > 1``
    the maximum runs over a subset of the terms, a lower bound on ``D``.
    """
    m = logs.size - index
    work = buffer[: (m + stride - 1) // stride]
    np.multiply(logs[index::stride], 1.0 - alpha, out=work)
    work += math.log(m) - (1.0 - alpha) * log_xmin  # log(m S_j)
    np.exp(work, out=work)
    work += ranks[:m:stride]
    return max(float(work.max()) + 1.0 - m, m - float(work.min())) / m


def power_law(
    values,
    xmin: float | None = None,
    min_tail: int = MIN_VALUES_POWER_LAW,
    max_candidates: int | None = 400,
) -> PowerLawFit:
    r"""Clauset–Shalizi–Newman fit of a continuous power law to the tail of ``values``.

    For each candidate ``x_min`` the exponent is the maximum-likelihood estimate (CSN 2009, eq. 3.1)

    .. math::

        \hat\alpha = 1 + m \Big/ \sum_{x_i \ge x_\min} \log(x_i / x_\min), \qquad
        m = \#\{x_i \ge x_\min\},

    and the Kolmogorov–Smirnov distance ``D = max_x |S(x) − P(x)|`` compares the tail's empirical CDF
    ``S`` with the fit's ``P(x) = 1 − (x/x_min)^(1−alpha)``; the ``x_min`` with the smallest ``D`` is
    kept (CSN 2009, section 3.3), the smallest such ``x_min`` on ties.

    The search is exact over its candidates but cheap: a first pass bounds every candidate's ``D`` from
    below on about 2048 points of its tail, and the exact ``D`` (one vectorised pass over the tail) is
    computed only for candidates whose bound is below the best ``D`` found so far, in the order of their
    bounds. On 10⁵ values the search takes about 20 ms (see the fits page of the documentation).

    The returned ``xmin`` is exactly one of the (float64) values, or exactly the ``xmin`` given, never
    a value recomputed from its logarithm, so the tail is exactly ``values >= fit.xmin`` and
    ``fit.n_tail == (values >= fit.xmin).sum()``.

    Parameters
    ----------
    values : array_like
        Strictly positive, finite values; at least :data:`MIN_VALUES_POWER_LAW`. Converted to float64
        (float32 input exactly, so the fit equals the fit of ``values.astype(np.float64)``).
    xmin : float, optional
        Fix ``x_min`` instead of searching for it; the tail is ``values >= xmin`` (compared in float64).
    min_tail : int
        Fewest values the tail may hold (candidates leaving fewer are skipped).
    max_candidates : int or None
        At most this many candidate ``x_min`` (distinct values, evenly spaced in rank) are tried; None
        tries every distinct value, as CSN 2009 and the ``powerlaw`` package do.

    Returns
    -------
    PowerLawFit

    Raises
    ------
    TypeError
        When ``values`` is not an array of real numbers.
    ValueError
        When ``values`` holds NaN or ±inf (the message gives their number; drop them with
        ``values[np.isfinite(values)]``: they are never dropped silently), values ≤ 0 (drop zeros, e.g.
        zero singular values, with ``values[values > 0]``), fewer than :data:`MIN_VALUES_POWER_LAW`
        values, or when no candidate tail holds two distinct values (e.g. all values equal): the
        exponent is then undefined.

    Examples
    --------
    >>> import numpy as np
    >>> u = np.random.default_rng(0).random(20_000)
    >>> values = (1 - u) ** (-1 / 1.5)   # alpha = 2.5, x_min = 1
    >>> fit = power_law(values)
    >>> bool(abs(fit.alpha - 2.5) < 0.1), fit.xmin in values, bool(fit.n_tail == (values >= fit.xmin).sum())
    (True, True, True)
    """
    x = np.sort(_as_values(values, "values", MIN_VALUES_POWER_LAW, positive=True))
    n = x.size
    if not isinstance(min_tail, int) or isinstance(min_tail, bool) or min_tail < 2:
        raise ValueError(f"`min_tail` must be an integer ≥ 2, but got {min_tail!r}.")
    if max_candidates is not None and (
        not isinstance(max_candidates, int) or isinstance(max_candidates, bool) or max_candidates < 1
    ):
        raise ValueError(
            f"`max_candidates` must be a positive integer or None (every distinct value), but got {max_candidates!r}."
        )
    logs = np.log(x)
    suffix = np.concatenate([np.cumsum(logs[::-1])[::-1], [0.0]])  # suffix[i] = Σ_{j ≥ i} log x_j
    if xmin is not None:
        if isinstance(xmin, bool) or not isinstance(xmin, (int, float, np.floating, np.integer)):
            raise TypeError(f"`xmin` must be a positive finite number, but got {type(xmin).__name__}.")
        if not np.isfinite(xmin) or xmin <= 0:
            raise ValueError(f"`xmin` must be a positive finite number, but got {xmin!r}.")
        xmin_value = float(xmin)
        start = int(np.searchsorted(x, xmin_value, side="left"))  # x[start:] is exactly x >= xmin
        if n - start < 2:
            raise ValueError(f"`xmin`={xmin!r} leaves {n - start} values in the tail; at least 2 are needed.")
        candidates = np.array([start])
        candidate_logs = np.array([math.log(xmin_value)])
        has_spread = np.array([x[-1] > xmin_value])
    else:
        first_index = np.unique(x, return_index=True)[1]
        first_index = first_index[first_index <= n - min_tail]
        if first_index.size == 0:
            raise ValueError(f"`values` has no candidate x_min leaving at least min_tail={min_tail} values.")
        if max_candidates is not None and first_index.size > max_candidates:
            first_index = first_index[np.unique(np.linspace(0, first_index.size - 1, max_candidates).astype(int))]
        candidates = first_index
        candidate_logs = logs[candidates]
        has_spread = x[-1] > x[candidates]
    m_all = (n - candidates).astype(np.float64)
    spreads = suffix[candidates] - m_all * candidate_logs  # Σ log(x_i / x_min) over each tail
    # a tail whose values all equal x_min has no exponent (decided on the values: the difference of the
    # suffix sums can round to a tiny positive number there)
    valid = has_spread & (spreads > 0)
    best = (math.inf, -1, 0.0, 0.0)
    if valid.any():
        candidates, candidate_logs = candidates[valid], candidate_logs[valid]
        alphas = 1.0 + m_all[valid] / spreads[valid]
        ranks = np.arange(n, dtype=np.float64)
        buffer = np.empty(n, dtype=np.float64)
        # a lower bound on every candidate's D from about _KS_SUBSAMPLE of its tail points (the max over
        # a subset of the terms), then the exact D in the order of those bounds, stopping at the first bound
        # above the best exact D: the same minimiser as the exhaustive search at a fraction of its cost
        strides = np.maximum(1, (n - candidates) // _KS_SUBSAMPLE)
        bounds = np.array(
            [
                _ks_distance(logs, ranks, buffer, int(i), float(lx), float(al), int(st))
                for i, lx, al, st in zip(candidates, candidate_logs, alphas, strides)
            ]
        )
        for j in np.lexsort((candidates, bounds)):
            if bounds[j] > best[0]:
                break
            index = int(candidates[j])
            if strides[j] == 1:
                ks = float(bounds[j])
            else:
                ks = _ks_distance(logs, ranks, buffer, index, float(candidate_logs[j]), float(alphas[j]), 1)
            if (ks, index) < best[:2]:
                best = (ks, index, float(candidate_logs[j]), float(alphas[j]))
    ks, index, log_xmin, alpha = best
    if index < 0:
        raise ValueError(
            "`values` has no candidate x_min whose tail holds two distinct values (all tail values equal "
            f"{x[candidates[0]]!r}); a power-law exponent is undefined. Pass more varied values or a lower `xmin`."
        )
    m = n - index
    tail = logs[index:]
    # the chosen exponent once more from a direct sum (the suffix sums of the search lose digits to
    # cancellation when log x is large and the tail narrow), and its KS distance with it
    spread = float(np.sum(tail - log_xmin))
    alpha = 1.0 + m / spread
    ks = _ks_distance(logs, np.arange(m, dtype=np.float64), np.empty(m), index, log_xmin, alpha, 1)
    log_likelihood = float(m * math.log(alpha - 1.0) - m * log_xmin - alpha * spread)
    return PowerLawFit(
        alpha=alpha,
        alpha_stderr=(alpha - 1.0) / math.sqrt(m),
        xmin=xmin_value if xmin is not None else float(x[index]),
        ks_distance=ks,
        n_tail=int(m),
        n=int(n),
        log_likelihood=log_likelihood,
    )


@dataclass(frozen=True)
class LikelihoodRatioTest:
    """Vuong's test of a lognormal against a power law on the tail ``x ≥ xmin``.

    Attributes
    ----------
    log_likelihood_ratio : float
        ``R = Σ_i [log p_lognormal(x_i) − log p_power_law(x_i)]`` over the tail; positive favours the
        lognormal, negative the power law.
    normalized_ratio : float
        ``R / (sqrt(n) · s)``, ``s`` the standard deviation of the pointwise differences.
    p_value : float
        Two-sided p-value ``erfc(|R| / sqrt(2 n s²))`` (CSN 2009, eq. 5.3): small values mean the sign
        of ``R`` is significant; large values mean the data cannot tell the two apart.
    favoured : str
        ``"lognormal"``, ``"power_law"``, or ``"neither"`` when ``p_value > significance``.
    power_law : PowerLawFit
        The power-law fit (defines the tail).
    lognormal_mu, lognormal_sigma : float
        Parameters of the lognormal truncated to ``x ≥ xmin``, fitted by maximum likelihood on the tail.
    n_tail : int
        Number of values in the tail, ``(values >= power_law.xmin).sum()``.
    lognormal_at_bound : bool
        True when the lognormal optimum lies on the documented bound ``sigma ≤ SIGMA_MAX_FACTOR ·
        std(log tail)``: the tail is then as close to a power law as a lognormal can come in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec import fit
    >>> values = np.exp(np.random.default_rng(0).normal(0.0, 1.0, 5000))  # lognormal data
    >>> test = fit.compare_lognormal_power_law(values)
    >>> test.favoured, bool(test.p_value < 0.05)
    ('lognormal', True)
    """

    log_likelihood_ratio: float
    normalized_ratio: float
    p_value: float
    favoured: str
    power_law: PowerLawFit
    lognormal_mu: float
    lognormal_sigma: float
    n_tail: int = 0
    lognormal_at_bound: bool = False


SIGMA_MAX_FACTOR = 1000.0
"""Upper bound on the truncated lognormal's ``sigma``, in units of the standard deviation of ``log tail``.

On a tail that looks like a power law the lognormal likelihood keeps rising as ``sigma → ∞`` (the
power law is a limit of truncated lognormals, CSN 2009, 5.1); beyond this bound the two differ by
less than about ``1e-6`` nat per value, close to float64 rounding of the pointwise differences."""
SIGMA_MIN_FACTOR = 1e-3
"""Lower bound on the truncated lognormal's ``sigma``, in units of the standard deviation of ``log tail``.

It never binds: truncation only lowers the variance, so the maximum-likelihood ``sigma`` is at least
``std(log tail)``."""


def _log_ndtr_plus_half_square(t: np.ndarray) -> np.ndarray:
    """``log Φ(t) + t²/2``, stable for all ``t`` (``erfcx`` for ``t < 0``, where both terms are large)."""
    t = np.asarray(t, dtype=np.float64)
    negative = t < 0
    out = np.empty_like(t)
    out[negative] = np.log(0.5 * special.erfcx(-t[negative] / math.sqrt(2.0)))
    out[~negative] = special.log_ndtr(t[~negative]) + 0.5 * t[~negative] ** 2
    return out


_CF_FROM = 3.0
"""Below ``t = −_CF_FROM`` the truncated-normal moments come from the Laplace continued fraction."""
_CF_TERMS = 100
"""Depth of the backward continued-fraction evaluation (converged to float64 for ``x ≥ 3``)."""


def _truncated_normal_moments(t: float) -> tuple[float, float]:
    """``(r, v)``: mean above and variance of a standard normal truncated to ``z ≥ −t``.

    With ``λ = φ(t)/Φ(t)``, the standard normal truncated below at ``−t`` has mean ``λ`` (so its mean
    lies ``r = λ + t`` above the truncation point) and variance ``v = 1 − λ r``. For ``t ≥ −3`` these
    are computed directly (``λ`` from ``erfcx``, no overflow). For ``t = −x < −3`` both ``λ ≈ x`` and
    ``λ r ≈ 1`` cancel catastrophically, so they come from Laplace's continued fraction for the Mills
    ratio ``(1 − Φ(x))/φ(x) = 1/(x + c)``, ``c = 1/(x + d)``, ``d = 2/(x + 3/(x + …))``: then
    ``r = c`` and ``v = c² (d (x + d) − 1)`` exactly, with no cancellation (float64 accuracy, checked
    against mpmath to 1e-15 relative down to ``t = −1e3``).
    """
    if t >= -_CF_FROM:
        if t < 0:
            lam = math.sqrt(2.0 / math.pi) / float(special.erfcx(-t / math.sqrt(2.0)))
        else:
            lam = math.exp(-0.5 * t * t - 0.5 * math.log(2.0 * math.pi) - float(special.log_ndtr(t)))
        r = lam + t
        return r, 1.0 - lam * r
    x = -t
    d = 0.0
    for k in range(_CF_TERMS, 1, -1):
        d = k / (x + d)
    c = 1.0 / (x + d)
    return c, c * c * (d * (x + d) - 1.0)


def _truncated_lognormal_mle(logs: np.ndarray, log_xmin: float) -> tuple[float, float, bool]:
    """Maximum-likelihood ``(mu, sigma)`` of a lognormal truncated to ``x ≥ x_min``, from ``log x``.

    In ``log x`` the model is a normal truncated below at ``log x_min``, an exponential family in
    ``(log x, log² x)``: its log-likelihood is concave in the natural parameters, and its maximum (when
    it exists) is the unique point where the model's mean and variance equal the sample's
    ``mean, sd²`` of ``log x`` (Del Castillo 1994). With ``a0 = (mean − log x_min)/sd`` and the
    standardised truncation ``t = (mu − log x_min)/sigma``, moment matching reads
    ``r(t)/sqrt(v(t)) = a0`` (:func:`_truncated_normal_moments`), an increasing function of ``t`` from
    1 (``t → −∞``: the exponential in ``log x``, i.e. the power law) to ∞, solved by Brent's method;
    then ``sigma = sd · a0 / r(t)`` and ``mu = log x_min + t · sigma``. When ``a0 ≤ 1`` there is no
    maximum (the likelihood rises towards the power law as ``sigma → ∞``), and when the solution has
    ``sigma > SIGMA_MAX_FACTOR · sd``, the maximum under that bound lies on it: ``sigma`` is fixed at
    the bound and ``mu`` solves the remaining (concave, one-dimensional) condition ``r(t) = a0 · sd /
    sigma``. The lower bound never binds (truncation only lowers the variance, so ``sigma ≥ sd``).

    Del Castillo, J. "The singly truncated normal distribution: a non-steep exponential family",
    Annals of the Institute of Statistical Mathematics 46, 57–66 (1994).
    """
    mean = float(logs.mean())
    sd = float(logs.std())
    if not sd > 0:
        raise ValueError("The tail's values are all equal; a truncated lognormal cannot be fitted.")
    a0 = (mean - log_xmin) / sd
    sigma_max = SIGMA_MAX_FACTOR  # in units of sd
    # t is of order 1 (or large and negative near the power-law limit, where rtol takes over)
    tolerances = {"xtol": 1e-15, "rtol": 4 * np.finfo(np.float64).eps, "maxiter": 500}

    def ratio_gap(t: float) -> float:
        r, v = _truncated_normal_moments(t)
        return r / math.sqrt(v) - a0

    at_bound = True
    if a0 > 1.0 and ratio_gap(-sigma_max) < 0.0:
        # r/sqrt(v) > t for t > 0, so t = a0 brackets the root from above; σ' = a0/r ≥ x for t = −x
        t = optimize.brentq(ratio_gap, -sigma_max, max(a0, 1.0), **tolerances)
        scale = a0 / _truncated_normal_moments(t)[0]
        at_bound = scale > sigma_max
    if at_bound:
        scale = sigma_max
        target = a0 / scale
        # r is increasing (dr/dt = v > 0), r(t) > max(t, 0) and r(−x) < 1/x: the bracket holds the root
        t = optimize.brentq(
            lambda t_: _truncated_normal_moments(t_)[0] - target, -(2.0 / target + 10.0), target + 1.0, **tolerances
        )
    sigma = sd * scale
    return log_xmin + t * sigma, sigma, at_bound


def _truncated_lognormal_logpdf(logs: np.ndarray, log_xmin: float, mu: float, sigma: float) -> np.ndarray:
    """``log[lognorm.pdf(x) / lognorm.sf(x_min)]`` from ``log x``, without cancelling large terms."""
    t = (mu - log_xmin) / sigma
    # -z²/2 - log Φ(t) = -(z² - t²)/2 - [log Φ(t) + t²/2], with z² - t² factored exactly
    z2_minus_t2 = (logs - log_xmin) * (logs + log_xmin - 2.0 * mu) / sigma**2
    g = float(_log_ndtr_plus_half_square(np.array([t]))[0])
    return -0.5 * z2_minus_t2 - g - 0.5 * math.log(2 * math.pi) - math.log(sigma) - logs


def compare_lognormal_power_law(
    values,
    xmin: float | None = None,
    significance: float = 0.1,
    power_law_fit: PowerLawFit | None = None,
) -> LikelihoodRatioTest:
    r"""Log-likelihood ratio test, lognormal versus power law, on the power-law tail (CSN 2009, 5.1).

    Both distributions are normalised on the tail ``values >= x_min`` (exactly; ``x_min`` is a value of
    the data or the one given): the power law of :func:`power_law`, and a lognormal truncated to
    ``x ≥ x_min``,

    .. math::

        p_{LN}(x) = \frac{\varphi((\log x - \mu)/\sigma)}{\sigma x\,\Phi((\mu - \log x_\min)/\sigma)},

    whose ``mu, sigma`` maximise the tail likelihood. In ``log x`` that model is a truncated normal, an
    exponential family, so the maximum is the unique ``(mu, sigma)`` whose truncated mean and variance
    of ``log x`` equal the tail's (Del Castillo 1994); it is found by a one-dimensional root search to
    float64 precision, from the tail's mean and variance of ``log x`` alone, so the fit costs nothing
    per value and the whole test is one vectorised pass over the tail (about 25 ms on 10⁵ values,
    power-law fit included). ``sigma`` is kept at most ``SIGMA_MAX_FACTOR · std(log tail)``: when the
    tail's ``(mean(log x) − log x_min) / std(log x) ≤ 1`` (a power law or heavier) the likelihood has no
    maximum and rises towards the power law as ``sigma → ∞`` (CSN 2009, 5.1), and the fit stops at that
    bound (``lognormal_at_bound``; see :data:`SIGMA_MAX_FACTOR`).

    The test statistic is ``R = Σ_tail [log p_LN(x_i) − log p_PL(x_i)]`` with Vuong's normalisation
    ``R / (sqrt(n) s)``, ``s`` the standard deviation of the pointwise differences, and the two-sided
    p-value ``erfc(|R| / sqrt(2 n s²))`` (CSN 2009, eq. 5.3).

    Del Castillo, J. "The singly truncated normal distribution: a non-steep exponential family",
    Annals of the Institute of Statistical Mathematics 46, 57–66 (1994).

    Parameters
    ----------
    values : array_like
        Strictly positive, finite values (at least :data:`MIN_VALUES_POWER_LAW`); NaN, ±inf and values
        ≤ 0 raise a ValueError giving their number and the fix, as in :func:`power_law`.
    xmin : float, optional
        Fix the tail's lower bound; by default the power-law fit's KS-optimal ``x_min``.
    significance : float
        p-value above which neither distribution is declared favoured, in (0, 1).
    power_law_fit : PowerLawFit, optional
        A fit already computed on ``values`` (skips refitting); it must describe these values
        (its ``n`` and ``n_tail`` are checked).

    Returns
    -------
    LikelihoodRatioTest

    Examples
    --------
    >>> import numpy as np
    >>> values = np.exp(np.random.default_rng(0).normal(0.0, 0.7, 5000))
    >>> test = compare_lognormal_power_law(values, xmin=float(np.quantile(values, 0.3)))
    >>> test.favoured, bool(test.n_tail == (values >= test.power_law.xmin).sum())
    ('lognormal', True)
    """
    x = _as_values(values, "values", MIN_VALUES_POWER_LAW, positive=True)
    if isinstance(significance, bool) or not isinstance(significance, (int, float)) or not 0 < significance < 1:
        raise ValueError(f"`significance` must be a number in (0, 1), but got {significance!r}.")
    if power_law_fit is not None:
        if not isinstance(power_law_fit, PowerLawFit):
            raise TypeError(
                f"`power_law_fit` must be a PowerLawFit from jacspec.fit.power_law, but got "
                f"{type(power_law_fit).__name__}."
            )
        if xmin is not None and float(xmin) != power_law_fit.xmin:
            raise ValueError(
                f"`xmin`={xmin!r} conflicts with `power_law_fit`.xmin={power_law_fit.xmin!r}; pass one of them."
            )
        pl = power_law_fit
    else:
        pl = power_law(x, xmin=xmin)
    tail = x[x >= pl.xmin]
    if power_law_fit is not None and (pl.n != x.size or pl.n_tail != tail.size):
        raise ValueError(
            f"`power_law_fit` was not computed on these values: it has n={pl.n}, n_tail={pl.n_tail}, but "
            f"`values` has {x.size} values of which {tail.size} are ≥ its xmin={pl.xmin!r}. Refit with "
            "jacspec.fit.power_law(values) or leave `power_law_fit` out."
        )
    logs = np.log(tail)
    log_xmin = math.log(pl.xmin)
    log_pl = math.log(pl.alpha - 1.0) - log_xmin - pl.alpha * (logs - log_xmin)
    mu, sigma, at_bound = _truncated_lognormal_mle(logs, log_xmin)
    log_ln = _truncated_lognormal_logpdf(logs, log_xmin, mu, sigma)
    differences = log_ln - log_pl
    ratio = float(differences.sum())
    spread = float(differences.std())
    if spread == 0.0:
        normalized, p_value = 0.0, 1.0
    else:
        normalized = ratio / (math.sqrt(tail.size) * spread)
        p_value = float(special.erfc(abs(ratio) / math.sqrt(2 * tail.size * spread**2)))
    favoured = "neither" if p_value > significance else ("lognormal" if ratio > 0 else "power_law")
    return LikelihoodRatioTest(ratio, normalized, p_value, favoured, pl, mu, sigma, int(tail.size), at_bound)


def attach(ds: xr.Dataset, split: ModeSplit | None) -> xr.Dataset:
    """Return ``ds`` with the variables of ``split.to_dataset()`` merged in (``mode`` dimension).

    ``split=None`` (e.g. too few values to split) attaches the same variables filled with NaN, with
    ``n_modes = 0``, so that results of every step share one schema.

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from jacspec import fit
    >>> rng = np.random.default_rng(0)
    >>> sigma = np.exp(np.concatenate([rng.normal(-4, 0.5, 2000), rng.normal(0, 0.5, 2000)]))
    >>> ds = fit.attach(xr.Dataset(), fit.split_modes(sigma))
    >>> "mode_mu" in ds, ds.sizes["mode"]
    (True, 2)
    """
    if split is None:
        empty = ModeSplit(math.nan, 0, (), (), np.array([]), np.array([])).to_dataset()
        empty["mode_fraction"][:] = np.nan
        return ds.merge(empty, combine_attrs="override")
    if not isinstance(split, ModeSplit):
        raise TypeError(f"`split` must be a ModeSplit from jacspec.fit.split_modes, but got {type(split).__name__}.")
    return ds.merge(split.to_dataset(), combine_attrs="override")
