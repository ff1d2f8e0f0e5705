import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from jacspec.probes import PointJacobian
from jacspec.probes.point_jacobian import (
    input_jacobians,
    jacobian_singular_values,
    per_example_singular_values,
    point_jacobian_singular_values,
)

from zoo import ZOO, assert_no_hooks, mlp


def reference_singular_values(model, x, output=None):
    """The paper's method (000, 8.5), written out independently: one autograd.functional.jacobian per
    example, flattened to (c, d), then torch.linalg.svdvals."""
    values = []
    for k in range(x.shape[0]):

        def f(xi):
            out = model(xi.unsqueeze(0)) if output is None else output(model, xi.unsqueeze(0))
            return out[0]

        jac = torch.autograd.functional.jacobian(f, x[k])
        values.append(torch.linalg.svdvals(jac.reshape(jac.shape[0], -1)))
    return torch.stack(values)


@pytest.mark.parametrize("jacobian", ["batched", "vmap"])
@pytest.mark.parametrize("spectrum", ["gram", "svd"])
def test_singular_values_match_per_example_reference(float_zoo_case, jacobian, spectrum):
    # reference: per-example torch.autograd.functional.jacobian + svdvals, float64
    model, x = float_zoo_case.make(n=6)
    expected = reference_singular_values(model, x).numpy()
    ds = PointJacobian(jacobian=jacobian, spectrum=spectrum, chunk_size=4).measure(model, x)
    np.testing.assert_allclose(ds["singular_values"].values, expected, rtol=1e-8, atol=1e-12)
    assert ds["singular_values"].dims == ("sample", "component")
    assert_no_hooks(model)


def test_default_probe_matches_reference_and_summaries(float_zoo_case):
    # reference: svdvals loop above; the summaries are recomputed from it with numpy
    model, x = float_zoo_case.make(n=7)
    expected = reference_singular_values(model, x).numpy()
    ds = PointJacobian().measure(model, x)
    sigma = ds["singular_values"].values
    np.testing.assert_allclose(sigma, expected, rtol=1e-8, atol=1e-12)
    assert np.all(np.diff(sigma, axis=1) <= 0)  # descending
    assert ds["mean_log_singular_value"].item() == pytest.approx(np.log(expected).mean(), rel=1e-8)
    np.testing.assert_allclose(ds["log_singular_value_mean"].values, np.log(expected).mean(axis=1), rtol=1e-8)
    np.testing.assert_allclose(ds["jacobian_frobenius_norm"].values, np.sqrt((expected**2).sum(1)), rtol=1e-8)


def test_two_layer_linear_network_is_singular_values_of_product():
    # closed form: f(x) = W2 (W1 x + b1) + b2 has J = W2 W1 at every example
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(9, 7), nn.Linear(7, 4)).double()
    x = torch.randn(11, 9, dtype=torch.float64)
    expected = torch.linalg.svdvals(model[1].weight @ model[0].weight).detach().numpy()
    ds = PointJacobian().measure(model, x)
    np.testing.assert_allclose(ds["singular_values"].values, np.tile(expected, (11, 1)), rtol=1e-10)


def test_wide_output_uses_input_side_gram():
    # c > d: min(c, d) = d components; compare with the reference on a hidden layer of width 8
    torch.manual_seed(4)
    model = mlp(d_in=3, width=8).double().eval()
    x = torch.randn(5, 3, dtype=torch.float64)

    def hidden(m, inp):
        return m[1](m[0](inp))

    expected = reference_singular_values(model, x, output=hidden).numpy()
    for spectrum in ("gram", "svd"):
        ds = PointJacobian(output=hidden, spectrum=spectrum).measure(model, x)
        assert ds.sizes["component"] == 3
        np.testing.assert_allclose(ds["singular_values"].values, expected, rtol=1e-8, atol=1e-12)


def test_output_callable_probabilities():
    # reference: the loop applied to softmax outputs
    model, x = ZOO[0].make(n=4)

    def probs(m, inp):
        return m(inp).softmax(-1)

    expected = reference_singular_values(model, x, output=probs).numpy()
    ds = PointJacobian(output=probs).measure(model, x)
    # softmax Jacobians have a zero singular value (rows sum to zero): compare absolutely
    np.testing.assert_allclose(ds["singular_values"].values, expected, rtol=1e-8, atol=1e-12)


def test_gram_keeps_small_singular_values_accurate():
    # reference: svdvals in float64 of an ill-conditioned matrix (σ from 1 to 1e-7)
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    v, _ = np.linalg.qr(rng.normal(size=(40, 5)))
    sigma = np.array([1.0, 1e-2, 1e-4, 1e-6, 1e-7])
    jac = torch.as_tensor((u * sigma) @ v.T)[None]
    got = jacobian_singular_values(jac, method="gram")[0].numpy()
    np.testing.assert_allclose(got, sigma, rtol=1e-6)


def test_chunking_and_loop_method_agree():
    # reference: the probe's own per-example loop (paper method) and different chunk sizes agree
    model, x = ZOO[1].make(n=9)
    a, _ = point_jacobian_singular_values(model, x, jacobian="loop")
    b, _ = point_jacobian_singular_values(model, x, chunk_size=2)
    c = per_example_singular_values(model, x)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(b.numpy(), c.numpy(), rtol=1e-8, atol=1e-14)
    jac, out = input_jacobians(model, x)
    assert jac.shape == (9, 3, 64) and out.shape == (9, 3)


def test_float32_model_agrees_with_float64_reference():
    # the default path on a float32 model agrees with the float64 reference to float32 precision
    torch.manual_seed(5)
    model = mlp(d_in=20, width=16, c=5).eval()
    x = torch.randn(8, 20)
    expected = reference_singular_values(model.double(), x.double()).numpy()
    ds = PointJacobian().measure(model.float(), x)
    np.testing.assert_allclose(ds["singular_values"].values, expected, rtol=1e-5)


def test_labels_predictions_and_netcdf_round_trip(tmp_path):
    model, x = ZOO[0].make(n=6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    ds = PointJacobian(fit_modes=True).measure(model, x, y)
    prediction = model(x).argmax(1).numpy()
    np.testing.assert_array_equal(ds["prediction"].values, prediction)
    np.testing.assert_array_equal(ds["correct"].values, (prediction == y.numpy()).astype(np.int8))
    assert ds["n_modes"].item() == 0  # 18 values: too few to split, NaN mode variables
    ds.to_netcdf(tmp_path / "x.nc")
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "x.nc"), ds)
    for name in ("singular_values", "mean_log_singular_value", "log_singular_value_mean"):
        assert ds[name].attrs["long_name"] and "units" in ds[name].attrs


def test_fit_modes_attached_on_enough_values(tmp_path):
    torch.manual_seed(6)
    model = mlp(d_in=10, width=32, c=6).double().eval()
    x = torch.randn(40, 10, dtype=torch.float64)
    ds = PointJacobian(fit_modes=True).measure(model, x)
    assert ds["mode_mu"].dims == ("mode",) and ds.sizes["mode"] == 2
    assert ds["n_modes"].item() in (1, 2)
    assert np.nansum(ds["mode_fraction"].values) == pytest.approx(1.0)
    ds.to_netcdf(tmp_path / "m.nc")
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "m.nc"), ds)


def test_measure_is_non_intrusive():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3)).double()
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    x = torch.randn(5, 6, dtype=torch.float64)
    rng = torch.get_rng_state()
    PointJacobian().measure(model, x)
    assert model.training and model[1].training
    assert not model[0].weight.requires_grad and model[0].bias.requires_grad
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm running stats untouched
    for p, g in zip(model.parameters(), grads):
        assert torch.equal(p.grad, g)
    assert torch.equal(torch.get_rng_state(), rng)
    assert_no_hooks(model)


def test_eval_mode_batchnorm_dropout_examples_are_independent():
    # in eval mode each example's Jacobian does not depend on the rest of the batch
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.randn(6, 6, dtype=torch.float64)
    full = PointJacobian().measure(model, x)["singular_values"].values
    single = PointJacobian().measure(model, x[2:3])["singular_values"].values
    np.testing.assert_allclose(full[2], single[0], rtol=1e-12)


# ---- bad input ------------------------------------------------------------------------------------


def test_integer_input_has_no_jacobian():
    model, tokens = ZOO[-1].make(n=4)  # embedding model, integer tokens
    with pytest.raises(TypeError, match="no Jacobian exists"):
        PointJacobian().measure(model, tokens)


def test_boolean_input_has_no_jacobian():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(TypeError, match="no Jacobian exists"):
        PointJacobian().measure(model, torch.ones(4, 3, dtype=torch.bool))


def test_output_not_two_dimensional():
    model = nn.Sequential(nn.Linear(3, 4), nn.Unflatten(1, (2, 2))).double()
    with pytest.raises(ValueError, match=r"must be 2-D .* got shape \(\d+, 2, 2\)"):
        PointJacobian().measure(model, torch.randn(5, 3, dtype=torch.float64))
    assert_no_hooks(model)


def test_output_callable_must_return_tensor():
    model = nn.Sequential(nn.Linear(3, 2)).double()
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        PointJacobian(output=lambda m, x: m(x).tolist()).measure(model, torch.randn(2, 3, dtype=torch.float64))


class _SqrtNet(nn.Module):
    """sqrt(|x|) has an infinite derivative at 0: the example with a zero input gets an inf Jacobian."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x):
        return self.linear(x.abs().sqrt())


def test_nonfinite_jacobian_is_reported_not_averaged():
    model = _SqrtNet().double()
    x = torch.randn(4, 3, dtype=torch.float64)
    x[1, 0] = 0.0
    with pytest.warns(RuntimeWarning, match="1 of 4 examples has NaN or inf"):
        ds = PointJacobian().measure(model, x)
    assert ds["jacobian_finite"].values.tolist() == [1, 0, 1, 1]
    assert ds["n_nonfinite_jacobians"].item() == 1
    assert np.isnan(ds["singular_values"].values[1]).all()
    assert np.isfinite(ds["singular_values"].values[[0, 2, 3]]).all()
    assert math.isnan(ds["mean_log_singular_value"].item())


def test_zero_singular_values_are_counted_and_left_out_of_logs():
    # a network constant in one input direction... here: zero weights give an all-zero Jacobian
    model = nn.Sequential(nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0] = 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = PointJacobian(spectrum="svd").measure(model, torch.randn(3, 4, dtype=torch.float64))
    assert ds["n_zero_singular_values"].item() == 3
    assert ds["mean_log_singular_value"].item() == pytest.approx(math.log(2.0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"jacobian": "forward"}, ValueError, "jacobian"),
        ({"spectrum": "qr"}, ValueError, "spectrum"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"output": 3}, TypeError, "output"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        PointJacobian(**kwargs)


def test_float_input_dtype_mismatch():
    model = nn.Sequential(nn.Linear(3, 2)).double()
    with pytest.raises(TypeError, match="dtype"):
        PointJacobian().measure(model, torch.randn(2, 3))


def test_huge_finite_jacobian_is_not_flagged():
    # entries near the float64 maximum overflow a sum but are finite: the screen must confirm per entry
    jac = torch.zeros((2, 2, 3), dtype=torch.float64)
    jac[:, 0, :2] = torch.tensor([1e308, 0.9e308], dtype=torch.float64)  # sum overflows, σ = 1.35e308 does not
    jac[1, 1, 2] = math.inf
    sigma = jacobian_singular_values(jac, method="svd")
    assert torch.isfinite(sigma[0]).all() and torch.isnan(sigma[1]).all()
    assert sigma[0, 0].item() == pytest.approx(math.hypot(1.0, 0.9) * 1e308)


@pytest.mark.parametrize("hint", [None, 3, 1, 50])
def test_a_wrong_output_count_hint_is_caught(hint):
    # reference: the paper's per-example loop; the hint only sizes chunks, a wrong one is detected and redone
    from jacspec.probes.point_jacobian import per_example_singular_values, point_jacobian_singular_values

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    sigma, out = point_jacobian_singular_values(model, x, n_outputs=hint)
    torch.testing.assert_close(sigma, per_example_singular_values(model, x), rtol=1e-12, atol=1e-12)
    assert out.shape == (6, 3)
