"""Monitor(on_error=...): a probe that raises does not end training unless asked to; failures are recorded."""

from __future__ import annotations

import warnings

import pytest
import torch
import xarray as xr
from torch import nn

import jacspec
from jacspec.monitor import MonitorClosedError, ProbeErrorWarning, StepOrderWarning
from jacspec.probes import Probe, SpectralNorm


class Flaky(Probe):
    """Raises at the steps in ``bad`` (counted by calls), else returns the largest weight."""

    name = "flaky"
    needs_input = False

    def __init__(self, bad=(1,)):
        self.bad = set(bad)
        self.calls = 0

    def config(self):
        return {}

    def measure(self, model, x=None, y=None):
        call = self.calls
        self.calls += 1
        if call in self.bad:
            raise FloatingPointError(f"bad call {call}")
        return xr.Dataset({"max_weight": ((), float(model[0].weight.detach().abs().max()))})


class Interrupting(Probe):
    name = "interrupting"
    needs_input = False

    def config(self):
        return {}

    def measure(self, model, x=None, y=None):
        model[0].register_forward_hook(lambda *a: None)  # a hook left behind would show in the check below
        raise KeyboardInterrupt


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _train(model, monitor, steps=6):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    if monitor is not None:
        monitor.attach(opt)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=g)
        y = torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def test_default_is_warn_and_training_goes_on(tmp_path):
    model = mlp()
    monitor = jacspec.Monitor(model, [Flaky(bad=(1, 3)), SpectralNorm()], every=1, path=tmp_path / "r.nc")
    assert monitor.on_error == "warn"
    with pytest.warns(ProbeErrorWarning, match="flaky"):
        _train(model, monitor, steps=5)
    monitor.close()
    # the failures are recorded in memory ...
    assert [(e.step, e.probe, e.error_type) for e in monitor.errors] == [
        (2, "flaky", "FloatingPointError"),
        (4, "flaky", "FloatingPointError"),
    ]
    assert "bad call 1" in monitor.errors[0].message
    # ... and in the run: the errors group has the failed steps, the other probe every step
    tree = jacspec.open_run(tmp_path / "r.nc")
    assert list(tree["errors"].ds["step"].values) == [2, 4]
    assert tree["errors"].ds["failed"].sel(job="flaky").values.tolist() == [1, 1]
    assert tree["errors"].ds["failed"].sel(job="spectral_norm").values.tolist() == [0, 0]
    assert list(tree["spectral_norm"].ds["step"].values) == [1, 2, 3, 4, 5]
    assert list(tree["flaky"].ds["step"].values) == [1, 3, 5]


def test_skip_records_without_warning(tmp_path):
    model = mlp()
    monitor = jacspec.Monitor(model, [Flaky(bad=(0,))], every=1, on_error="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeErrorWarning)
        _train(model, monitor, steps=2)
    assert len(monitor.errors) == 1 and monitor.errors[0].step == 1


def test_raise_propagates(tmp_path):
    model = mlp()
    monitor = jacspec.Monitor(model, [Flaky(bad=(0,))], every=1, on_error="raise")
    with pytest.raises(FloatingPointError, match="bad call 0"):
        _train(model, monitor, steps=2)


def test_a_failing_probe_leaves_training_bit_identical():
    # reference: the same training without any monitor
    reference = _train(mlp(), None)
    model = mlp()
    with pytest.warns(ProbeErrorWarning):
        _train(model, jacspec.Monitor(model, [Flaky(bad=(0, 2, 4))], every=1))
    for a, b in zip(reference.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_keyboard_interrupt_propagates_and_leaves_no_hooks(tmp_path):
    model = mlp()
    monitor = jacspec.Monitor(model, [Interrupting()], every=1, path=tmp_path / "r.nc", on_error="skip")
    with pytest.raises(KeyboardInterrupt):
        monitor.step(0)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


@pytest.mark.parametrize("value", ["ignore", "", None, 1])
def test_bad_on_error_is_refused(value):
    with pytest.raises(ValueError, match="on_error"):
        jacspec.Monitor(mlp(), [SpectralNorm()], on_error=value)


def test_closed_monitor_refuses_to_step():
    monitor = jacspec.Monitor(mlp(), [SpectralNorm()], every=1)
    monitor.step(0)
    monitor.close()
    with pytest.raises(MonitorClosedError, match="resume=True"):
        monitor.step(1)
    with pytest.raises(MonitorClosedError):
        monitor.attach(torch.optim.SGD(mlp().parameters(), lr=0.1))


def test_steps_that_do_not_increase_warn():
    monitor = jacspec.Monitor(mlp(), [SpectralNorm()], every=1)
    assert monitor.step(5) is not None
    for step in (5, 3):
        with pytest.warns(StepOrderWarning, match=f"`step` {step} is not after the last probed step 5"):
            assert monitor.step(step) is None
    assert monitor.step(6) is not None
