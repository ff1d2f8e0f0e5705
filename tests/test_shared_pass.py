"""One shared pass per (step, split): the Monitor's probes share one forward and c backward passes.

Reference: each probe measured on its own (``probe.measure(model, x, y)``, no pass active), which
computes everything itself; a Monitor step must give the same Datasets, float64, to 1e-10 relative,
on every zoo model, while running the model's forward once per split where the probes can share it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from jacspec import Monitor
from jacspec.engine.shared_pass import SharedPass, active_pass, sharing
from jacspec.kernels import UnsupportedLayerError
from jacspec.probes import Performance, PointJacobian, TangentComplexity, TangentKernel

from zoo import ALL_ZOO, assert_no_hooks

STRUCTURED = ["mlp", "cnn", "residual", "batchnorm_eval", "layernorm", "conv1d", "grouped_conv2d", "groupnorm"]


def _splits(case, seed=1):
    torch.manual_seed(seed)
    data = {}
    for split, n in (("train", 6), ("test", 5)):
        x = case.inputs(n)
        x = x.double() if x.is_floating_point() else x
        data[split] = (x, torch.randint(0, case.n_classes, (n,)))
    return data


def _probes(case):
    probes = [TangentKernel(), Performance(), TangentComplexity()]
    if case.float_input:
        probes.insert(0, PointJacobian())
    return probes


def _count_forwards(model: nn.Module) -> list[int]:
    calls = [0]

    def count(module, args):
        calls[0] += 1

    model.register_forward_pre_hook(count)
    return calls


def _assert_same(shared, alone, where):
    assert set(shared.data_vars) == set(alone.data_vars), where
    for name in alone.data_vars:
        a, b = alone[name].values, shared[name].values
        if a.dtype.kind in "fc":
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=f"{where}: {name}")
        else:
            np.testing.assert_array_equal(b, a, err_msg=f"{where}: {name}")


@pytest.mark.parametrize("case", ALL_ZOO, ids=lambda case: case.id)
def test_monitor_step_equals_each_probe_alone(case):
    model, _ = case.make()
    data = _splits(case)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    monitor = Monitor(model, _probes(case), data=data, every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = monitor.step(1, force=True)
    assert "errors" not in results, results.get("errors")
    for probe in _probes(case):  # fresh probes: TangentComplexity carries state between calls
        for split, (x, y) in data.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                alone = probe.measure(model, x, y)
            _assert_same(results[probe.name][split], alone, f"{case.id}/{probe.name}/{split}")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert_no_hooks(model)


@pytest.mark.parametrize("case_id", STRUCTURED)
def test_one_forward_per_split_when_the_probes_share_the_pass(case_id):
    case = next(c for c in ALL_ZOO if c.id == case_id)
    model, _ = case.make()
    data = _splits(case)
    probes = _probes(case)
    calls = _count_forwards(model)
    monitor = Monitor(model, probes, data=data, every=1)
    calls[0] = 0
    monitor.step(1, force=True)
    assert calls[0] == 2 * len(data)  # the first step finds c with a one-example forward, then one pass
    calls[0] = 0
    monitor.step(2, force=True)
    assert calls[0] == len(data)  # PointJacobian + TangentKernel + TangentComplexity + Performance
    assert monitor._shared_forward_passes == {split: 1 for split in data}
    # the same probes measured one by one run the model many more times
    calls[0] = 0
    for probe in probes:
        for x, y in data.values():
            probe.measure(model, x, y)
    assert calls[0] >= 3 * len(data)


@pytest.mark.parametrize("case_id", ["lstm_batch_first", "hf_bert", "tied_linears"])
def test_models_outside_the_hooks_share_the_input_pass(case_id):
    # the tangent kernel runs its own functional engine; PointJacobian and Performance still share one pass
    case = next(c for c in ALL_ZOO if c.id == case_id)
    model, _ = case.make()
    data = _splits(case)
    calls = _count_forwards(model)
    monitor = Monitor(model, [PointJacobian(), Performance()], data=data, every=1)
    monitor.step(1, force=True)
    calls[0] = 0
    monitor.step(2, force=True)
    assert calls[0] == len(data)


def test_options_that_change_the_computation_measure_on_their_own():
    case = next(c for c in ALL_ZOO if c.id == "mlp")
    model, _ = case.make()
    data = _splits(case)
    probes = [PointJacobian(chunk_size=2), Performance(batch_size=2), TangentKernel(method="lanczos", top_k=3)]
    monitor = Monitor(model, probes, data=data, every=1)
    calls = _count_forwards(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = monitor.step(1, force=True)
    assert calls[0] > 3 * len(data)
    for probe in probes[:2]:
        for split, (x, y) in data.items():
            _assert_same(results[probe.name][split], probe.measure(model, x, y), f"{probe.name}/{split}")


def test_an_error_belongs_to_the_probe_that_asked():
    # structured hooks refuse a tied Parameter: TangentKernel's error, not PointJacobian's
    case = next(c for c in ALL_ZOO if c.id == "tied_linears")
    model, _ = case.make()
    data = _splits(case)
    tk = TangentKernel(implementation="structured", on_unsupported="raise")
    monitor = Monitor(model, [PointJacobian(), tk], data=data, every=1, on_error="skip")
    results = monitor.step(1, force=True)
    assert set(results["point_jacobian"]) == set(data)
    assert "tangent_kernel" not in results
    assert {f.probe for f in monitor.errors} == {"tangent_kernel"}
    assert all(f.error_type == UnsupportedLayerError.__name__ for f in monitor.errors)


def test_a_warning_reaches_the_probe_that_asked():
    case = next(c for c in ALL_ZOO if c.id == "tied_linears")
    model, _ = case.make()
    data = _splits(case)
    tk = TangentKernel(implementation="structured", on_unsupported="warn")
    monitor = Monitor(model, [Performance(), tk], data=data, every=1)
    with pytest.warns(UserWarning, match="shared between modules"):
        monitor.step(1, force=True)


def test_the_pass_is_found_only_for_its_own_model_and_batch():
    model, x = nn.Linear(3, 2).double(), torch.randn(4, 3, dtype=torch.float64)
    shared = SharedPass(model, x, outputs_hint=2)
    shared.request_input_jacobians()
    with sharing([shared]):
        assert active_pass(model, x) is shared
        assert active_pass(model, x.clone()) is None
        assert active_pass(nn.Linear(3, 2), x) is None
        jac = shared.input_jacobians()
    assert active_pass(model, x) is None
    # reference: the Jacobian of a linear map is its weight, for every example
    torch.testing.assert_close(jac, model.weight.detach().expand(4, 2, 3), rtol=0, atol=0)
    assert shared.forward_passes == 1


def test_one_snapshot_per_step_still_restores_after_a_probe_that_raised(monkeypatch):
    # a built-in probe (light per-probe guard) that changes the weights and then raises: the Monitor puts
    # the step's snapshot back before the next probe, and the step ends with bit-identical weights
    import jacspec.probes.point_jacobian as point_jacobian

    case = next(c for c in ALL_ZOO if c.id == "mlp")
    model, _ = case.make()
    data = _splits(case)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = {split: Performance().measure(model, x, y) for split, (x, y) in data.items()}

    def vandal(jacobians, method="auto"):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        raise RuntimeError("boom")

    monkeypatch.setattr(point_jacobian, "jacobian_singular_values", vandal)
    monitor = Monitor(model, [PointJacobian(), Performance()], data=data, every=1, on_error="skip")
    results = monitor.step(1, force=True)
    assert {f.probe for f in monitor.errors} == {"point_jacobian"}
    for split in data:
        _assert_same(results["performance"][split], expected[split], split)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_user_probe_keeps_its_own_full_snapshot():
    import xarray as xr

    from jacspec.probes import Probe

    class Shift(Probe):  # a careless user probe: changes the weights and returns
        name = "shift"

        def measure(self, model, x=None, y=None):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1.0)
            return xr.Dataset()

    case = next(c for c in ALL_ZOO if c.id == "mlp")
    model, _ = case.make()
    data = _splits(case)
    expected = {split: Performance().measure(model, x, y) for split, (x, y) in data.items()}
    results = Monitor(model, [Shift(), Performance()], data=data, every=1).step(1, force=True)
    for split in data:
        _assert_same(results["performance"][split], expected[split], split)


def test_nothing_runs_over_the_whole_batch_for_a_kernel_that_goes_matrix_free(monkeypatch):
    # n·c = 4500 > the dense limit: TangentKernel(method="auto") goes Lanczos; the pass declines its factors
    # before any large forward (only the one-example forward that finds c runs), and the result equals the
    # probe measured alone (seeded Lanczos)
    case = next(c for c in ALL_ZOO if c.id == "mlp")
    model, _ = case.make()
    torch.manual_seed(2)
    data = {"train": (torch.randn(1500, 6, dtype=torch.float64), torch.randint(0, 3, (1500,)))}
    import jacspec.kernels as kernels

    collect, shared_collects = kernels._collect, []

    def spy(*args, **kwargs):
        if kwargs.get("sink") is not None:  # the shared pass's hooked forward over the whole batch
            shared_collects.append(args[1].shape[0])
        return collect(*args, **kwargs)

    monkeypatch.setattr(kernels, "_collect", spy)
    probe = TangentKernel(top_k=4)
    monitor = Monitor(model, [probe], data=data, every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = monitor.step(1, force=True)
        alone = TangentKernel(top_k=4).measure(model, *data["train"])
    assert results["tangent_kernel"]["train"].attrs["method"] == "lanczos"
    assert monitor._shared_forward_passes == {"train": 1} and shared_collects == []
    np.testing.assert_allclose(
        results["tangent_kernel"]["train"]["eigenvalues"].values, alone["eigenvalues"].values, rtol=1e-10
    )
