"""Fits of spectral distributions: lognormal, mode splitting, power law (paper 000, 4.4, 5.2, 8.5, 8.7).

Plain functions on arrays of positive values (e.g. point-Jacobian singular values), each returning a
small frozen result object:

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
]

MIN_VALUES_LOGNORMAL = 3
"""Fewest values :func:`lognormal` accepts (two parameters, and a probability plot needs three points)."""
MIN_VALUES_SPLIT = 50
"""Fewest values :func:`split_modes` accepts (fewer give no meaningful histogram)."""
MIN_VALUES_POWER_LAW = 50
"""Fewest values :func:`power_law` accepts; also the default fewest values kept in the tail."""


def _as_values(values, name: str, minimum: int, positive: bool) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be an array of real numbers, but got {type(values).__name__}.") from err
    if array.size < minimum:
        raise ValueError(f"`{name}` must hold at least {minimum} values for this fit, but got {array.size}.")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"`{name}` must be finite, but {bad} of {array.size} values are NaN or inf; drop them first.")
    if positive and (array <= 0).any():
        bad = int((array <= 0).sum())
        raise ValueError(
            f"`{name}` must be strictly positive for a lognormal or power-law fit, but {bad} of {array.size} "
            f"values are ≤ 0 (smallest {array.min()!r}); drop zeros (e.g. values[values > 0])."
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
    paper uses (000, 8.5, l.418).

    Parameters
    ----------
    values : array_like
        Strictly positive, finite values; at least :data:`MIN_VALUES_LOGNORMAL`.

    Returns
    -------
    LognormalFit

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
    sigma = float(np.sqrt(np.mean((logs - mu) ** 2)))
    if sigma == 0.0:
        return LognormalFit(mu=mu, sigma=0.0, r2=math.nan, n=x.size, log_likelihood=math.inf)
    (_, _), (_, _, r) = stats.probplot(logs, dist="norm", fit=True)
    log_likelihood = float(stats.lognorm.logpdf(x, sigma, loc=0, scale=math.exp(mu)).sum())
    return LognormalFit(mu=mu, sigma=sigma, r2=float(r**2), n=x.size, log_likelihood=log_likelihood)


@dataclass(frozen=True)
class ModeSplit:
    """The modes of a log-spectrum (paper 000, 5.2 and 8.7).

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
    """Split a spectrum at the first deepest trough of its log-histogram (paper 000, 5.2, 8.5 l.418).

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
        Lower bound of the power-law tail, chosen to minimise the KS distance.
    ks_distance : float
        Kolmogorov–Smirnov distance between the tail and the fitted power law.
    n_tail, n : int
        Number of values ``≥ xmin``, and in all.
    log_likelihood : float
        Log-likelihood of the tail under the fit.
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


def power_law(values, xmin: float | None = None, min_tail: int = MIN_VALUES_POWER_LAW, max_candidates: int = 400):
    """Clauset–Shalizi–Newman fit of a continuous power law to the tail of ``values``.

    For each candidate ``x_min`` the exponent is the maximum-likelihood estimate
    ``alpha = 1 + n / Σ_{x_i ≥ x_min} log(x_i / x_min)`` (CSN 2009, eq. 3.1) and the Kolmogorov–Smirnov
    distance ``D = max_x |S(x) − P(x)|`` compares the tail's empirical CDF with the fit's
    ``P(x) = 1 − (x/x_min)^(1−alpha)``; the ``x_min`` with the smallest ``D`` is kept (CSN 3.3).

    Parameters
    ----------
    values : array_like
        Strictly positive, finite values; at least :data:`MIN_VALUES_POWER_LAW`.
    xmin : float, optional
        Fix ``x_min`` instead of searching for it.
    min_tail : int
        Fewest values the tail may hold (candidates leaving fewer are skipped).
    max_candidates : int
        At most this many candidate ``x_min`` (distinct values, evenly spaced in rank) are tried.

    Returns
    -------
    PowerLawFit

    Examples
    --------
    >>> import numpy as np
    >>> u = np.random.default_rng(0).random(20_000)
    >>> fit = power_law((1 - u) ** (-1 / 1.5))   # alpha = 2.5, x_min = 1
    >>> bool(abs(fit.alpha - 2.5) < 0.1)
    True
    """
    x = np.sort(_as_values(values, "values", MIN_VALUES_POWER_LAW, positive=True))
    n = x.size
    if not isinstance(min_tail, int) or isinstance(min_tail, bool) or min_tail < 2:
        raise ValueError(f"`min_tail` must be an integer ≥ 2, but got {min_tail!r}.")
    logs = np.log(x)
    suffix = np.concatenate([np.cumsum(logs[::-1])[::-1], [0.0]])  # suffix[i] = Σ_{j ≥ i} log x_j
    if xmin is not None:
        if not np.isfinite(xmin) or xmin <= 0:
            raise ValueError(f"`xmin` must be a positive finite number, but got {xmin!r}.")
        start = int(np.searchsorted(x, xmin, side="left"))
        if n - start < 2:
            raise ValueError(f"`xmin`={xmin!r} leaves {n - start} values in the tail; at least 2 are needed.")
        candidates = np.array([start])
        candidate_logs = np.array([math.log(xmin)])
    else:
        first_index = np.unique(x, return_index=True)[1]
        first_index = first_index[first_index <= n - min_tail]
        if first_index.size == 0:
            raise ValueError(f"`values` has no candidate x_min leaving at least min_tail={min_tail} values.")
        if first_index.size > max_candidates:
            first_index = first_index[np.unique(np.linspace(0, first_index.size - 1, max_candidates).astype(int))]
        candidates = first_index
        candidate_logs = logs[candidates]
    best = (math.inf, 0, 0.0, 0.0)
    for index, log_xmin in zip(candidates, candidate_logs):
        m = n - index
        alpha = float(_power_law_alpha(suffix[index], m, log_xmin))
        tail = logs[index:]
        model_cdf = 1.0 - np.exp((1.0 - alpha) * (tail - log_xmin))
        ranks = np.arange(m)
        ks = float(max(np.max(np.abs((ranks + 1) / m - model_cdf)), np.max(np.abs(ranks / m - model_cdf))))
        if ks < best[0]:
            best = (ks, int(index), float(log_xmin), alpha)
    ks, index, log_xmin, alpha = best
    m = n - index
    tail = logs[index:]
    log_likelihood = float(m * math.log(alpha - 1.0) - m * log_xmin - alpha * (tail.sum() - m * log_xmin))
    return PowerLawFit(
        alpha=alpha,
        alpha_stderr=(alpha - 1.0) / math.sqrt(m),
        xmin=float(math.exp(log_xmin)),
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
    """

    log_likelihood_ratio: float
    normalized_ratio: float
    p_value: float
    favoured: str
    power_law: PowerLawFit
    lognormal_mu: float
    lognormal_sigma: float


def compare_lognormal_power_law(
    values,
    xmin: float | None = None,
    significance: float = 0.1,
    power_law_fit: PowerLawFit | None = None,
) -> LikelihoodRatioTest:
    """Log-likelihood ratio test, lognormal versus power law, on the power-law tail (CSN 2009, 5.1).

    Both distributions are normalised on ``x ≥ x_min``: the power law of :func:`power_law`, and a
    lognormal truncated to ``x ≥ x_min`` whose ``mu, sigma`` maximise the tail likelihood
    ``Σ log[lognorm.pdf(x) / lognorm.sf(x_min)]`` (``scipy.optimize.minimize``).

    Parameters
    ----------
    values : array_like
        Strictly positive, finite values (at least :data:`MIN_VALUES_POWER_LAW`).
    xmin : float, optional
        Fix the tail's lower bound; by default the power-law fit's KS-optimal ``x_min``.
    significance : float
        p-value above which neither distribution is declared favoured.
    power_law_fit : PowerLawFit, optional
        A fit already computed on ``values`` (skips refitting).

    Returns
    -------
    LikelihoodRatioTest
    """
    x = _as_values(values, "values", MIN_VALUES_POWER_LAW, positive=True)
    pl = power_law_fit if power_law_fit is not None else power_law(x, xmin=xmin)
    tail = x[x >= pl.xmin]
    logs = np.log(tail)
    log_xmin = math.log(pl.xmin)
    log_pl = math.log(pl.alpha - 1.0) - log_xmin - pl.alpha * (logs - log_xmin)

    def negative_log_likelihood(theta: np.ndarray) -> float:
        mu, log_sigma = theta
        sigma = math.exp(log_sigma)
        logpdf = stats.norm.logpdf(logs, mu, sigma) - logs
        log_sf = stats.norm.logsf(log_xmin, mu, sigma)
        return -float(np.sum(logpdf - log_sf))

    start = np.array([logs.mean(), math.log(max(logs.std(), 1e-3))])
    result = optimize.minimize(
        negative_log_likelihood, start, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000}
    )
    mu, sigma = float(result.x[0]), float(math.exp(result.x[1]))
    log_ln = stats.norm.logpdf(logs, mu, sigma) - logs - stats.norm.logsf(log_xmin, mu, sigma)
    differences = log_ln - log_pl
    ratio = float(differences.sum())
    spread = float(differences.std())
    if spread == 0.0:
        normalized, p_value = 0.0, 1.0
    else:
        normalized = ratio / (math.sqrt(tail.size) * spread)
        p_value = float(special.erfc(abs(ratio) / math.sqrt(2 * tail.size * spread**2)))
    favoured = "neither" if p_value > significance else ("lognormal" if ratio > 0 else "power_law")
    return LikelihoodRatioTest(ratio, normalized, p_value, favoured, pl, mu, sigma)


def attach(ds: xr.Dataset, split: ModeSplit | None) -> xr.Dataset:
    """Return ``ds`` with the variables of ``split.to_dataset()`` merged in (``mode`` dimension).

    ``split=None`` (e.g. too few values to split) attaches the same variables filled with NaN, with
    ``n_modes = 0``, so that results of every step share one schema.
    """
    if split is None:
        empty = ModeSplit(math.nan, 0, (), (), np.array([]), np.array([])).to_dataset()
        empty["mode_fraction"][:] = np.nan
        return ds.merge(empty, combine_attrs="override")
    if not isinstance(split, ModeSplit):
        raise TypeError(f"`split` must be a ModeSplit from jacspec.fit.split_modes, but got {type(split).__name__}.")
    return ds.merge(split.to_dataset(), combine_attrs="override")
