"""Tests of the TangentKernel and TangentComplexity probes.

References: the explicit kernel Φ Φᵀ from torch.autograd.functional.jacobian (tests/test_kernels.py)
and plain numpy written from Baratin 2021's equations 5 (effective rank), 6 (trace ratios), 7 (CKA),
Fig. B.6 (uncentered alignment) and 18 (complexity measure).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from jacspec.probes import TangentKernel
from jacspec.probes.tangent_kernel import TangentComplexity, complexity_measure
from test_kernels import explicit_jacobian, explicit_kernel

from zoo import ZOO, assert_no_hooks


def _numpy_statistics(k: np.ndarray, y: np.ndarray, c: int, ks) -> dict[str, float | np.ndarray]:
    lam = np.linalg.eigvalsh(k)[::-1]
    mu = np.clip(lam, 0, None) / np.clip(lam, 0, None).sum()
    mu = mu[mu > 0]
    yv = np.eye(c)[y].reshape(-1)
    ky = np.outer(yv, yv)
    r = k.shape[0]
    centering = np.eye(r) - np.ones((r, r)) / r
    kc, kyc = centering @ k @ centering, centering @ ky @ centering
    return {
        "eigenvalues": lam,
        "effective_rank": np.exp(-(mu * np.log(mu)).sum()),
        "trace_ratio": np.array([lam[:j].sum() / lam.sum() for j in ks]),
        "cka_labels": np.trace(kc @ kyc) / (np.linalg.norm(kc) * np.linalg.norm(kyc)),
        "alignment_labels": np.trace(k @ ky) / (np.linalg.norm(k) * np.linalg.norm(ky)),
    }


@pytest.mark.parametrize("center", [False, True])
def test_probe_statistics_equal_numpy(zoo_case, center):
    model, x = zoo_case.make(n=6)
    c = zoo_case.n_classes
    y = torch.arange(6) % c
    ds = TangentKernel(center_features=center).measure(model, x, y)
    k = explicit_kernel(model, x).numpy()
    if center:
        k4 = k.reshape(6, c, 6, c)
        k4 = k4 - k4.mean(0, keepdims=True)
        k = (k4 - k4.mean(2, keepdims=True)).reshape(6 * c, 6 * c)
    ks = [j for j in (1, 2, 5, 10, 20, 40, 80, 160) if j <= 6 * c]
    expected = _numpy_statistics(k, y.numpy(), c, ks)
    np.testing.assert_allclose(ds["eigenvalues"].values, expected["eigenvalues"], atol=1e-8)
    assert list(ds["k"].values) == ks
    for name in ("effective_rank", "cka_labels", "alignment_labels"):
        assert float(ds[name]) == pytest.approx(expected[name], rel=1e-7), name
    np.testing.assert_allclose(ds["trace_ratio"].values, expected["trace_ratio"], rtol=1e-7)
    lam = expected["eigenvalues"]
    assert float(ds["max_eigenvalue"]) == pytest.approx(lam[0], rel=1e-9)
    assert float(ds["mean_eigenvalue"]) == pytest.approx(lam.mean(), rel=1e-9)
    assert float(ds["median_eigenvalue"]) == pytest.approx(np.median(lam), rel=1e-7, abs=1e-9)
    assert float(ds["trace"]) == pytest.approx(np.trace(k), rel=1e-9)
    np.testing.assert_allclose(ds["eigenvalue_ratio"].values, lam[np.array(ks) - 1] / lam[0], rtol=1e-6, atol=1e-9)


def test_probe_layer_variables():
    model, x = ZOO[2].make(n=5)  # residual: inp, block.fc1, block.fc2, out
    y = torch.tensor([0, 1, 2, 1, 0])
    # the reference kernel is uncentered
    ds = TangentKernel(center_features=False, layer_statistics=True).measure(model, x, y)
    assert list(ds["layer"].values) == ["inp", "block.fc1", "block.fc2", "out"]
    assert float(ds["layer_trace"].sum()) == pytest.approx(float(ds["trace"]), rel=1e-10)  # Σ_ℓ Tr K^ℓ = Tr K
    for name in ds["layer"].values:
        k = explicit_kernel(model, x, prefix=str(name)).numpy()
        expected = _numpy_statistics(k, y.numpy(), 3, [1])
        row = ds.sel(layer=name)
        assert float(row["layer_trace"]) == pytest.approx(np.trace(k), rel=1e-9)
        assert float(row["layer_cka_labels"]) == pytest.approx(expected["cka_labels"], rel=1e-7)
        assert float(row["layer_alignment_labels"]) == pytest.approx(expected["alignment_labels"], rel=1e-7)
        assert float(row["layer_effective_rank"]) == pytest.approx(expected["effective_rank"], rel=1e-7)
        assert float(row["layer_max_eigenvalue"]) == pytest.approx(expected["eigenvalues"][0], rel=1e-9)
    for var in ("eigenvalues", "effective_rank", "trace_ratio", "cka_labels", "layer_trace", "layer_cka_labels"):
        assert "long_name" in ds[var].attrs and "units" in ds[var].attrs


def test_probe_without_labels_and_options():
    model, x = ZOO[0].make(n=4)
    assert "layer_effective_rank" not in TangentKernel().measure(model, x)  # per-layer spectra are opt-in
    ds = TangentKernel(layer_statistics=False, trace_ks=[3, 1, 500]).measure(model, x)
    assert "cka_labels" not in ds and "layer_cka_labels" not in ds and "layer_effective_rank" not in ds
    assert list(ds["k"].values) == [1, 3]  # sorted, k > n·c = 12 dropped
    ds = TangentKernel(layers=["2"], cka=False, center_features=False).measure(
        model, x, torch.zeros(4, dtype=torch.long)
    )
    assert list(ds["layer"].values) == ["2"] and "cka_labels" not in ds
    assert float(ds["trace"]) == pytest.approx(float(np.trace(explicit_kernel(model, x, prefix="2"))), rel=1e-10)
    ds = TangentKernel(max_examples=3).measure(model, x)
    assert ds.attrs["n_examples"] == 3 and ds.sizes["eigen"] == 9


def test_return_kernel_and_netcdf_round_trip(tmp_path):
    model, x = ZOO[1].make(n=3)
    ds = TangentKernel(return_kernel=True, center_features=False).measure(model, x, torch.tensor([0, 2, 1]))
    np.testing.assert_allclose(ds["kernel"].values, explicit_kernel(model, x).numpy(), atol=1e-8)
    assert list(ds["row_sample"].values[:4]) == [0, 0, 0, 1] and list(ds["row_class"].values[:4]) == [0, 1, 2, 0]
    ds.to_netcdf(tmp_path / "x.nc")
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "x.nc"), ds)


def test_measure_is_non_intrusive():
    model, x = ZOO[3].make(n=4)  # BatchNorm: buffers and mode
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad for p in model.parameters()]
    rng = torch.get_rng_state()
    TangentKernel().measure(model, x, torch.tensor([0, 1, 2, 0]))
    assert model.training and all(m.training for m in model.modules())
    assert not model[0].weight.requires_grad and model[0].bias.requires_grad
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is g and torch.equal(g, torch.ones_like(g)) for p, g in zip(model.parameters(), grads))
    assert torch.equal(torch.get_rng_state(), rng)
    assert_no_hooks(model)


def test_hooks_removed_after_error():
    model, x = ZOO[0].make(n=4)
    with pytest.raises(ValueError, match="labels in"):
        TangentKernel().measure(model, x, torch.tensor([0, 1, 2, 7]))
    assert_no_hooks(model)

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            self.fc(x)
            raise RuntimeError("boom")

    broken = Broken()
    with pytest.raises(RuntimeError, match="boom"):
        TangentKernel().measure(broken, torch.randn(3, 2))
    assert_no_hooks(broken)


@pytest.mark.parametrize(
    "kwargs, y, error, match",
    [
        ({"cka": True}, None, ValueError, r"`y` .*required by TangentKernel\(cka=True\)"),
        ({}, torch.tensor([0, 1]), ValueError, r"`y` must have one entry per example of `x` \(4\)"),
        ({}, torch.tensor([0, 1, 2, 3]), ValueError, r"`y` must hold labels in \[0, 3\), but got values in \[0, 3\]"),
        ({}, torch.tensor([0.0, 1, 2, 0]), TypeError, r"`y` must hold integer class labels"),
        ({"max_memory": 100, "method": "dense"}, None, MemoryError, r"max_memory=100 .*method='lanczos'"),
    ],
)
def test_bad_input(kwargs, y, error, match):
    model, x = ZOO[0].make(n=4)
    with pytest.raises(error, match=match):
        TangentKernel(**kwargs).measure(model, x, y)


def test_batchnorm_train_mode_refused():
    model, x = ZOO[3].make(n=4)
    with pytest.raises(ValueError, match="train mode"):
        TangentKernel(mode="train").measure(model, x)
    TangentKernel(mode="train").measure(ZOO[0].make(n=4)[0], x)  # no BatchNorm: fine


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"on_unsupported": "skip"}, "on_unsupported"),
        ({"mode": "test"}, "mode"),
        ({"cka": "yes"}, "cka"),
        ({"max_examples": 0}, "max_examples"),
        ({"trace_ks": [0, 2]}, "trace_ks"),
        ({"memory_budget_gb": 0}, "memory_budget_gb"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TangentKernel(**kwargs)


def test_complexity_measure_over_sgd_steps():
    # reference: eq. 18 with δw_t the SGD updates and ‖Φ_t‖_F = √Tr K_t at the start of each step (explicit Φ)
    model, x = ZOO[0].make(n=5)
    y = torch.tensor([0, 1, 2, 0, 1])
    probe = TangentComplexity()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    expected, update_norms, feature_norms = 0.0, [], []
    for _ in range(4):
        ds = probe.measure(model, x)
        phi_norm = float(sum((b**2).sum() for b in explicit_jacobian(model, x).values())) ** 0.5
        assert float(ds["feature_norm"]) == pytest.approx(phi_norm, rel=1e-10)
        assert float(ds["complexity"]) == pytest.approx(expected, rel=1e-10, abs=1e-14)
        before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        step = float((torch.cat([p.detach().reshape(-1) for p in model.parameters()]) - before).norm())
        expected += step * phi_norm
        update_norms.append(step)
        feature_norms.append(phi_norm)
    assert float(probe.measure(model, x)["complexity"]) == pytest.approx(expected, rel=1e-10)
    assert complexity_measure(update_norms, feature_norms) == pytest.approx(expected, rel=1e-12)
    # a different batch (another split) has its own running sum
    assert float(probe.measure(model, x[:3])["complexity"]) == 0.0
    probe.reset()
    assert float(probe.measure(model, x)["complexity"]) == 0.0
