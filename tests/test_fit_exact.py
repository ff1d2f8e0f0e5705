"""Fits exact on real data (issue 14, item 6): x_min is a value of the data, tails are exactly
``values >= xmin``, ``n_tail`` as documented, and the truncated lognormal reaches its optimum."""

import math

import numpy as np
import pytest
from scipy import optimize, stats

from jacspec import fit


def _round_trip_breaks(values: np.ndarray) -> np.ndarray:
    """The values v for which exp(log v) != v in float64 (the old x_min = exp(log x_min) bug)."""
    return np.array([v for v in values if math.exp(float(np.log(v))) != v])


@pytest.mark.parametrize("seed", range(5))
def test_power_law_xmin_is_a_value_of_the_data_and_n_tail_counts_it(seed):
    # at scale 1000 about half of all float64 values do not survive exp(log v); the old fit returned
    # x_min = exp(log x_min), one ulp off, and n_tail disagreed with (values >= xmin).sum()
    values = 1000.0 * (1.0 - np.random.default_rng(seed).random(3000)) ** (-1.0 / 1.5)
    assert _round_trip_breaks(values[:200]).size > 0  # the data can trigger the bug
    result = fit.power_law(values)
    assert result.xmin in values
    assert result.n_tail == int((values >= result.xmin).sum())
    assert result.n == values.size
    # the exponent is the closed-form MLE on exactly that tail (CSN 2009, eq. 3.1)
    tail = values[values >= result.xmin]
    assert result.alpha == pytest.approx(1.0 + tail.size / np.log(tail / result.xmin).sum(), rel=1e-10)


def test_power_law_given_xmin_is_returned_unchanged():
    values = 1000.0 * (1.0 - np.random.default_rng(7).random(2000)) ** (-1.0 / 1.5)
    candidates = _round_trip_breaks(np.sort(values)[100:400])
    xmin = float(candidates[0])  # a value of the data that exp(log .) does not reproduce
    result = fit.power_law(values, xmin=xmin)
    assert result.xmin == xmin
    assert result.n_tail == int((values >= xmin).sum())


def test_power_law_float32_values_xmin_in_the_data():
    values = (1000.0 * (1.0 - np.random.default_rng(8).random(2000)) ** (-1.0 / 1.5)).astype(np.float32)
    result = fit.power_law(values)
    assert np.float32(result.xmin) == result.xmin  # exactly a float32 value of the data
    assert result.n_tail == int((values >= result.xmin).sum())


@pytest.mark.parametrize("seed", range(3))
def test_comparison_tail_is_exactly_values_at_or_above_xmin(seed):
    # many repeated values equal to x_min: the old comparison dropped all of them when x_min rounded up
    rng = np.random.default_rng(seed)
    tail = 1000.0 * (1.0 - rng.random(2000)) ** (-1.0 / 1.5)
    xmin = float(_round_trip_breaks(np.sort(tail)[:100])[0])
    values = np.concatenate([rng.uniform(1.0, xmin, 500), np.full(40, xmin), tail[tail > xmin]])
    test = fit.compare_lognormal_power_law(values, xmin=xmin)
    expected_tail = values[values >= xmin]
    assert test.power_law.xmin == xmin
    assert test.power_law.n_tail == expected_tail.size
    assert test.n_tail == expected_tail.size
    # the ratio is recomputed from scipy's truncated distributions on the exact tail (the lognormal in
    # log space, scipy.stats.norm, which stays finite where the optimum lies far out, mu << log x_min)
    log_ln = _slow_truncated_lognormal_logpdf(test.lognormal_mu, test.lognormal_sigma, expected_tail, xmin)
    log_pl = stats.pareto(test.power_law.alpha - 1.0, 0, xmin).logpdf(expected_tail)
    assert test.log_likelihood_ratio == pytest.approx((log_ln - log_pl).sum(), rel=1e-6, abs=1e-6)


def test_comparison_refuses_a_power_law_fit_of_other_values():
    values = (1.0 - np.random.default_rng(9).random(1000)) ** (-1.0 / 1.5)
    other = fit.power_law(values[:500])
    with pytest.raises(ValueError, match="power_law_fit"):
        fit.compare_lognormal_power_law(values, power_law_fit=other)


def _slow_truncated_lognormal_logpdf(mu, sigma, tail, xmin):
    # the obvious reference: the lognormal density (normal density of log x, Jacobian 1/x) renormalised
    # by its survival function at x_min, all from scipy.stats.norm
    logs = np.log(tail)
    return stats.norm.logpdf(logs, mu, sigma) - logs - stats.norm.logsf(math.log(xmin), mu, sigma)


def _slow_truncated_lognormal_nll(theta, tail, xmin):
    return -float(_slow_truncated_lognormal_logpdf(theta[0], math.exp(theta[1]), tail, xmin).sum())


def _reference_optimum(tail, xmin, starts=None, maxiter=20000):
    """Best of Nelder–Mead and Powell from several starts on the slow likelihood (a second optimiser),
    under the documented bounds on sigma (fit.SIGMA_MIN_FACTOR, fit.SIGMA_MAX_FACTOR times std log x)."""
    logs = np.log(tail)
    sd = logs.std()
    bounds = [(None, None), (math.log(fit.SIGMA_MIN_FACTOR * sd), math.log(fit.SIGMA_MAX_FACTOR * sd))]
    if starts is None:
        starts = [
            (logs.mean(), math.log(sd)),
            (math.log(xmin), math.log(2 * sd)),
            (logs.mean() - sd, math.log(1.5 * sd)),
            (np.median(logs), math.log(0.7 * sd)),
        ]
    options = {
        "Nelder-Mead": {"xatol": 1e-10, "fatol": 1e-12, "maxiter": maxiter},
        "Powell": {"xtol": 1e-10, "ftol": 1e-12, "maxiter": maxiter},
    }
    best = None
    for start in starts:
        for method in ("Nelder-Mead", "Powell"):
            res = optimize.minimize(
                _slow_truncated_lognormal_nll,
                np.array(start, dtype=np.float64),
                args=(tail, xmin),
                method=method,
                bounds=bounds,
                options=options[method],
            )
            if best is None or res.fun < best.fun:
                best = res
    return best


@pytest.mark.parametrize(
    "mu, sigma, quantile, seed",
    [(0.0, 1.0, 0.5, 0), (2.0, 0.5, 0.8, 1), (-1.0, 1.5, 0.3, 2), (0.5, 0.8, 0.95, 3)],
)
def test_truncated_lognormal_reaches_the_optimum_of_a_second_optimiser(mu, sigma, quantile, seed):
    values = np.exp(np.random.default_rng(seed).normal(mu, sigma, 4000))
    xmin = float(np.quantile(values, quantile))
    test = fit.compare_lognormal_power_law(values, xmin=xmin)
    tail = values[values >= xmin]
    ours = _slow_truncated_lognormal_nll((test.lognormal_mu, math.log(test.lognormal_sigma)), tail, xmin)
    reference = _reference_optimum(tail, xmin)
    # ours is at least as good as the best of 8 runs of two other optimisers (to 1e-6 nats in total)
    assert ours <= reference.fun + 1e-6
    # and at the same place (the optimum is interior and well conditioned on these tails)
    assert test.lognormal_mu == pytest.approx(reference.x[0], abs=1e-3 * max(1.0, abs(reference.x[0])))
    assert test.lognormal_sigma == pytest.approx(math.exp(reference.x[1]), rel=1e-3)


def test_untruncated_lognormal_fit_agrees_with_scipy():
    # x_min below every value: the truncated fit is the plain lognormal MLE, scipy.stats.lognorm.fit(floc=0)
    values = np.exp(np.random.default_rng(10).normal(0.7, 0.6, 3000))
    test = fit.compare_lognormal_power_law(values, xmin=float(values.min()) / 1e6)
    shape, _, scale = stats.lognorm.fit(values, floc=0)
    assert test.lognormal_sigma == pytest.approx(shape, rel=1e-5)
    assert test.lognormal_mu == pytest.approx(math.log(scale), abs=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_truncated_lognormal_at_least_as_good_as_reference_on_power_law_data(seed):
    # on a pure power law the lognormal optimum runs off towards sigma -> inf (CSN 2009, 5.1); ours must
    # still be no worse than the reference optimisers' best
    values = (1.0 - np.random.default_rng(seed).random(1000)) ** (-1.0 / 1.5)
    test = fit.compare_lognormal_power_law(values, xmin=1.0)
    tail = values[values >= 1.0]
    ours = _slow_truncated_lognormal_nll((test.lognormal_mu, math.log(test.lognormal_sigma)), tail, 1.0)
    logs = np.log(tail)
    # starts: the untruncated MLE, a wide one, and one far along the valley towards the power law
    starts = [(logs.mean(), math.log(logs.std())), (-2.0, math.log(3 * logs.std())), (-50.0, math.log(8.0))]
    assert ours <= _reference_optimum(tail, 1.0, starts=starts, maxiter=3000).fun + 1e-6
    assert math.isfinite(test.log_likelihood_ratio) and math.isfinite(test.p_value)


def test_power_law_all_equal_values_is_refused():
    with pytest.raises(ValueError, match="values"):
        fit.power_law(np.full(100, 3.0))


def _exhaustive_power_law(values, candidates, min_tail=fit.MIN_VALUES_POWER_LAW):
    """The obvious CSN search: for every candidate x_min the closed-form alpha (eq. 3.1) and the KS distance
    from scipy.stats.kstest against scipy.stats.pareto; the first candidate of smallest D wins."""
    best = None
    for xmin in candidates:
        tail = values[values >= xmin]
        if tail.size < min_tail or np.all(tail == xmin):
            continue
        alpha = 1.0 + tail.size / np.log(tail / xmin).sum()
        d = stats.kstest(tail, stats.pareto(alpha - 1.0, 0, xmin).cdf).statistic
        if best is None or d < best[0]:
            best = (d, xmin, alpha)
    return best


@pytest.mark.parametrize(
    "kind, seed",
    [("power_law", 0), ("lognormal", 1), ("rounded", 2), ("body_and_tail", 3)],
)
def test_pruned_search_equals_exhaustive_search_over_every_value(kind, seed):
    # max_candidates=None: every distinct value is a candidate, as in CSN 2009 and the powerlaw package
    rng = np.random.default_rng(seed)
    if kind == "power_law":
        values = (1.0 - rng.random(600)) ** (-1.0 / 1.5)
    elif kind == "lognormal":
        values = np.exp(rng.normal(0.0, 1.0, 600))
    elif kind == "rounded":  # many ties
        values = np.round(np.exp(rng.normal(0.0, 1.0, 600)), 1) + 0.1
    else:
        values = np.concatenate([rng.uniform(0.5, 5.0, 300), 5.0 * (1.0 - rng.random(300)) ** (-1.0 / 1.5)])
    result = fit.power_law(values, max_candidates=None)
    d, xmin, alpha = _exhaustive_power_law(values, np.unique(values))
    assert result.xmin == xmin
    assert result.alpha == pytest.approx(alpha, rel=1e-12)
    assert result.ks_distance == pytest.approx(d, abs=1e-12)


def test_pruned_search_equals_exhaustive_search_on_its_candidates():
    # 10 000 values, the default 400 candidates (evenly spaced in rank among the distinct values): the
    # bound-and-prune search returns the exhaustive minimiser over the same candidates
    values = np.exp(np.random.default_rng(4).normal(0.0, 1.2, 10_000))
    result = fit.power_law(values)
    distinct = np.unique(values)
    usable = distinct[: distinct.size - fit.MIN_VALUES_POWER_LAW + 1]
    candidates = usable[np.unique(np.linspace(0, usable.size - 1, 400).astype(int))]
    d, xmin, alpha = _exhaustive_power_law(values, candidates)
    assert result.xmin == xmin
    assert result.alpha == pytest.approx(alpha, rel=1e-12)
    assert result.ks_distance == pytest.approx(d, abs=1e-12)


@pytest.mark.parametrize("t", [3.0, 0.5, 0.0, -1.0, -2.999, -3.0, -3.001, -5.0, -30.0, -1e3, -1e5])
def test_truncated_normal_moments_match_mpmath(t):
    # reference: 50-digit mpmath; λ = φ(t)/Φ(t), mean above the truncation point r = λ + t, variance 1 − λ r
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(60):
        tt = mpmath.mpf(t)
        lam = mpmath.npdf(tt) / mpmath.ncdf(tt)
        r, v = lam + tt, 1 - lam * (lam + tt)
        r, v = float(r), float(v)
    ours_r, ours_v = fit._truncated_normal_moments(t)
    assert ours_r == pytest.approx(r, rel=1e-13)
    assert ours_v == pytest.approx(v, rel=1e-12)


@pytest.mark.parametrize(
    "mu, sigma, quantile, seed",
    [(0.0, 1.0, 0.5, 0), (2.0, 0.5, 0.8, 1), (-1.0, 1.5, 0.3, 2), (0.5, 0.8, 0.9, 3), (0.0, 1.0, 0.0, 4)],
)
def test_truncated_lognormal_matches_the_tail_moments(mu, sigma, quantile, seed):
    # the truncated normal is an exponential family in (log x, log² x): the MLE is where the model's mean and
    # variance of log x equal the sample's (Del Castillo 1994). Reference: scipy.stats.truncnorm's moments
    values = np.exp(np.random.default_rng(seed).normal(mu, sigma, 5000))
    xmin = float(np.quantile(values, quantile))
    test = fit.compare_lognormal_power_law(values, xmin=xmin)
    logs = np.log(values[values >= xmin])
    a = (math.log(xmin) - test.lognormal_mu) / test.lognormal_sigma
    mean, var = stats.truncnorm.stats(a, np.inf, loc=test.lognormal_mu, scale=test.lognormal_sigma, moments="mv")
    assert not test.lognormal_at_bound
    assert float(mean) == pytest.approx(logs.mean(), rel=1e-9, abs=1e-9)
    assert float(var) == pytest.approx(logs.var(), rel=1e-8)


def test_truncated_lognormal_reaches_the_optimum_on_1e5_values():
    # a 10^5-value lognormal sample cut at its 70% quantile: the fit is no worse than Nelder–Mead and Powell
    # (two starts each) on the slow likelihood, and at the same place
    values = np.exp(np.random.default_rng(11).normal(0.3, 0.9, 100_000))
    xmin = float(np.quantile(values, 0.7))
    test = fit.compare_lognormal_power_law(values, xmin=xmin)
    tail = values[values >= xmin]
    logs = np.log(tail)
    ours = _slow_truncated_lognormal_nll((test.lognormal_mu, math.log(test.lognormal_sigma)), tail, xmin)
    starts = [(logs.mean(), math.log(logs.std())), (0.0, 0.0)]
    reference = _reference_optimum(tail, xmin, starts=starts, maxiter=4000)
    assert ours <= reference.fun + 1e-6
    assert test.lognormal_mu == pytest.approx(reference.x[0], abs=1e-3)
    assert test.lognormal_sigma == pytest.approx(math.exp(reference.x[1]), rel=1e-3)
    assert test.n_tail == tail.size


@pytest.mark.parametrize("seed", [101, 105, 106])
def test_truncated_lognormal_on_the_bound_is_the_best_point_of_the_bound(seed):
    # a power-law tail: (mean log x − log x_min)/sd ≈ 1, and for these seeds there is no interior maximum
    # (the seeds were chosen so; about half of all seeds are such). The fit stops on sigma =
    # SIGMA_MAX_FACTOR · sd, and its mu maximises the likelihood along that line (reference:
    # scipy.optimize.minimize_scalar on the slow likelihood)
    values = (1.0 - np.random.default_rng(seed).random(3000)) ** (-1.0 / 1.5)
    test = fit.compare_lognormal_power_law(values, xmin=1.0)
    tail = values[values >= 1.0]
    logs = np.log(tail)
    assert test.lognormal_at_bound
    sigma = test.lognormal_sigma
    assert sigma == pytest.approx(fit.SIGMA_MAX_FACTOR * logs.std(), rel=1e-12)
    # on the bound the optimum lies far out (mu ≈ −sigma²·(alpha − 1)): search a window around ours
    centre = test.lognormal_mu
    res = optimize.minimize_scalar(
        lambda m: -float(_slow_truncated_lognormal_logpdf(m, sigma, tail, 1.0).sum()),
        bounds=(centre - 0.1 * abs(centre), centre + 0.1 * abs(centre)),
        method="bounded",
        options={"xatol": 1e-6 * abs(centre)},
    )
    ours = -float(_slow_truncated_lognormal_logpdf(centre, sigma, tail, 1.0).sum())
    assert ours <= res.fun + 1e-6


@pytest.mark.parametrize("kind", ["power_law", "lognormal"])
def test_comparison_on_1e5_values_matches_the_slow_recomputation(kind):
    # 10^5 values with the searched x_min (issue 14: fast on 10^5 values): the tail is exactly values >= xmin
    # and R, p are the ones recomputed from scipy's distributions on that tail at the fitted parameters
    rng = np.random.default_rng(12)
    values = (1.0 - rng.random(100_000)) ** (-1.0 / 1.5) if kind == "power_law" else np.exp(rng.normal(0, 1, 100_000))
    test = fit.compare_lognormal_power_law(values)
    pl = test.power_law
    tail = values[values >= pl.xmin]
    assert pl.xmin in values and test.n_tail == pl.n_tail == tail.size
    diff = _slow_truncated_lognormal_logpdf(test.lognormal_mu, test.lognormal_sigma, tail, pl.xmin) - stats.pareto(
        pl.alpha - 1.0, 0, pl.xmin
    ).logpdf(tail)
    assert test.log_likelihood_ratio == pytest.approx(diff.sum(), rel=1e-6, abs=1e-6)
    z = diff.sum() / (math.sqrt(tail.size) * diff.std())
    assert test.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-5, abs=1e-9)
