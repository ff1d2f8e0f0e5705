"""Property-based tests of the plain functions (issue 14, item 5), with Hypothesis.

Invariances (sample permutation; scale where the quantity is scale-free), bounds (1 ≤ effective rank
≤ rank, CKA in [0, 1], T_k monotone) and agreement with slow, obvious references on random small
inputs. Every test runs a fixed, derandomised set of at most 50 examples of bounded size, so the file
takes well under a minute. Each reference is named in a comment where it is used.

Three properties these tests found broken (effective rank overflowing near the float64 maximum, trace ratios
above 1 on round-off negative eigenvalues, a silent NaN CKA of a constant kernel) are fixed in jacspec.kernels;
their deterministic examples stay below as regression tests.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from scipy import stats  # noqa: E402
from scipy.spatial.distance import pdist  # noqa: E402

from jacspec import fit, fourier, kernels  # noqa: E402
from jacspec.estimators import gaussian_mutual_information, ksg  # noqa: E402

PROPERTY = settings(
    derandomize=True,
    database=None,  # nothing written to .hypothesis/: the examples are fixed anyway
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(PROPERTY, max_examples=15)

seeds = st.integers(min_value=0, max_value=2**32 - 1)
powers_of_two = st.integers(min_value=-20, max_value=20).map(lambda k: 2.0**k)
positive_scales = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


def _sample(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "power_law":
        return (1.0 - rng.random(n)) ** (-1.0 / 1.5)
    if kind == "lognormal":
        return np.exp(rng.normal(0.0, 1.0, n))
    return np.round(np.exp(rng.normal(0.0, 1.0, n)), 1) + 0.1  # many ties


kinds = st.sampled_from(["power_law", "lognormal", "rounded"])
sizes = st.integers(min_value=fit.MIN_VALUES_POWER_LAW, max_value=400)


# --------------------------------------------------------------------------------------------------
# fits
# --------------------------------------------------------------------------------------------------


@PROPERTY
@given(kind=kinds, n=sizes, seed=seeds, scale=powers_of_two)
def test_power_law_scale_equivariance(kind, n, seed, scale):
    # x -> c x with c a power of two (exact in float64): x_min -> c x_min exactly, alpha and D unchanged
    values = _sample(kind, n, seed)
    a, b = fit.power_law(values), fit.power_law(scale * values)
    assert b.xmin == scale * a.xmin
    assert b.n_tail == a.n_tail
    assert b.alpha == pytest.approx(a.alpha, rel=1e-9)
    assert b.ks_distance == pytest.approx(a.ks_distance, abs=1e-9)


@PROPERTY
@given(kind=kinds, n=sizes, seed=seeds, perm_seed=seeds)
def test_power_law_permutation_invariance(kind, n, seed, perm_seed):
    values = _sample(kind, n, seed)
    shuffled = np.random.default_rng(perm_seed).permutation(values)
    assert fit.power_law(shuffled) == fit.power_law(values)  # the values are sorted first: exactly equal


@PROPERTY
@given(kind=kinds, n=sizes, seed=seeds, perm_seed=seeds, scale=positive_scales)
def test_lognormal_permutation_invariance_and_scale_equivariance(kind, n, seed, perm_seed, scale):
    # log(c x) = log c + log x: mu shifts by log c, sigma and R² are unchanged; order does not matter
    values = _sample(kind, n, seed)
    a = fit.lognormal(values)
    b = fit.lognormal(np.random.default_rng(perm_seed).permutation(values))
    c = fit.lognormal(scale * values)
    assert b.mu == pytest.approx(a.mu, abs=1e-12) and b.sigma == pytest.approx(a.sigma, rel=1e-12)
    assert c.mu == pytest.approx(a.mu + math.log(scale), abs=1e-9)
    assert c.sigma == pytest.approx(a.sigma, rel=1e-9)
    assert c.r2 == pytest.approx(a.r2, abs=1e-9)


@FEW
@given(kind=kinds, n=st.integers(100, 400), seed=seeds, perm_seed=seeds, scale=powers_of_two)
def test_likelihood_ratio_permutation_and_scale_invariance(kind, n, seed, perm_seed, scale):
    # R compares two densities of the same tail: the Jacobian 1/c of x -> c x cancels, so R, the
    # normalised ratio and the p-value are scale-free; the lognormal's mu shifts by log c
    values = _sample(kind, n, seed)
    a = fit.compare_lognormal_power_law(values)
    b = fit.compare_lognormal_power_law(np.random.default_rng(perm_seed).permutation(values))
    c = fit.compare_lognormal_power_law(scale * values)
    for other in (b, c):
        assert other.n_tail == a.n_tail
        assert other.log_likelihood_ratio == pytest.approx(a.log_likelihood_ratio, rel=1e-6, abs=1e-6)
        assert other.p_value == pytest.approx(a.p_value, rel=1e-6, abs=1e-9)
        assert other.lognormal_sigma == pytest.approx(a.lognormal_sigma, rel=1e-6)
    assert c.lognormal_mu == pytest.approx(a.lognormal_mu + math.log(scale), rel=1e-6, abs=1e-6)


@PROPERTY
@given(
    mu=st.floats(-3.0, 3.0),
    sigma=st.floats(0.2, 2.0),
    quantile=st.floats(0.0, 0.95),
    n=st.integers(200, 2000),
    seed=seeds,
)
def test_truncated_lognormal_fit_is_the_likelihood_maximum(mu, sigma, quantile, n, seed):
    # the truncated normal in log x is an exponential family: at an interior maximum the model's mean and
    # variance of log x equal the tail's (Del Castillo 1994; reference: scipy.stats.truncnorm.stats); on the
    # bound sigma = SIGMA_MAX_FACTOR · sd, moving mu either way lowers the likelihood (scipy.stats.norm)
    values = np.exp(np.random.default_rng(seed).normal(mu, sigma, n))
    xmin = float(np.quantile(values, quantile))
    test = fit.compare_lognormal_power_law(values, xmin=xmin)
    logs = np.log(values[values >= xmin])
    m, s = test.lognormal_mu, test.lognormal_sigma
    if not test.lognormal_at_bound:
        a = (math.log(xmin) - m) / s
        mean, var = stats.truncnorm.stats(a, np.inf, loc=m, scale=s, moments="mv")
        assert float(mean) == pytest.approx(logs.mean(), rel=1e-8, abs=1e-8)
        assert float(var) == pytest.approx(logs.var(), rel=1e-7)
    else:
        assert s == pytest.approx(fit.SIGMA_MAX_FACTOR * logs.std(), rel=1e-12)

        def log_likelihood(mu_):
            return float((stats.norm.logpdf(logs, mu_, s) - stats.norm.logsf(math.log(xmin), mu_, s)).sum())

        step = 1e-4 * abs(m) + 1e-6
        assert log_likelihood(m) >= max(log_likelihood(m - step), log_likelihood(m + step)) - 1e-7


# --------------------------------------------------------------------------------------------------
# effective rank and trace ratios (Baratin 2021, eqs. 5 and 6)
# --------------------------------------------------------------------------------------------------

spectra = hnp.arrays(
    np.float64,
    st.integers(1, 30),
    elements=st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1e6)),
).filter(lambda lam: (lam > 0).any())


def _slow_effective_rank(lam: np.ndarray) -> float:
    # reference: exp of scipy.stats.entropy of the normalised positive eigenvalues
    lam = np.clip(lam, 0.0, None)
    return float(np.exp(stats.entropy(lam[lam > 0])))


@PROPERTY
@given(lam=spectra, perm_seed=seeds, scale=positive_scales)
def test_effective_rank_bounds_invariances_and_reference(lam, perm_seed, scale):
    erank = kernels.effective_rank(lam)
    rank = int((lam > 0).sum())
    assert 1.0 - 1e-12 <= erank <= rank + 1e-9 * rank
    assert erank == pytest.approx(_slow_effective_rank(lam), rel=1e-10)
    assert kernels.effective_rank(np.random.default_rng(perm_seed).permutation(lam)) == pytest.approx(erank, rel=1e-12)
    assert kernels.effective_rank(scale * lam) == pytest.approx(erank, rel=1e-10)
    # round-off negatives of a PSD spectrum count as zero (documented)
    assert kernels.effective_rank(np.concatenate([lam, [-1e-18 * lam.max()]])) == pytest.approx(erank, rel=1e-12)


@PROPERTY
@given(n=st.integers(2, 12), r=st.integers(1, 12), seed=seeds)
def test_effective_rank_of_gram_spectra_is_at_most_the_rank(n, r, seed):
    # eigenvalues of a rank-r Gram matrix from numpy.linalg.eigvalsh (with its round-off negatives)
    a = np.random.default_rng(seed).normal(size=(n, r))
    lam = np.linalg.eigvalsh(a @ a.T)
    erank = kernels.effective_rank(lam)
    assert 1.0 - 1e-12 <= erank <= min(n, r) * (1 + 1e-9)


@PROPERTY
@given(lam=spectra, perm_seed=seeds, scale=positive_scales)
def test_trace_ratios_monotone_bounded_and_match_slow_reference(lam, perm_seed, scale):
    ks = list(range(1, lam.size + 1))
    t = kernels.trace_ratios(lam, ks)
    # reference: the top-k sums of the spectrum sorted in descending order by Python's sorted()
    ordered = sorted(lam.tolist(), reverse=True)
    slow = np.array([math.fsum(ordered[:k]) / math.fsum(ordered) for k in ks])
    np.testing.assert_allclose(t, slow, rtol=1e-12, atol=1e-15)
    assert np.all(np.diff(t) >= 0.0)  # monotone in k
    assert t[-1] == pytest.approx(1.0, rel=1e-12)
    # the top k eigenvalues hold at least the share k/n of the trace
    assert np.all(t >= np.array(ks) / lam.size - 1e-12)
    np.testing.assert_allclose(kernels.trace_ratios(np.random.default_rng(perm_seed).permutation(lam), ks), t)
    np.testing.assert_allclose(kernels.trace_ratios(scale * lam, ks), t, rtol=1e-10)


def test_effective_rank_scale_invariance_at_the_top_of_float64():
    assert kernels.effective_rank(np.array([1e308, 1e308])) == pytest.approx(2.0)


def test_trace_ratios_monotone_with_round_off_negatives():
    t = kernels.trace_ratios(np.array([1.0, 0.5, -1e-3]), [1, 2, 3])
    assert np.all(np.diff(t) >= 0.0) and np.all(t <= 1.0)


# --------------------------------------------------------------------------------------------------
# kernel alignment and centering (Baratin 2021, eq. 7 and section 4.3.1)
# --------------------------------------------------------------------------------------------------


def _gram(rng: np.random.Generator, r: int, rank: int) -> np.ndarray:
    a = rng.normal(size=(r, rank)) * rng.uniform(0.1, 10.0, size=rank)
    return a @ a.T


def _slow_cka(k: np.ndarray, o: np.ndarray) -> float:
    # reference: the definition with the explicit centering matrix C = I − 11ᵀ/r, in numpy
    c = np.eye(k.shape[0]) - 1.0 / k.shape[0]
    kc, oc = c @ k @ c, c @ o @ c
    return float(np.trace(kc @ oc) / (np.linalg.norm(kc) * np.linalg.norm(oc)))


@PROPERTY
@given(r=st.integers(3, 16), rank_a=st.integers(1, 6), rank_b=st.integers(1, 6), seed=seeds, perm_seed=seeds)
def test_cka_bounds_symmetry_permutation_and_reference(r, rank_a, rank_b, seed, perm_seed):
    rng = np.random.default_rng(seed)
    k, o = _gram(rng, r, rank_a), _gram(rng, r, rank_b)
    # keep clear of kernels whose centred form vanishes (constant kernels: see the xfail below)
    if min(np.linalg.norm(_centred(k)), np.linalg.norm(_centred(o))) < 1e-8 * max(np.linalg.norm(k), np.linalg.norm(o)):
        return
    kt, ot = torch.from_numpy(k), torch.from_numpy(o)
    value = kernels.centered_kernel_alignment(kt, ot)
    assert -1e-12 <= value <= 1.0 + 1e-12  # PSD kernels: Tr[K_c K'_c] ≥ 0, Cauchy–Schwarz
    assert value == pytest.approx(kernels.centered_kernel_alignment(ot, kt), rel=1e-12, abs=1e-14)
    assert value == pytest.approx(_slow_cka(k, o), rel=1e-9, abs=1e-12)
    p = np.random.default_rng(perm_seed).permutation(r)
    permuted = kernels.centered_kernel_alignment(torch.from_numpy(k[p][:, p]), torch.from_numpy(o[p][:, p]))
    assert permuted == pytest.approx(value, rel=1e-10, abs=1e-12)
    assert kernels.centered_kernel_alignment(kt, 3.7 * kt) == pytest.approx(1.0, rel=1e-12)
    # the uncentred alignment is also in [0, 1] for PSD kernels and matches its definition
    slow = float(np.sum(k * o) / (np.linalg.norm(k) * np.linalg.norm(o)))
    assert kernels.alignment(kt, ot) == pytest.approx(slow, rel=1e-10)
    assert -1e-12 <= kernels.alignment(kt, ot) <= 1.0 + 1e-12


def _centred(k: np.ndarray) -> np.ndarray:
    c = np.eye(k.shape[0]) - 1.0 / k.shape[0]
    return c @ k @ c


@PROPERTY
@given(r=st.integers(3, 16), rank=st.integers(1, 6), seed=seeds)
def test_cka_rank_one_vector_path_equals_the_matrix_path(r, rank, seed):
    # CKA(K, v) with a vector stands for CKA(K, v vᵀ) without forming it: the two paths agree
    rng = np.random.default_rng(seed)
    k = _gram(rng, r, rank)
    v = rng.normal(size=r)
    if np.linalg.norm(_centred(k)) < 1e-8 * np.linalg.norm(k) or np.ptp(v) < 1e-8:
        return
    vector = kernels.centered_kernel_alignment(torch.from_numpy(k), torch.from_numpy(v))
    assert vector == pytest.approx(_slow_cka(k, np.outer(v, v)), rel=1e-9, abs=1e-12)
    assert 0.0 - 1e-12 <= vector <= 1.0 + 1e-12


def test_cka_of_a_constant_kernel_is_not_a_silent_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            value = kernels.centered_kernel_alignment(torch.ones(5, 5, dtype=torch.float64), torch.eye(5))
        except (ValueError, Warning):
            return
    assert math.isfinite(value)


@PROPERTY
@given(n=st.integers(1, 6), m=st.integers(1, 6), c=st.integers(1, 3), seed=seeds)
def test_center_features_equals_the_kronecker_definition(n, m, c, seed):
    # reference: (C_n ⊗ I_c) K (C_m ⊗ I_c) with explicit numpy.kron (Baratin 2021, 4.3.1)
    k = np.random.default_rng(seed).normal(size=(n * c, m * c))
    ours = kernels.center_features(torch.from_numpy(k), n, c, m).numpy()
    left = np.kron(np.eye(n) - 1.0 / n, np.eye(c))
    right = np.kron(np.eye(m) - 1.0 / m, np.eye(c))
    np.testing.assert_allclose(ours, left @ k @ right, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# KSG (Kraskov, Stögbauer & Grassberger 2004)
# --------------------------------------------------------------------------------------------------


@FEW
@given(n=st.integers(40, 300), rho=st.floats(-0.9, 0.9), k=st.integers(1, 5), seed=seeds, perm_seed=seeds)
def test_ksg_permutation_symmetry_and_scale_invariance(n, rho, k, seed, perm_seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1))
    z = rho * x + math.sqrt(1 - rho * rho) * rng.normal(size=(n, 1))
    base = ksg(x, z, k=k, noise=0.0)["mutual_information"]
    p = np.random.default_rng(perm_seed).permutation(n)
    # reordering the pairs, swapping x and z, and rescaling a variable (removed by the standardisation)
    # leave the neighbour counts, hence the estimate, unchanged
    assert ksg(x[p], z[p], k=k, noise=0.0)["mutual_information"] == pytest.approx(base, abs=1e-12)
    assert ksg(z, x, k=k, noise=0.0)["mutual_information"] == pytest.approx(base, abs=1e-12)
    assert ksg(4.0 * x - 1.0, z, k=k, noise=0.0)["mutual_information"] == pytest.approx(base, abs=1e-12)
    # the tree and the brute-force neighbour searches agree exactly
    brute = ksg(x, z, k=k, noise=0.0, algorithm="brute")["mutual_information"]
    assert brute == pytest.approx(base, abs=1e-12)


@settings(PROPERTY, max_examples=12)
@given(rho=st.floats(-0.9, 0.9), d=st.integers(1, 2), seed=seeds)
def test_ksg_agrees_with_the_gaussian_closed_form(rho, d, seed):
    # ground truth −d/2 log(1 − ρ²) for componentwise-correlated Gaussians; KSG is nearly unbiased in low
    # dimension, its standard deviation at n = 2000 is about 0.02 nats: tolerance 0.1 nats
    n = 2000
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    z = rho * x + math.sqrt(1 - rho * rho) * rng.normal(size=(n, d))
    estimate = ksg(x, z, k=3)["mutual_information"]
    assert estimate == pytest.approx(gaussian_mutual_information(rho, d), abs=0.1)


# --------------------------------------------------------------------------------------------------
# the DFT normalisation (Baratin 2021, A.1.1) and kernel statistics of FourierSpectrum
# --------------------------------------------------------------------------------------------------


@PROPERTY
@given(n=st.integers(2, 64), seed=seeds)
def test_single_sided_dft_parseval_and_direct_sum(n, seed):
    f = np.random.default_rng(seed).normal(size=n)
    c = fourier.single_sided_coefficients(torch.from_numpy(f)).numpy()
    # reference: the DFT as a direct sum F_k = Σ_n f_n e^{−2πikn/N}, weights 1/N at 0 and Nyquist, 2/N between
    k = np.arange(n // 2 + 1)
    direct = np.exp(-2j * np.pi * np.outer(k, np.arange(n)) / n) @ f
    weights = np.full(k.size, 2.0 / n)
    weights[0] = 1.0 / n
    if n % 2 == 0:
        weights[-1] = 1.0 / n
    np.testing.assert_allclose(c, weights * direct, rtol=1e-10, atol=1e-12)
    # Parseval: mean f² = c_0² + Σ_{0<k<N/2} |c_k|²/2 + |c_{N/2}|² (even N)
    power = np.abs(c) ** 2
    inner = slice(1, n // 2) if n % 2 == 0 else slice(1, n // 2 + 1)
    parseval = power[0] + power[inner].sum() / 2 + (power[-1] if n % 2 == 0 else 0.0)
    assert parseval == pytest.approx(np.mean(f**2), rel=1e-10)
    amplitude = fourier.single_sided_amplitude(torch.from_numpy(f)).numpy()
    np.testing.assert_allclose(amplitude, np.abs(c), rtol=1e-12)


@PROPERTY
@given(n=st.integers(4, 64), freq=st.integers(1, 31), amp=st.floats(0.1, 10.0), phase=st.floats(0.0, 6.28), shift=seeds)
def test_sine_reads_its_amplitude_and_shift_invariance(n, freq, amp, phase, shift):
    freq = 1 + (freq - 1) % max(1, (n - 1) // 2)  # strictly below Nyquist
    z = np.arange(n) / n
    f = amp * np.sin(2 * np.pi * freq * z + phase)
    amplitude = fourier.single_sided_amplitude(torch.from_numpy(f)).numpy()
    assert amplitude[freq] == pytest.approx(amp, rel=1e-10)
    # a circular shift of the grid (the sample order of a periodic function) leaves the magnitudes unchanged
    rolled = fourier.single_sided_amplitude(torch.from_numpy(np.roll(f, shift % n))).numpy()
    np.testing.assert_allclose(rolled, amplitude, rtol=1e-9, atol=1e-12)


@PROPERTY
@given(n=st.sampled_from([8, 10, 16]), seed=seeds)
def test_radial_amplitude_in_one_dimension_is_the_single_sided_amplitude(n, seed):
    f = torch.from_numpy(np.random.default_rng(seed).normal(size=(3, n)))
    amplitude, mean_amplitude, shell = fourier.radial_amplitude(f, 1)
    np.testing.assert_allclose(amplitude.numpy(), fourier.single_sided_amplitude(f).numpy(), rtol=1e-12, atol=1e-14)
    # reference: the number of full-lattice frequencies k in (−N/2, N/2] with |k| = r (1 at 0, 2 between, 1 at N/2)
    expected = np.full(n // 2 + 1, 2.0)
    expected[0] = 1.0
    expected[-1] = 1.0
    np.testing.assert_array_equal(shell.numpy(), expected)
    np.testing.assert_allclose(mean_amplitude.numpy(), amplitude.numpy() / expected, rtol=1e-12)


@PROPERTY
@given(k=st.sampled_from([(0, 3), (3, 0), (3, 4), (4, 3), (0, 5), (6, 8)]), amp=st.floats(0.1, 10.0))
def test_radial_amplitude_reads_a_plane_wave(k, amp):
    # a plane wave A sin(2π k·x) with integer |k| = r reads A in shell r (documented in radial_amplitude)
    n = 24
    g = np.arange(n) / n
    x0, x1 = np.meshgrid(g, g, indexing="ij")
    f = amp * np.sin(2 * np.pi * (k[0] * x0 + k[1] * x1))
    amplitude, _, _ = fourier.radial_amplitude(torch.from_numpy(f), 2)
    r = int(round(math.hypot(*k)))
    assert float(amplitude[r]) == pytest.approx(amp, rel=1e-9)
    others = np.delete(amplitude.numpy(), r)
    assert np.all(others < 1e-9 * amp)


@PROPERTY
@given(n=st.integers(2, 20), d=st.integers(1, 3), seed=seeds, perm_seed=seeds)
def test_rbf_kernel_and_median_bandwidth_match_slow_references(n, d, seed, perm_seed):
    x = np.random.default_rng(seed).normal(size=(n, d))
    sigma = fourier.median_bandwidth(torch.from_numpy(x))
    # reference: numpy.median of scipy.spatial.distance.pdist (the i < j pairs)
    assert sigma == pytest.approx(float(np.median(pdist(x))), rel=1e-10)
    kernel = fourier.rbf_kernel(torch.from_numpy(x), sigma).numpy()
    slow = np.array([[math.exp(-float(np.sum((a - b) ** 2)) / sigma**2) for b in x] for a in x])
    np.testing.assert_allclose(kernel, slow, rtol=1e-9, atol=1e-12)
    # the median bandwidth does not depend on the sample order
    p = np.random.default_rng(perm_seed).permutation(n)
    assert fourier.median_bandwidth(torch.from_numpy(x[p])) == pytest.approx(sigma, rel=1e-12)


@PROPERTY
@given(n=st.integers(3, 20), c=st.integers(1, 3), seed=seeds)
def test_kernel_spectrum_parseval_and_eigenbasis(n, c, seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(n, 2)))
    eigenvalues, eigenvectors, _ = fourier.kernel_eigenbasis(x)
    v = eigenvectors.numpy()
    np.testing.assert_allclose(v.T @ v, np.eye(n), atol=1e-10)  # orthonormal
    assert np.all(np.diff(eigenvalues.numpy()) <= 1e-12)  # descending
    f = rng.normal(size=(n, c))
    spectrum = fourier.kernel_spectrum(torch.from_numpy(f), eigenvectors).numpy()
    # Parseval with the full eigenbasis: Σ_n f̃[n]² = ‖f‖² per output (Baratin 2021, A.1.4)
    np.testing.assert_allclose((spectrum**2).sum(axis=1), (f**2).sum(axis=0), rtol=1e-9)
