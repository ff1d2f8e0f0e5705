"""The fits' input policy (issue 14, items 2 and 7): non-finite values raise a ValueError that names
``values``, gives their number and the fix; values ≤ 0 likewise; float32 input is converted exactly."""

import math

import numpy as np
import pytest

from jacspec import fit

FITS = [fit.lognormal, fit.split_modes, fit.power_law, fit.compare_lognormal_power_law]


def _good(n=200, seed=0):
    return np.exp(np.random.default_rng(seed).normal(0.0, 1.0, n))


@pytest.mark.parametrize("function", FITS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "bad, count, detail",
    [
        ([np.nan], 1, "(1 NaN, 0 ±inf)"),
        ([np.inf, -np.inf], 2, "(0 NaN, 2 ±inf)"),
        ([np.nan, np.nan, np.inf], 3, "(2 NaN, 1 ±inf)"),
    ],
)
def test_nonfinite_values_raise_with_count_and_fix(function, bad, count, detail):
    values = _good()
    values[: len(bad)] = bad
    with pytest.raises(ValueError) as info:
        function(values)
    message = str(info.value)
    assert "`values`" in message
    assert f"{count} of {values.size} values are non-finite {detail}" in message
    assert "values[np.isfinite(values)]" in message
    # the fix given in the message works: the finite values fit without error
    function(values[np.isfinite(values)])


@pytest.mark.parametrize("function", FITS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [0.0, -1.0, -np.finfo(np.float64).tiny])
def test_values_at_or_below_zero_raise_with_count_and_fix(function, bad):
    values = _good()
    values[[3, 7]] = bad
    with pytest.raises(ValueError) as info:
        function(values)
    message = str(info.value)
    assert "`values` must be strictly positive" in message
    assert f"2 of {values.size} values are ≤ 0" in message
    assert "values[values > 0]" in message
    function(values[values > 0])


@pytest.mark.parametrize("function", FITS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", ["1, 2, 3", np.array(["a", "b"]), np.ones(60) + 1j, None, {"a": 1}])
def test_values_not_real_numbers_raise_type_error(function, bad):
    with pytest.raises(TypeError, match="`values` must be an array of real numbers"):
        function(bad)


def test_nonfinite_check_comes_before_the_size_check():
    # a short array of NaN is reported as NaN (the cause), not as too short
    with pytest.raises(ValueError, match="non-finite"):
        fit.power_law([np.nan] * 10)


def test_float32_values_fit_exactly_as_their_float64_cast():
    # float32 → float64 conversion is exact: every fit equals the fit of values.astype(np.float64)
    values = (1000.0 * (1.0 - np.random.default_rng(3).random(3000)) ** (-1.0 / 1.5)).astype(np.float32)
    cast = values.astype(np.float64)
    assert fit.power_law(values) == fit.power_law(cast)
    assert fit.lognormal(values) == fit.lognormal(cast)
    a, b = fit.compare_lognormal_power_law(values), fit.compare_lognormal_power_law(cast)
    assert (a.log_likelihood_ratio, a.p_value, a.lognormal_mu, a.lognormal_sigma) == (
        b.log_likelihood_ratio,
        b.p_value,
        b.lognormal_mu,
        b.lognormal_sigma,
    )


def test_float32_rounding_moves_alpha_by_at_most_its_relative_precision():
    # documented tolerance: with the same tail, rounding values to float32 (relative error ≤ 2^-24) moves
    # alpha = 1 + n / Σ log(x/x_min) by at most about 2^-24 · (alpha − 1) · max log-ratio / mean log-ratio
    values = 1.0 + np.random.default_rng(4).pareto(1.5, 5000)
    xmin = 2.0  # exactly representable in both precisions
    exact = fit.power_law(values, xmin=xmin)
    rounded = fit.power_law(values.astype(np.float32), xmin=xmin)
    assert rounded.n_tail == exact.n_tail or abs(rounded.n_tail - exact.n_tail) <= 1
    if rounded.n_tail == exact.n_tail:
        assert rounded.alpha == pytest.approx(exact.alpha, rel=1e-5)
    lognormal32 = fit.lognormal(values.astype(np.float32))
    lognormal64 = fit.lognormal(values)
    assert lognormal32.mu == pytest.approx(lognormal64.mu, abs=1e-6)
    assert lognormal32.sigma == pytest.approx(lognormal64.sigma, rel=1e-6)


def test_constant_values_documented_result():
    # lognormal: sigma 0, r2 NaN, log-likelihood inf (documented); power law: ValueError naming `values`
    result = fit.lognormal(np.full(10, 2.5))
    assert result.sigma == 0.0 and math.isnan(result.r2) and result.log_likelihood == math.inf
    assert result.mu == pytest.approx(math.log(2.5))
    with pytest.raises(ValueError, match="`values` has no candidate x_min whose tail holds two distinct"):
        fit.power_law(np.full(100, 2.5))
    with pytest.raises(ValueError, match="`values` has no candidate"):
        fit.compare_lognormal_power_law(np.full(100, 2.5))
