import copy
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import xarray as xr
from scipy.spatial.distance import pdist, squareform
from torch import nn

from jacspec import fourier
from jacspec.datasets import embed_curve, flower_curve
from jacspec.probes import FourierSpectrum
from jacspec.probes.fourier_spectrum import expected_input_dim

from zoo import FLOAT_ZOO, ZOO, assert_no_hooks


class SumOfSines(nn.Module):
    """f(z) = c + Σ A_i sin(2π k_i z + φ_i), exactly; the amplitudes are its parameters."""

    def __init__(self, frequencies, amplitudes, phases, offset=0.0):
        super().__init__()
        self.amplitudes = nn.Parameter(torch.as_tensor(amplitudes, dtype=torch.float64))
        self.register_buffer("frequencies", torch.as_tensor(frequencies, dtype=torch.float64))
        self.register_buffer("phases", torch.as_tensor(phases, dtype=torch.float64))
        self.offset = offset

    def latent(self, x):  # the 1-D coordinate z of the input
        return x[:, 0]

    def forward(self, x):
        z = self.latent(x)[:, None]
        return self.offset + (self.amplitudes * torch.sin(2 * math.pi * self.frequencies * z + self.phases)).sum(1)


class SumOfSinesOnCurve(SumOfSines):
    """Recovers z = angle / 2π from a point of a flower curve (possibly embedded by Q), so f∘γ = λ exactly."""

    def __init__(self, *args, basis=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.basis = basis

    def latent(self, x):
        plane = x if self.basis is None else x @ self.basis
        return torch.atan2(plane[:, 1], plane[:, 0]) / (2 * math.pi)


SINE_CASES = [
    # (frequencies, amplitudes, offset): reference = the closed form, amplitude A_i at k_i, |offset| at 0
    ([5, 10, 15, 20, 25, 30, 35, 40, 45, 50], [1.0] * 10, 0.0),
    ([5, 10, 15, 20, 25, 30, 35, 40, 45, 50], [0.1 * i for i in range(1, 11)], 0.0),
    ([1, 37, 99], [2.5, 0.3, 1.7], -0.8),
]


def _phases(n, seed=0):
    return (2 * math.pi * torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)).tolist()


def _check_exact_spectrum(amplitude, frequencies, amplitudes, offset, tol=1e-6):
    expected = np.zeros(amplitude.sizes["frequency"])
    expected[0] = abs(offset)
    for k, a in zip(frequencies, amplitudes):
        expected[k] = a
    np.testing.assert_allclose(amplitude.sel(frequency=frequencies).values, amplitudes, atol=tol, rtol=0)
    np.testing.assert_allclose(amplitude.values, expected, atol=tol, rtol=0)  # ≤ tol elsewhere


@pytest.mark.parametrize("frequencies, amplitudes, offset", SINE_CASES)
def test_sum_of_sines_reads_its_amplitudes(frequencies, amplitudes, offset):
    model = SumOfSines(frequencies, amplitudes, _phases(len(frequencies)), offset)
    ds = FourierSpectrum().measure(model)
    assert ds["amplitude"].dims == ("frequency",)
    np.testing.assert_array_equal(ds["frequency"].values, np.arange(101))
    _check_exact_spectrum(ds["amplitude"], frequencies, amplitudes, offset)


@pytest.mark.parametrize("petals, ambient", [(0, 2), (4, 2), (20, 2), (5, 7)])
def test_sum_of_sines_through_a_curve(petals, ambient):
    # f∘γ = λ exactly (z is recovered from the angle of γ(z)); reference: the closed form again
    frequencies, amplitudes = [3, 20, 60], [1.0, 0.5, 2.0]
    curve = flower_curve(petals) if ambient == 2 else embed_curve(flower_curve(petals), ambient, seed=1)
    basis = None if ambient == 2 else curve.basis
    model = SumOfSinesOnCurve(frequencies, amplitudes, _phases(3, seed=petals), basis=basis)
    probe = FourierSpectrum(curve=curve, n_points=256)
    ds = probe.measure(model)
    _check_exact_spectrum(ds["amplitude"], frequencies, amplitudes, 0.0)
    assert ds.attrs["curve"].startswith(("FlowerCurve", "EmbeddedCurve"))


def test_interval_sets_frequency_units():
    # sin(2π f x) with f = 3 cycles per unit on [−1, 1): bin k = 6 of N = 100, coordinate 3.0
    class Wave(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(1.5, dtype=torch.float64))

        def forward(self, x):
            return self.a * torch.sin(2 * math.pi * 3.0 * x)

    ds = FourierSpectrum(n_points=100, interval=(-1.0, 1.0)).measure(Wave())
    assert ds["frequency"].values[6] == 3.0
    assert ds["amplitude"].sel(frequency=3.0).item() == pytest.approx(1.5, abs=1e-12)
    assert float(ds["amplitude"].drop_sel(frequency=3.0).max()) < 1e-12


def _naive_single_sided(values):
    # reference: the DFT as an explicit O(N²) sum, then the single-sided scaling of the docs
    n = len(values)
    idx = np.arange(n)
    out = []
    for k in range(n // 2 + 1):
        coefficient = np.sum(values * np.exp(-2j * np.pi * k * idx / n))
        scale = 1.0 / n if (k == 0 or 2 * k == n) else 2.0 / n
        out.append(scale * abs(coefficient))
    return np.asarray(out)


@pytest.mark.parametrize("n_points", [200, 51])
def test_single_sided_amplitude_matches_explicit_dft(n_points):
    rng = np.random.default_rng(0)
    values = rng.normal(size=n_points)
    ours = fourier.single_sided_amplitude(torch.from_numpy(values)).numpy()
    np.testing.assert_allclose(ours, _naive_single_sided(values), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in FLOAT_ZOO if c.id != "cnn"], ids=lambda c: c.id)
def test_zoo_curve_spectrum_matches_per_point_loop(case):
    # reference: the model evaluated one point at a time along the curve, explicit DFT per output unit
    model, _ = case.make(n=2)
    curve = embed_curve(flower_curve(3), dim=6, seed=0)
    ds = FourierSpectrum(curve=curve, n_points=64).measure(model)
    z = torch.arange(64, dtype=torch.float64) / 64
    points = curve(z)
    with torch.no_grad():
        values = np.stack([model(points[i : i + 1])[0].numpy() for i in range(64)])
    assert ds["amplitude"].dims == ("output", "frequency")
    for unit in range(values.shape[1]):
        np.testing.assert_allclose(
            ds["amplitude"].sel(output=unit).values, _naive_single_sided(values[:, unit]), rtol=1e-9, atol=1e-12
        )
    assert_no_hooks(model)


def test_model_with_two_outputs_and_output_callable():
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    ds = FourierSpectrum(n_points=40).measure(model)
    first = FourierSpectrum(n_points=40, output=lambda m, x: m(x)[:, 1]).measure(model)
    assert ds["amplitude"].dims == ("output", "frequency")
    np.testing.assert_allclose(ds["amplitude"].sel(output=1).values, first["amplitude"].values, rtol=1e-12)


class PlaneWave(nn.Module):
    def __init__(self, wavevector, amplitude, phase=0.3):
        super().__init__()
        self.amplitude = nn.Parameter(torch.tensor(amplitude, dtype=torch.float64))
        self.register_buffer("k", torch.as_tensor(wavevector, dtype=torch.float64))
        self.phase = phase

    def forward(self, x):
        return self.amplitude * torch.sin(2 * math.pi * x @ self.k + self.phase)


class _Linear2(nn.Module):  # so the probe reads input_dim from a Linear: wrap the plane wave behind one
    def __init__(self, wave, dim):
        super().__init__()
        self.inp = nn.Linear(dim, dim).double()
        with torch.no_grad():
            self.inp.weight.copy_(torch.eye(dim))
            self.inp.bias.zero_()
        self.wave = wave

    def forward(self, x):
        return self.wave(self.inp(x))


@pytest.mark.parametrize("wavevector, shell", [((3, 4), 5), ((0, 7), 7), ((-6, 8), 10), ((2, 1, 2), 3)])
def test_plane_wave_on_multidimensional_grid(wavevector, shell):
    # reference: a plane wave of amplitude A with |k| = r reads A in the shell r (closed form)
    dim = len(wavevector)
    n_points = 32 if dim == 2 else 16
    model = _Linear2(PlaneWave(wavevector, 1.7), dim)
    ds = FourierSpectrum(n_points=n_points).measure(model)
    assert ds.attrs["grid_dim"] == dim
    amplitude = ds["amplitude"].values
    assert amplitude[shell] == pytest.approx(1.7, abs=1e-9)
    assert np.delete(amplitude, shell).max() < 1e-9


def test_radial_spectrum_matches_full_lattice_fftn():
    # reference: numpy's full (not real) n-D FFT, binned by an explicit loop over every lattice frequency
    rng = np.random.default_rng(3)
    n = 12
    values = rng.normal(size=(n, n, n))
    full = np.abs(np.fft.fftn(values)) / n**3
    freq = np.fft.fftfreq(n, 1.0 / n)
    sums, counts = np.zeros(n // 2 + 1), np.zeros(n // 2 + 1)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                r = int(np.round(np.sqrt(freq[i] ** 2 + freq[j] ** 2 + freq[k] ** 2)))
                if r <= n // 2:
                    sums[r] += full[i, j, k]
                    counts[r] += 1
    amplitude, mean_amplitude, shell_size = fourier.radial_amplitude(torch.from_numpy(values), 3)
    np.testing.assert_allclose(amplitude.numpy(), sums, rtol=1e-10)
    np.testing.assert_allclose(mean_amplitude.numpy(), sums / counts, rtol=1e-10)
    np.testing.assert_array_equal(shell_size.numpy(), counts)
    # and in 1-D the shell sum is the single-sided amplitude
    line = torch.from_numpy(rng.normal(size=30))
    np.testing.assert_allclose(fourier.radial_amplitude(line, 1)[0], fourier.single_sided_amplitude(line), rtol=1e-12)


class Lookup(nn.Module):
    """Returns the stored value of the nearest stored sample: f(x_i) = values[i] on the sample."""

    def __init__(self, samples, values):
        super().__init__()
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))
        self.register_buffer("samples", samples)
        self.register_buffer("values", values)

    def forward(self, x):
        return self.scale * self.values[torch.cdist(x, self.samples).argmin(1)]


def _scipy_eigenbasis(x, sigma):
    # reference: scipy's pairwise distances and symmetric eigensolver, sorted by decreasing eigenvalue
    kernel = np.exp(-(squareform(pdist(x)) ** 2) / sigma**2)
    eigenvalues, eigenvectors = scipy.linalg.eigh(kernel)
    return eigenvalues[::-1], eigenvectors[:, ::-1]


@pytest.mark.parametrize("index", [1, 4, 12])
def test_kernel_eigenvector_concentrates_on_its_index(index):
    x = torch.randn(40, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(index))
    sigma = float(np.median(pdist(x.numpy())))
    eigenvalues, eigenvectors = _scipy_eigenbasis(x.numpy(), sigma)
    v = torch.from_numpy(np.ascontiguousarray(eigenvectors[:, index - 1])) * 3.0
    ds = FourierSpectrum(basis="kernel").measure(Lookup(x, v), x)
    assert ds["bandwidth"].item() == pytest.approx(sigma, rel=1e-12)
    np.testing.assert_allclose(ds["eigenvalue"].values, eigenvalues, rtol=1e-8, atol=1e-10)
    amplitude = ds["amplitude"]
    assert amplitude.dims == ("eigen",)
    assert amplitude.sel(eigen=index).item() == pytest.approx(3.0, abs=1e-8)
    assert float(amplitude.drop_sel(eigen=index).max()) < 1e-8


@pytest.mark.parametrize("case", ZOO, ids=lambda c: c.id)
def test_zoo_kernel_spectrum_matches_scipy_projection(case):
    # reference: per-example forward passes projected on scipy's eigenvectors, up to each vector's sign
    model, x = case.make(n=24)
    ds = FourierSpectrum(basis="kernel").measure(model, x)
    flat = x.reshape(24, -1).double().numpy()
    sigma = float(np.median(pdist(flat)))  # the median heuristic, from scipy's distances
    _, eigenvectors = _scipy_eigenbasis(flat, sigma)
    with torch.no_grad():
        values = np.stack([model(x[i : i + 1])[0].numpy() for i in range(24)])
    expected = np.abs(eigenvectors.T @ values).T  # (output, eigen)
    np.testing.assert_allclose(ds["amplitude"].values, expected, rtol=1e-6, atol=1e-9)
    # Parseval: the squared projections add up to the squared norm of the outputs
    np.testing.assert_allclose((ds["amplitude"].values ** 2).sum(1), (values**2).sum(0), rtol=1e-9)


def test_kernel_basis_is_cached_and_max_samples():
    x = torch.randn(30, 3, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    probe = FourierSpectrum(basis="kernel", max_samples=20)
    first = probe.measure(model, x)
    assert len(probe._eigen_cache) == 1 and first.sizes["eigen"] == 20
    xr.testing.assert_identical(probe.measure(model, x), first)
    assert len(probe._eigen_cache) == 1
    probe.reset()
    assert len(probe._eigen_cache) == 0


def test_median_bandwidth_matches_numpy():
    x = torch.randn(25, 4, dtype=torch.float64)
    assert fourier.median_bandwidth(x) == pytest.approx(float(np.median(pdist(x.numpy()))), rel=1e-12)


def test_normalize_by_reports_ratio_to_target():
    frequencies, amplitudes = [5, 10, 50], [1.0, 0.5, 2.0]
    model = SumOfSines(frequencies, amplitudes, _phases(3))
    ds = FourierSpectrum(normalize_by=dict(zip(frequencies, amplitudes))).measure(model)
    assert ds["normalized_amplitude"].dims == ("target_frequency",)
    np.testing.assert_allclose(ds["normalized_amplitude"].values, 1.0, atol=1e-9)
    np.testing.assert_allclose(ds["target_amplitude"].values, amplitudes)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=False).items()}


def test_robustness_leaves_model_bit_identical_and_has_the_right_size():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)).double()
    model.train()
    before = _state(model)
    grads_before = [p.grad for p in model.parameters()]
    rng_before = torch.get_rng_state()
    ds = FourierSpectrum(perturbation=[0.01, 0.1, 0.5], n_draws=4, n_points=64).measure(model)
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical
    assert [p.grad for p in model.parameters()] == grads_before
    assert model.training and torch.equal(torch.get_rng_state(), rng_before)
    assert ds["perturbed_amplitude"].dims == ("frequency", "perturbation")
    assert ds["amplitude_change"].dims == ("frequency", "perturbation")
    # a larger perturbation changes the spectrum more
    change = ds["amplitude_change"].sum("frequency").values
    assert change[0] < change[1] < change[2]
    # same seed, same draws; another seed, other draws
    again = FourierSpectrum(perturbation=[0.01, 0.1, 0.5], n_draws=4, n_points=64).measure(model)
    xr.testing.assert_identical(again, ds)
    other = FourierSpectrum(perturbation=[0.01, 0.1, 0.5], n_draws=4, n_points=64, seed=1).measure(model)
    assert not np.allclose(other["amplitude_change"], ds["amplitude_change"])


def test_robustness_perturbation_norm_is_relative_to_theta():
    # For f = Σ A_i sin(...), parameters θ = A: one draw moves the amplitudes to A + δ‖A‖u with ‖u‖ = 1,
    # so the spectrum at k_i moves by exactly δ‖A‖ in Euclidean norm (closed form; all A_i stay > 0).
    frequencies, amplitudes = [4, 9, 17, 30], [1.0, 2.0, 0.5, 1.5]
    model = SumOfSines(frequencies, amplitudes, _phases(4))
    delta = 0.05
    ds = FourierSpectrum(perturbation=[delta], n_draws=1).measure(model)
    moved = ds["perturbed_amplitude"].sel(frequency=frequencies, perturbation=delta).values
    assert np.linalg.norm(moved - amplitudes) == pytest.approx(delta * np.linalg.norm(amplitudes), rel=1e-9)
    change = ds["amplitude_change"].sel(perturbation=delta)
    np.testing.assert_allclose(change.sel(frequency=frequencies).values, np.abs(moved - amplitudes), atol=1e-9)
    assert float(change.drop_sel(frequency=frequencies).max()) < 1e-9
    ratio = ds["perturbed_amplitude_ratio"].sel(frequency=frequencies, perturbation=delta).values
    np.testing.assert_allclose(ratio, moved / np.asarray(amplitudes), rtol=1e-9)
    # elsewhere the amplitude is at round-off level (≈ 1e-16): no ratio
    assert np.isnan(ds["perturbed_amplitude_ratio"].sel(perturbation=delta).drop_sel(frequency=frequencies)).all()


def test_probe_is_non_intrusive(float_zoo_case):
    model, x = float_zoo_case.make(n=6)
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    probe = FourierSpectrum(basis="kernel", perturbation=[0.1], n_draws=2)
    probe.measure(model, x)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert_no_hooks(model)


@pytest.mark.parametrize(
    "probe, model_dim, with_x",
    [
        (FourierSpectrum(normalize_by={5: 1.0, 7: 2.0}, perturbation=[0.1, 0.2], n_draws=2), 1, False),
        (FourierSpectrum(n_points=16), 2, False),
        (FourierSpectrum(curve=flower_curve(3), n_points=50), 2, False),
        (FourierSpectrum(basis="kernel", perturbation=[0.1], n_draws=2), 5, True),
    ],
    ids=["grid-1d", "grid-2d", "curve", "kernel"],
)
def test_netcdf_round_trip(tmp_path, probe, model_dim, with_x):
    model = nn.Sequential(nn.Linear(model_dim, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    x = torch.randn(12, model_dim, dtype=torch.float64) if with_x else None
    ds = probe.measure(model, x)
    ds.to_netcdf(tmp_path / "x.nc")
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "x.nc"), ds)


def test_expected_input_dim():
    assert expected_input_dim(nn.Sequential(nn.Linear(3, 2)))[0] == 3
    assert expected_input_dim(ZOO[1].build())[0] is None  # a CNN: unknown in advance


# ---------------------------------------------------------------- bad input
def test_grid_dimension_mismatch_names_both_dimensions():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    with pytest.raises(ValueError, match=r"grid has dimension 1 .*expects inputs of dimension 3.*'0'"):
        FourierSpectrum(input_dim=1).measure(model)


def test_model_that_cannot_take_the_grid():
    model, _ = ZOO[1].make()  # CNN: images, not grid points
    with pytest.raises(ValueError, match=r"cannot take the probe's inputs of shape \(200, 1\)"):
        FourierSpectrum().measure(model)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"normalize_by": {100: 1.0}},
        {"normalize_by": {60: 1.0}, "n_points": 100},
        {"normalize_by": {1.0: 1.0}, "n_points": 2},
    ],
)
def test_nyquist(kwargs):
    with pytest.raises(ValueError, match="Nyquist"):
        FourierSpectrum(**kwargs)


def test_frequency_off_the_grid():
    with pytest.raises(ValueError, match="not on the grid's frequency axis"):
        FourierSpectrum(normalize_by={2.5: 1.0})


@pytest.mark.parametrize(
    "curve, match",
    [
        (lambda z: z, r"curve` must return a tensor of shape \(n_points, d\) = \(200, d\)"),
        (lambda z: torch.stack([z, z], 1)[:-1], r"\(200, d\).*shape \(199, 2\)"),
        (lambda z: "points", r"must return a tensor"),
        (lambda z: torch.stack([z, z, z], 1), r"returns points of dimension 3 but the model expects .* 2"),
        (lambda z: z.reshape(3, -1), "`curve` failed"),
    ],
)
def test_curve_with_wrong_shape(curve, match):
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    with pytest.raises(ValueError, match=match):
        FourierSpectrum(curve=curve).measure(model)


@pytest.mark.parametrize("sizes", [[0.0], [0.1, -0.2], [float("nan")]])
def test_perturbation_size_must_be_positive(sizes):
    with pytest.raises(ValueError, match=r"`perturbation` sizes must be finite and > 0"):
        FourierSpectrum(perturbation=sizes)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_points": 1}, ValueError, "n_points"),
        ({"interval": (1.0, 0.0)}, ValueError, "interval"),
        ({"basis": "wavelet"}, ValueError, "basis"),
        ({"bandwidth": 0.0}, ValueError, "bandwidth"),
        ({"curve": 3}, TypeError, "curve"),
        ({"n_draws": 0}, ValueError, "n_draws"),
        ({"normalize_by": {5: 0.0}}, ValueError, "non-zero"),
        ({"normalize_by": [5]}, TypeError, "mapping"),
        ({"basis": "kernel", "normalize_by": {5: 1.0}}, ValueError, "basis='kernel'"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        FourierSpectrum(**kwargs)


def test_kernel_basis_needs_x_and_grid_size_is_bounded():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    with pytest.raises(ValueError, match="pass `x`"):
        FourierSpectrum(basis="kernel").measure(model)
    with pytest.raises(ValueError, match="max_grid_points"):
        FourierSpectrum().measure(model)


def test_needs_input_only_in_the_kernel_basis():
    # the grid probe builds its own input (api.md: FourierSpectrum().measure(model)); the kernel one needs x
    assert FourierSpectrum.needs_input is False
    assert FourierSpectrum().needs_input is False
    assert FourierSpectrum(curve=flower_curve(2)).needs_input is False
    assert FourierSpectrum(basis="kernel").needs_input is True


def test_in_a_monitor_run_file(tmp_path):
    # grid basis: once per step, no split; kernel basis: once per split (needs_input per instance)
    import jacspec

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    x = torch.rand(30, 1, dtype=torch.float64)
    data = {"train": (x[:20], None), "test": (x[20:], None)}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for path, probe in [
        (tmp_path / "grid.nc", FourierSpectrum(n_points=32, normalize_by={2: 1.0})),
        (tmp_path / "kernel.nc", FourierSpectrum(basis="kernel", max_samples=8)),
    ]:
        with jacspec.Monitor(model, [probe], data=data, every=2, path=path, progress=False) as monitor:
            for step in range(5):
                optimizer.zero_grad()
                model(x).pow(2).mean().backward()
                optimizer.step()
                monitor.step(step)
        ds = jacspec.open_run(path)["fourier_spectrum"].ds
        if probe.basis == "grid":
            assert ds["amplitude"].dims == ("step", "frequency")
            assert ds["normalized_amplitude"].dims == ("step", "target_frequency")
        else:
            assert ds["amplitude"].dims == ("step", "split", "eigen")
            assert ds["bandwidth"].dims == ("step", "split")
        assert list(ds["step"].values) == [0, 2, 4]
