"""TangentKernel(method="lanczos" | "auto"), max_memory and the centered default.

Reference: the dense method on the same model and batch (the kernel formed layer by layer from its exact
per-layer factors and diagonalised by ``torch.linalg.eigvalsh``, tested against explicit Jacobians in
tests/test_tangent_kernel.py). The matrix-free path never forms the kernel; its traces are exact, its top
eigenvalues converge to the dense ones, and its stochastic estimates (effective rank by stochastic Lanczos
quadrature, the Frobenius norm inside CKA by Hutchinson) must agree within their reported standard errors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from jacspec.memory import MemoryBudgetError
from jacspec.probes import TangentKernel


def _mlp_batch(n: int = 60, c: int = 5):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, c)).double()
    x = torch.randn(n, 6, dtype=torch.float64)
    y = torch.randint(0, c, (n,))
    return model, x, y


@pytest.mark.parametrize("center", [True, False])
def test_lanczos_agrees_with_dense(center):
    model, x, y = _mlp_batch()
    dense = TangentKernel(center_features=center, method="dense").measure(model, x, y)
    lanczos = TangentKernel(center_features=center, method="lanczos", top_k=20).measure(model, x, y)
    assert dense.attrs["method"] == "dense" and lanczos.attrs["method"] == "lanczos"
    assert lanczos.sizes["eigen"] == 20 and lanczos.attrs["kernel_products"] > 0
    np.testing.assert_allclose(lanczos["eigenvalues"].values, dense["eigenvalues"].values[:20], rtol=1e-4)
    # traces are exact (per-example Jacobians), not estimated
    assert float(lanczos["trace"]) == pytest.approx(float(dense["trace"]), rel=1e-10)
    assert list(lanczos["layer"].values) == list(dense["layer"].values)
    np.testing.assert_allclose(lanczos["layer_trace"].values, dense["layer_trace"].values, rtol=1e-10)
    # stochastic estimates: within 5 % and within four reported standard errors
    erank, erank_d, se = (
        float(v) for v in (lanczos["effective_rank"], dense["effective_rank"], lanczos["effective_rank_se"])
    )
    assert abs(erank - erank_d) <= 0.05 * erank_d and abs(erank - erank_d) <= 4 * se + 1e-9
    cka, cka_d, cka_se = (float(v) for v in (lanczos["cka_labels"], dense["cka_labels"], lanczos["cka_labels_se"]))
    assert abs(cka - cka_d) <= 4 * cka_se + 1e-6 * abs(cka_d)
    # trace ratios use the exact trace: T_k of the top-k eigenvalues
    ks = list(lanczos["k"].values)
    np.testing.assert_allclose(lanczos["trace_ratio"].values, dense["trace_ratio"].sel(k=ks).values, rtol=1e-4)


def test_auto_picks_dense_when_it_fits_and_lanczos_when_not():
    model, x, y = _mlp_batch()  # n·c = 300: two layer kernels of 300² float64 = 1.44 MB
    assert TangentKernel().measure(model, x, y).attrs["method"] == "dense"
    small = TangentKernel(max_memory="1MB", top_k=20).measure(model, x, y)
    assert small.attrs["method"] == "lanczos"


def test_top_k_larger_than_the_kernel():
    model, x, y = _mlp_batch(n=4, c=3)
    with pytest.raises(ValueError, match=r"`top_k`=100 is larger than the kernel's size n·c = 4·3 = 12"):
        TangentKernel(method="lanczos").measure(model, x, y)
    ds = TangentKernel(top_k=100).measure(model, x, y)  # auto: dense fits, every eigenvalue
    assert ds.attrs["method"] == "dense" and ds.sizes["eigen"] == 12


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "lanczos", "return_kernel": True}, "return_kernel=True is not available"),
        ({"method": "lanczos", "layers": ["0"]}, "layers= is not available"),
        ({"method": "exact"}, "`method` must be 'auto', 'dense' or 'lanczos'"),
        ({"top_k": 0}, "`top_k` must be a positive integer"),
        ({"max_memory": "2 parsecs"}, "known units"),
        ({"max_memory": "1GB", "memory_budget_gb": 1.0}, "not both"),
    ],
)
def test_bad_options(kwargs, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match=match):
            TangentKernel(**kwargs)


def test_dense_refusal_before_allocating_names_the_ways_out():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 10))
    x = torch.randn(5000, 6)  # n·c = 50 000: 2 × 10 GB of float32 kernels
    with pytest.raises(MemoryBudgetError) as info:
        TangentKernel(method="dense").measure(model, x)
    text = str(info.value)
    assert "max_memory=None (2 GiB)" in text and "max_examples=" in text and "method='lanczos'" in text
    assert isinstance(info.value, MemoryError)  # what 0.1 raised


def test_memory_budget_gb_is_deprecated_but_works():
    model, x, y = _mlp_batch(n=10)
    with pytest.warns(DeprecationWarning, match="max_memory"):
        probe = TangentKernel(memory_budget_gb=1.0)
    reference = TangentKernel(max_memory="1GiB").measure(model, x, y)
    np.testing.assert_allclose(probe.measure(model, x, y)["eigenvalues"].values, reference["eigenvalues"].values)


def test_centered_features_are_the_default():
    model, x, y = _mlp_batch(n=10)
    default = TangentKernel().measure(model, x, y)
    centered = TangentKernel(center_features=True).measure(model, x, y)
    uncentered = TangentKernel(center_features=False).measure(model, x, y)
    np.testing.assert_array_equal(default["eigenvalues"].values, centered["eigenvalues"].values)
    assert default.attrs["center_features"] == 1
    assert not np.allclose(default["eigenvalues"].values, uncentered["eigenvalues"].values)
