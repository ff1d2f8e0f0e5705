import math

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.special import lambertw
from torch import nn

from jacspec.information import (
    cross_entropy_sum,
    fit_variational_log_alpha,
    ggn_diagonal,
    hessian_diagonal,
    laplace_log_alpha,
)
from jacspec.probes import WeightInformation
from jacspec.probes.weight_information import parameter_layers

from zoo import ZOO, assert_no_hooks, mlp


@pytest.fixture(autouse=True)
def _one_thread():
    # two threads on a busy two-core machine spin against each other: ten times slower than one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _labels(n: int, c: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))


def _flat_function(model: nn.Module, fn):
    """``g(v)`` = fn(model with all parameters taken from the flat vector v), and the flat ŵ."""
    params = dict(model.named_parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])

    def g(v: torch.Tensor):
        sub, i = {}, 0
        for name, p in params.items():
            sub[name] = v[i : i + p.numel()].reshape(p.shape)
            i += p.numel()
        return fn(sub)

    return g, flat


def _reference_hessian_diagonal(model, x, y, loss=cross_entropy_sum) -> torch.Tensor:
    # reference: the full Hessian of the summed loss from torch.autograd.functional.hessian, its diagonal
    g, flat = _flat_function(model, lambda sub: loss(torch.func.functional_call(model, sub, (x,)), y))
    return torch.diagonal(torch.autograd.functional.hessian(g, flat))


def _flat(diagonal: dict, model: nn.Module) -> torch.Tensor:
    return torch.cat([diagonal[name].reshape(-1) for name, _ in model.named_parameters()])


def _softmax_regression(n: int = 30, d: int = 5, c: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(d, c).double()
    x = torch.randn(n, d, dtype=torch.float64)
    y = _labels(n, c)
    return model, x, y


# --------------------------------------------------------------------------------------------------
# Hessian diagonals against independent references
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fast_linear", [True, False], ids=["layerwise", "one-hot"])
def test_exact_hessian_diagonal_matches_autograd_hessian(zoo_case, fast_linear):
    model, x = zoo_case.make(n=6)
    y = _labels(6)
    expected = _reference_hessian_diagonal(model, x, y)
    params = dict(model.named_parameters())
    diagonal = hessian_diagonal(model, x, y, params, method="exact", chunk_size=7, fast_linear=fast_linear)
    torch.testing.assert_close(_flat(diagonal, model), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fast_linear", [True, False], ids=["layerwise", "vmap"])
def test_ggn_diagonal_matches_jacobian_sandwich(zoo_case, fast_linear):
    # reference: G = Σ_n J_nᵀ (diag p_n − p_n p_nᵀ) J_n with J from torch.autograd.functional.jacobian,
    # the softmax cross-entropy's output Hessian written out by hand
    model, x = zoo_case.make(n=5)
    y = _labels(5)
    g, flat = _flat_function(model, lambda sub: torch.func.functional_call(model, sub, (x,)))
    jacobian = torch.autograd.functional.jacobian(g, flat)  # (n, c, P)
    p = torch.softmax(g(flat), dim=1)
    output_hessian = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    expected = torch.einsum("nap,nab,nbp->p", jacobian, output_hessian, jacobian)
    diagonal = ggn_diagonal(model, x, y, dict(model.named_parameters()), chunk_size=2, fast_linear=fast_linear)
    torch.testing.assert_close(_flat(diagonal, model), expected, rtol=1e-9, atol=1e-12)


def test_ggn_equals_hessian_for_softmax_regression():
    # for a model linear in its parameters the Gauss–Newton matrix is the Hessian
    model, x, y = _softmax_regression()
    ggn = ggn_diagonal(model, x, y, dict(model.named_parameters()))
    torch.testing.assert_close(_flat(ggn, model), _reference_hessian_diagonal(model, x, y), rtol=1e-9, atol=1e-12)


def test_hutchinson_converges_to_exact():
    # Hutchinson's estimator is unbiased with variance Σ_{j≠i} H_ij² / n_probes: the relative error
    # falls like 1/√n_probes, below 5 % with 16000 probes on this MLP
    torch.manual_seed(0)
    model = mlp(d_in=4, width=6, c=3, depth=1).double()
    x = torch.randn(20, 4, dtype=torch.float64)
    y = _labels(20)
    params = dict(model.named_parameters())
    exact = _flat(hessian_diagonal(model, x, y, params, method="exact"), model)
    errors = []
    for n_probes in (160, 16000):
        generator = torch.Generator().manual_seed(3)
        estimate = hessian_diagonal(
            model, x, y, params, method="hutchinson", n_probes=n_probes, chunk_size=4000, generator=generator
        )
        errors.append(float((_flat(estimate, model) - exact).norm() / exact.norm()))
    assert errors[1] < 0.05
    assert errors[1] < errors[0] / 5  # ≈ √100 = 10 expected


def test_hutchinson_is_seeded():
    model, x, y = _softmax_regression()
    probe = WeightInformation(hessian="hutchinson", n_probes=10, seed=4)
    a = probe.measure(model, x, y)["weight_information"].item()
    b = probe.measure(model, x, y)["weight_information"].item()
    c = WeightInformation(hessian="hutchinson", n_probes=10, seed=5).measure(model, x, y)["weight_information"].item()
    assert a == b
    assert a != c


# --------------------------------------------------------------------------------------------------
# Laplace closed form
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [1e-3, 0.5])
def test_laplace_softmax_regression_closed_form(beta):
    # reference: ½ Σ log(2 ŵ_i² H_ii / β) with H from torch.autograd.functional.hessian (Achille & Soatto 2018, Prop. 5)
    model, x, y = _softmax_regression()
    h = _reference_hessian_diagonal(model, x, y)
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    expected = float(0.5 * torch.log(2 * w**2 * h / beta).sum())
    probe = WeightInformation(beta=beta, method="laplace", hessian="exact", log_alpha_range=(-60.0, 60.0))
    ds = probe.measure(model, x, y)
    assert int(ds["n_clipped"]) == 0
    assert ds["weight_information"].item() == pytest.approx(expected, abs=1e-8)
    assert ds["weight_information_per_sample"].item() == pytest.approx(expected / 30, abs=1e-10)
    # the weight and the bias of the single layer are the one layer "(root)" (the root module)
    assert list(ds["layer"].values) == ["(root)"]  # the root module, spelled as in every probe


def test_laplace_log_alpha_per_parameter_and_beta_shift():
    model, x, y = _softmax_regression()
    h = _reference_hessian_diagonal(model, x, y)
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    wide = (-60.0, 60.0)  # no clipping: the closed form itself
    ds = WeightInformation(beta=1e-2, keep_log_alpha=True, log_alpha_range=wide).measure(model, x, y)
    np.testing.assert_allclose(ds["log_alpha"].values, torch.log(1e-2 / (2 * w**2 * h)).numpy(), rtol=0, atol=1e-9)
    # I(β) = const − ½ K log β: a tenfold β lowers I by ½ K log 10
    other = WeightInformation(beta=1e-1, log_alpha_range=wide).measure(model, x, y)["weight_information"].item()
    k = w.numel()
    assert ds["weight_information"].item() - other == pytest.approx(0.5 * k * math.log(10), rel=1e-10)


def test_nuclear_norm_bound_holds_at_a_minimum():
    # Prop. 5: at a minimum I(w;D) ≤ ½ K [log ‖ŵ‖² + log tr H − log(K² β/2)] (Jensen); trained by LBFGS
    model, x, y = _softmax_regression(n=40, d=3, c=3)
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=50)

    def closure():
        optimizer.zero_grad()
        loss = cross_entropy_sum(model(x), y) + 1e-2 * sum((p**2).sum() for p in model.parameters())
        loss.backward()
        return loss

    optimizer.step(closure)
    for p in model.parameters():
        p.grad = None
    ds = WeightInformation(beta=1e-3).measure(model, x, y)
    assert int(ds["n_clipped"]) == 0
    assert ds["hessian_trace"].item() == pytest.approx(float(_reference_hessian_diagonal(model, x, y).sum()), rel=1e-9)
    assert ds["weight_information"].item() <= ds["nuclear_norm_bound"].item()


def test_zero_weight_and_no_curvature_are_clipped_to_the_upper_bound():
    log_alpha = laplace_log_alpha(torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, -2.0, 0.5]), beta=1.0)
    assert torch.isinf(log_alpha[:2]).all()
    assert log_alpha[2].item() == pytest.approx(0.0)
    model, x, y = _softmax_regression()
    with torch.no_grad():
        model.weight[0, :2] = 0.0
    ds = WeightInformation(log_alpha_range=(-30.0, 5.0), keep_log_alpha=True).measure(model, x, y)
    assert int(ds["n_clipped"]) == 2
    assert ds["layer_n_clipped"].sel(layer="(root)").item() == 2
    assert ds["log_alpha"].values[:2].tolist() == [5.0, 5.0]
    assert ds["log_alpha_quantiles"].sel(layer="(root)", quantile=1.0).item() == 5.0


# --------------------------------------------------------------------------------------------------
# Variational fit against the analytic minimiser
# --------------------------------------------------------------------------------------------------


def test_variational_matches_analytic_minimiser_for_squared_error():
    # Linear model f(x) = Wx + b, loss Σ_n ‖f(x_n) − y_n‖². With ε_i ~ logN(−α_i/2, α_i), E ε = 1 and
    # Var ε = e^α − 1, so E_ε[loss] = loss(ŵ) + Σ_i (e^{α_i} − 1) c_i with c_ji = Ŵ_ji² Σ_n x_ni² for a weight
    # and c_j = b̂_j² N for a bias. The Lagrangian L(α) = E_ε[loss] − (β/2) Σ log α_i is minimised where
    # c_i e^{α_i} = β / (2 α_i), i.e. α_i e^{α_i} = β / (2 c_i): α_i = W₀(β / (2 c_i)) (Lambert W).
    torch.manual_seed(0)
    n, d, k, beta = 40, 5, 2, 5.0
    x = torch.randn(n, d, dtype=torch.float64)
    model = nn.Linear(d, k).double()
    y = model(x).detach() + 0.1 * torch.randn(n, k, dtype=torch.float64)
    c_weight = model.weight.detach() ** 2 * (x**2).sum(0)
    c_bias = model.bias.detach() ** 2 * n
    expected = torch.cat(
        [torch.from_numpy(lambertw((beta / (2 * c)).numpy()).real).reshape(-1) for c in (c_weight, c_bias)]
    )
    assert 0.1 < expected.min() and expected.max() < 5  # a range where the fit is informative

    def squared_error(output, target):
        return ((output - target) ** 2).sum()

    probe = WeightInformation(
        beta=beta,
        method="variational",
        loss=squared_error,
        n_steps=500,
        n_samples=4,
        init_log_alpha=-3.0,
        keep_log_alpha=True,
    )
    ds = probe.measure(model, x, y)
    fitted = torch.from_numpy(np.exp(ds["log_alpha"].values))
    relative = (fitted / expected - 1).abs()
    assert float(relative.max()) < 0.05
    # the reported Lagrangian: E[loss] at the fit and β·I with I = −½ Σ log α
    assert ds["information_term"].item() == pytest.approx(beta * ds["weight_information"].item(), rel=1e-12)
    assert ds["lagrangian"].item() == pytest.approx(ds["expected_loss"].item() + ds["information_term"].item())
    analytic_loss = float(
        squared_error(model(x).detach(), y) + (torch.expm1(expected) * torch.cat([c_weight.reshape(-1), c_bias])).sum()
    )
    assert ds["expected_loss"].item() == pytest.approx(analytic_loss, rel=0.1)
    assert ds["lagrangian_history"].dims == ("fit_step",)


def test_variational_function_does_not_touch_the_model():
    model, x, y = _softmax_regression()
    before = [p.detach().clone() for p in model.parameters()]
    fit = fit_variational_log_alpha(
        model, x, y, dict(model.named_parameters()), beta=1.0, n_steps=5, generator=torch.Generator().manual_seed(0)
    )
    assert set(fit["log_alpha"]) == {"weight", "bias"}
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)
    assert_no_hooks(model)


# --------------------------------------------------------------------------------------------------
# Per layer, labelled output, non-intrusiveness
# --------------------------------------------------------------------------------------------------

METHODS = [
    {"method": "laplace", "hessian": "exact"},
    {"method": "laplace", "hessian": "hutchinson", "n_probes": 8},
    {"method": "laplace", "hessian": "ggn"},
    {"method": "variational", "n_steps": 5},
]
METHOD_IDS = ["exact", "hutchinson", "ggn", "variational"]


@pytest.mark.parametrize("options", METHODS, ids=METHOD_IDS)
def test_layers_sum_to_total_on_the_zoo(zoo_case, options):
    model, x = zoo_case.make(n=6)
    y = _labels(6)
    ds = WeightInformation(keep_log_alpha=True, **options).measure(model, x, y)
    layers = parameter_layers(model)
    assert list(ds["layer"].values) == list(dict.fromkeys(layers.values()))
    assert ds["layer_weight_information"].sum().item() == pytest.approx(ds["weight_information"].item(), rel=1e-12)
    assert int(ds["layer_n_parameters"].sum()) == sum(p.numel() for p in model.parameters())
    # each layer's value is −½ Σ log α over exactly that module's parameters
    by_layer = ds["log_alpha"].groupby("parameter_layer").sum()
    for layer in ds["layer"].values:
        assert ds["layer_weight_information"].sel(layer=layer).item() == pytest.approx(
            -0.5 * by_layer.sel(parameter_layer=layer).item(), rel=1e-12
        )
    assert int(ds["n_clipped"]) == int(ds["layer_n_clipped"].sum())
    assert_no_hooks(model)


@pytest.mark.parametrize("options", METHODS, ids=METHOD_IDS)
def test_measure_is_non_intrusive(options):
    case = ZOO[0]
    model, x = case.make(n=6)
    y = _labels(6)
    model.train()
    model[0].weight.requires_grad_(True)
    model[2].bias.requires_grad_(False)
    grads = {}
    for name, p in model.named_parameters():
        p.grad = torch.full_like(p, 0.25)
        grads[name] = p.grad
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    rng = torch.get_rng_state()
    np_rng = np.random.get_state()[1].copy()  # noqa: NPY002 (the global state itself)
    WeightInformation(include_frozen=True, **options).measure(model, x, y)
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert np.array_equal(np.random.get_state()[1], np_rng)  # noqa: NPY002
    for name, p in model.named_parameters():
        assert torch.equal(p, weights[name])
        assert p.grad is grads[name] and torch.equal(p.grad, torch.full_like(p, 0.25))
    assert not model[2].bias.requires_grad and model[0].weight.requires_grad
    assert_no_hooks(model)


@pytest.mark.parametrize("options", [{}, {"method": "variational", "n_steps": 3}], ids=["laplace", "variational"])
def test_netcdf_round_trip(tmp_path, options):
    model, x, _ = _softmax_regression()
    model = nn.Sequential(model, nn.Tanh(), nn.Linear(4, 3)).double()
    y = _labels(30, 3)
    ds = WeightInformation(keep_log_alpha=True, **options).measure(model, x, y)
    ds.to_netcdf(tmp_path / "x.nc")
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "x.nc"), ds)
    for variable in ("weight_information", "weight_information_per_sample", "layer_weight_information"):
        assert ds[variable].attrs["units"] == "nats"
        assert ds[variable].attrs["long_name"]


# --------------------------------------------------------------------------------------------------
# Frozen parameters and bad input
# --------------------------------------------------------------------------------------------------


def test_frozen_parameters_are_skipped_and_listed_or_included():
    model = mlp(d_in=4, width=5, c=3, depth=1).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), _labels(8)
    model[0].weight.requires_grad_(False)
    ds = WeightInformation().measure(model, x, y)
    assert ds.attrs["skipped_parameters"] == "0.weight"
    assert ds["layer_n_parameters"].sel(layer="0").item() == 5  # the bias only
    full = WeightInformation(include_frozen=True).measure(model, x, y)
    assert full["layer_n_parameters"].sel(layer="0").item() == 25
    assert full.attrs["skipped_parameters"] == ""
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="include_frozen=True"):
        WeightInformation().measure(model, x, y)


def test_labels_missing():
    model, x, _ = _softmax_regression()
    with pytest.raises(ValueError, match="required"):
        WeightInformation().measure(model, x)
    with pytest.raises(ValueError, match="labels missing"):
        WeightInformation(loss=lambda o, t: o.sum()).measure(model, x)


def test_loss_not_finite_at_the_weights():
    model, x, y = _softmax_regression()
    with torch.no_grad():
        model.bias[0] = math.inf
    with pytest.raises(ValueError, match="not finite"):
        WeightInformation().measure(model, x, y)
    model, x, y = _softmax_regression()
    with pytest.raises(ValueError, match="scalar"):
        WeightInformation(loss=lambda o, t: o).measure(model, x, y)


def test_model_too_large_for_exact_hessian():
    # the convolutions of the zoo CNN go through one Hessian-vector product per entry: refused above the limit
    model, x = ZOO[1].make(n=4)
    y = _labels(4)
    with pytest.raises(ValueError, match="hutchinson") as error:
        WeightInformation(max_exact_parameters=10).measure(model, x, y)
    assert "142 such parameters" in str(error.value)
    # the other diagonals are not limited, nor are nn.Linear layers (their layer-wise form is cheap)
    WeightInformation(max_exact_parameters=10, hessian="ggn").measure(model, x, y)
    model, x, y = _softmax_regression()
    WeightInformation(max_exact_parameters=10).measure(model, x, y)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"beta": 0.0}, "beta"),
        ({"beta": -1.0}, "beta"),
        ({"beta": math.nan}, "beta"),
        ({"method": "mc"}, "method"),
        ({"hessian": "kfac"}, "hessian"),
        ({"n_probes": 0}, "n_probes"),
        ({"n_steps": 0}, "n_steps"),
        ({"lr": 0}, "lr"),
        ({"log_alpha_range": (3, -3)}, "log_alpha_range"),
        ({"init_log_alpha": 50.0}, "init_log_alpha"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        WeightInformation(**options)


def test_loss_must_be_callable():
    with pytest.raises(TypeError, match="loss"):
        WeightInformation(loss="mse")


class _TwiceApplied(nn.Module):
    """One Linear applied twice (weight sharing): the layer-wise GGN path must not be used for it."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.shared(torch.tanh(self.shared(x)))))


def test_ggn_with_a_module_called_twice_matches_vmap_path():
    # reference: the per-example vmap path, itself checked against the Jacobian sandwich above
    torch.manual_seed(0)
    model = _TwiceApplied().double()
    x, y = torch.randn(7, 4, dtype=torch.float64), _labels(7)
    params = dict(model.named_parameters())
    fast = ggn_diagonal(model, x, y, params, fast_linear=True)
    slow = ggn_diagonal(model, x, y, params, fast_linear=False)
    torch.testing.assert_close(_flat(fast, model), _flat(slow, model), rtol=1e-10, atol=1e-13)
    # and the exact diagonal: the shared layer falls back to one-hot products; checked against autograd
    exact = hessian_diagonal(model, x, y, params, method="exact", fast_linear=True)
    torch.testing.assert_close(_flat(exact, model), _reference_hessian_diagonal(model, x, y), rtol=1e-9, atol=1e-12)


def test_variational_irrelevant_weights_go_to_the_upper_bound():
    # a feature that is always 0 leaves the loss independent of its weights: −(β/2) log α pushes their α to
    # the upper bound of log_alpha_range, where they are counted as clipped, with a finite Lagrangian throughout
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x = torch.randn(20, 3, dtype=torch.float64)
    x[:, 0] = 0.0
    y = torch.randn(20, 2, dtype=torch.float64)
    probe = WeightInformation(
        beta=1.0, method="variational", loss=lambda o, t: ((o - t) ** 2).sum(), n_steps=300, lr=0.1, keep_log_alpha=True
    )
    ds = probe.measure(model, x, y)
    weights = ds["log_alpha"].where(ds["parameter_name"] == "weight", drop=True).values.reshape(2, 3)
    assert np.all(weights[:, 0] == 2.0)  # the default upper bound
    assert int(ds["n_clipped"]) >= 2
    assert np.isfinite(ds["lagrangian_history"]).all()
    assert ds.attrs["n_skipped_fit_steps"] == 0


def test_quantiles_match_numpy():
    # reference: numpy.quantile of the emitted log α of each layer (linear interpolation)
    model = mlp(d_in=4, width=5, c=3, depth=1).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), _labels(8)
    ds = WeightInformation(keep_log_alpha=True).measure(model, x, y)
    for layer in ds["layer"].values:
        values = ds["log_alpha"].where(ds["parameter_layer"] == layer, drop=True).values
        np.testing.assert_allclose(
            ds["log_alpha_quantiles"].sel(layer=layer).values, np.quantile(values, ds["quantile"].values)
        )
