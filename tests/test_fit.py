import math

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from jacspec import fit


@pytest.mark.parametrize("mu, sigma, n", [(0.0, 1.0, 50), (-2.3, 0.4, 2000), (1.5, 2.0, 10_000)])
def test_lognormal_equals_scipy_fit(mu, sigma, n):
    # reference: scipy.stats.lognorm.fit(values, floc=0) (the paper's fit, 000 8.5) and scipy.stats.probplot
    values = np.exp(np.random.default_rng(n).normal(mu, sigma, n))
    result = fit.lognormal(values)
    shape, loc, scale = stats.lognorm.fit(values, floc=0)
    assert loc == 0
    assert result.sigma == pytest.approx(shape, rel=1e-10)
    assert result.scale == pytest.approx(scale, rel=1e-10)
    (_, _), (_, _, r) = stats.probplot(np.log(values), dist="norm")
    assert result.r2 == pytest.approx(r**2, rel=1e-12)
    assert result.log_likelihood == pytest.approx(stats.lognorm.logpdf(values, shape, 0, scale).sum(), rel=1e-10)
    assert result.n == n


def test_lognormal_r2_separates_lognormal_from_uniform():
    rng = np.random.default_rng(1)
    assert fit.lognormal(np.exp(rng.normal(0, 1, 5000))).r2 > 0.99
    assert fit.lognormal(rng.uniform(1, 100, 5000)).r2 < 0.9


@pytest.mark.parametrize("alpha", [1.8, 2.5, 3.5])
def test_power_law_recovers_alpha_within_five_percent(alpha):
    # ground truth: 20 000 samples by inverse transform x = xmin (1 - u)^(-1/(alpha-1)), xmin = 1
    u = np.random.default_rng(int(alpha * 10)).random(20_000)
    values = (1.0 - u) ** (-1.0 / (alpha - 1.0))
    result = fit.power_law(values)
    assert result.alpha == pytest.approx(alpha, rel=0.05)
    assert result.ks_distance < 0.02
    assert result.n == 20_000 and result.n_tail >= fit.MIN_VALUES_POWER_LAW


def test_power_law_with_lognormal_body_finds_the_tail():
    # power-law tail above xmin = 5 glued to a body below it: x_min is found near 5
    rng = np.random.default_rng(2)
    body = rng.uniform(0.5, 5.0, 5000)
    tail = 5.0 * (1.0 - rng.random(10_000)) ** (-1.0 / 1.5)
    result = fit.power_law(np.concatenate([body, tail]))
    assert result.xmin == pytest.approx(5.0, rel=0.1)
    assert result.alpha == pytest.approx(2.5, rel=0.05)


def test_power_law_fixed_xmin_is_closed_form_mle():
    # CSN eq. 3.1: alpha = 1 + n / sum(log(x / xmin)), by hand
    values = np.random.default_rng(3).pareto(1.7, 500) + 1.0
    result = fit.power_law(values, xmin=2.0)
    tail = values[values >= 2.0]
    assert result.alpha == pytest.approx(1 + tail.size / np.log(tail / 2.0).sum(), rel=1e-12)
    assert result.n_tail == tail.size


def test_likelihood_ratio_favours_lognormal_on_lognormal_data():
    # on a tail holding most of the data the curvature of log p(log x) is unmistakable
    values = np.exp(np.random.default_rng(4).normal(0.3, 0.7, 5000))
    test = fit.compare_lognormal_power_law(values, xmin=float(np.quantile(values, 0.3)))
    assert test.log_likelihood_ratio > 0
    assert test.p_value < 0.05
    assert test.favoured == "lognormal"


def test_likelihood_ratio_matches_direct_computation():
    # reference: the ratio recomputed from scipy's truncated distributions at the fitted parameters,
    # and the p-value from the normal approximation (CSN 2009 eq. 5.3) via scipy.stats.norm
    values = np.exp(np.random.default_rng(5).normal(0.0, 1.0, 3000))
    test = fit.compare_lognormal_power_law(values)
    pl = test.power_law
    tail = values[values >= pl.xmin]
    ln = stats.lognorm(test.lognormal_sigma, 0, math.exp(test.lognormal_mu))
    log_ln = ln.logpdf(tail) - ln.logsf(pl.xmin)
    log_pl = stats.pareto(pl.alpha - 1.0, 0, pl.xmin).logpdf(tail)
    diff = log_ln - log_pl
    assert test.log_likelihood_ratio == pytest.approx(diff.sum(), rel=1e-8)
    z = diff.sum() / (math.sqrt(tail.size) * diff.std())
    assert test.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-8)
    # the truncated lognormal is a likelihood maximum: nudging its parameters lowers the likelihood
    for dmu, dsig in [(0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)]:
        other = stats.lognorm(test.lognormal_sigma + dsig, 0, math.exp(test.lognormal_mu + dmu))
        assert (other.logpdf(tail) - other.logsf(pl.xmin)).sum() <= log_ln.sum() + 1e-9


def test_likelihood_ratio_cannot_reject_power_law_on_power_law_data():
    # a truncated lognormal can mimic a pure power law (CSN 2009, 5.1): the test must not claim lognormal
    values = (1.0 - np.random.default_rng(6).random(5000)) ** (-1.0 / 1.5)
    test = fit.compare_lognormal_power_law(values)
    assert test.favoured in ("power_law", "neither")
    assert test.log_likelihood_ratio < 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_modes_finds_trough_of_two_lognormal_mixture(seed):
    # ground truth: mixture 0.7 logN(-3, 0.5²) + 0.3 logN(1, 0.6²); the density trough in log space
    # lies between the modes, found numerically from the mixture density
    rng = np.random.default_rng(seed)
    logs = np.concatenate([rng.normal(-3, 0.5, 14_000), rng.normal(1, 0.6, 6_000)])
    split = fit.split_modes(np.exp(logs))
    grid = np.linspace(-3, 1, 4001)
    density = 0.7 * stats.norm.pdf(grid, -3, 0.5) + 0.3 * stats.norm.pdf(grid, 1, 0.6)
    trough = grid[np.argmin(density)]
    assert split.n_modes == 2
    assert math.log(split.threshold) == pytest.approx(trough, abs=0.35)
    assert split.fractions[0] == pytest.approx(0.7, abs=0.01)
    assert split.fits[0].mu == pytest.approx(-3, abs=0.05) and split.fits[1].mu == pytest.approx(1, abs=0.05)
    assert split.fits[0].sigma == pytest.approx(0.5, abs=0.05) and split.fits[1].sigma == pytest.approx(0.6, abs=0.05)
    assert split.groups[0].max() < split.threshold <= split.groups[1].min()


def test_split_modes_takes_first_deepest_trough_between_two_highest_modes():
    # three modes: the two highest are at -4 and 0; a small third mode at 4 is ignored
    rng = np.random.default_rng(7)
    logs = np.concatenate([rng.normal(-4, 0.5, 8000), rng.normal(0, 0.5, 8000), rng.normal(4, 0.5, 1500)])
    split = fit.split_modes(np.exp(logs))
    assert split.n_modes == 2
    assert -3.0 < math.log(split.threshold) < -1.0


@pytest.mark.parametrize("n", [50, 500, 20_000])
def test_split_modes_unimodal_is_one_mode(n):
    for seed in range(5):
        split = fit.split_modes(np.exp(np.random.default_rng(seed).normal(0, 1, n)))
        assert split.n_modes == 1
        assert math.isnan(split.threshold)
        assert len(split.groups) == 1 and split.groups[0].size == n


def test_split_to_dataset_and_attach_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    split = fit.split_modes(np.exp(np.concatenate([rng.normal(-3, 0.5, 1000), rng.normal(1, 0.5, 1000)])))
    ds = fit.attach(xr.Dataset({"a": ("sample", np.arange(3.0))}), split)
    assert set(ds["mode_mu"].dims) == {"mode"} and ds.sizes["mode"] == 2
    assert ds["mode_fraction"].sum().item() == pytest.approx(1.0)
    ds.to_netcdf(tmp_path / "s.nc")
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "s.nc"), ds)
    unimodal = fit.split_modes(np.exp(rng.normal(0, 1, 500))).to_dataset()
    assert unimodal["n_modes"].item() == 1 and np.isnan(unimodal["mode_mu"].values[1])


@pytest.mark.parametrize(
    "function, values, match",
    [
        (fit.lognormal, [1.0, 2.0], "at least 3 values"),
        (fit.lognormal, [1.0, 0.0, 2.0], "strictly positive"),
        (fit.lognormal, [1.0, -1.0, 2.0], "strictly positive"),
        (fit.lognormal, [1.0, np.nan, 2.0], "1 of 3 values are non-finite"),
        (fit.split_modes, np.ones(49), "at least 50 values"),
        (fit.power_law, np.ones(49), "at least 50 values"),
        (fit.power_law, np.r_[np.ones(60), -1.0], "strictly positive"),
        (fit.compare_lognormal_power_law, np.ones(10), "at least 50 values"),
    ],
)
def test_bad_values(function, values, match):
    with pytest.raises(ValueError, match=match):
        function(values)


def test_bad_options():
    values = np.exp(np.random.default_rng(0).normal(size=100))
    with pytest.raises(ValueError, match="bins"):
        fit.split_modes(values, bins=2)
    with pytest.raises(ValueError, match="min_prominence"):
        fit.split_modes(values, min_prominence=0)
    with pytest.raises(ValueError, match="xmin"):
        fit.power_law(values, xmin=-1.0)
    with pytest.raises(TypeError, match="ModeSplit"):
        fit.attach(xr.Dataset(), "split")
