import warnings

import numpy as np
import pytest
import torch
from torch import nn

from jacspec.probes import SpectralNorm
from jacspec.probes.spectral_norm import power_iteration, weight_matrices

from zoo import assert_no_hooks, cnn, mlp


@pytest.mark.parametrize("build", [mlp, cnn], ids=["mlp", "cnn"])
def test_spectral_norm_matches_matrix_norm(build):
    # reference: torch.linalg.matrix_norm(W, ord=2), an SVD, on the reshaped weight (float64)
    torch.manual_seed(0)
    model = build().double()
    ds = SpectralNorm(n_iterations=500).measure(model)
    matrices = weight_matrices(model)
    assert list(ds["layer"].values) == list(matrices)
    for layer, w in matrices.items():
        expected = float(torch.linalg.matrix_norm(w, ord=2))
        assert ds["spectral_norm"].sel(layer=layer).item() == pytest.approx(expected, rel=1e-8)
    assert_no_hooks(model)


def test_conv_weight_is_reshaped_out_by_rest():
    conv = nn.Conv2d(3, 5, 3)
    assert weight_matrices(nn.Sequential(conv))["0"].shape == (5, 27)


def test_warm_start_converges_across_calls():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(40, 30)).double()
    exact = float(torch.linalg.matrix_norm(model[0].weight, ord=2))
    probe = SpectralNorm(n_iterations=2)
    errors = [abs(probe.measure(model)["spectral_norm"].item() - exact) / exact for _ in range(60)]
    assert errors[-1] < 1e-6
    assert errors[-1] < errors[0]


def test_exact_method_and_power_iteration_function():
    torch.manual_seed(2)
    w = torch.randn(7, 4, dtype=torch.float64)
    sigma, v = power_iteration(w, 300)
    assert sigma == pytest.approx(float(torch.linalg.svdvals(w)[0]), rel=1e-10)
    assert v.shape == (4,)
    model = nn.Sequential(nn.Linear(4, 7)).double()
    ds = SpectralNorm(method="exact").measure(model)
    assert ds["spectral_norm"].item() == pytest.approx(float(torch.linalg.svdvals(model[0].weight)[0]))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n_iterations": 0}, "n_iterations"), ({"method": "svd"}, "method")],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpectralNorm(**kwargs)


def test_model_without_weight_matrix():
    with pytest.raises(ValueError, match="no weight matrix"):
        SpectralNorm().measure(nn.Sequential(nn.LayerNorm(3)))


@pytest.mark.parametrize("method", ["power", "exact"])
def test_nonfinite_weights_give_nan_and_one_warning(method):
    # reference: a NaN anywhere in a matrix makes its norm undefined; the layer's value must not drop it
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    probe = SpectralNorm(method=method)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = probe.measure(model)
        probe.measure(model)
    assert [w.category for w in caught] == [RuntimeWarning] and "'2'" in str(caught[0].message)
    assert int(first["nonfinite_count"]) == 1
    assert np.isnan(float(first["spectral_norm"].sel(layer="2")))
    assert np.isfinite(float(first["spectral_norm"].sel(layer="0")))
