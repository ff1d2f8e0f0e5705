"""The probe protocol: argument checks, state restoration (also when a probe raises), provenance."""

import random

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from jacspec.probes import Probe, SpectralNorm, preserve_model_state

from zoo import assert_no_hooks, batchnorm_mlp, mlp


class Meddler(Probe):
    """A badly behaved probe: changes everything it can, then optionally raises."""

    name = "meddler"

    def __init__(self, fail: bool = False):
        self.fail = fail

    def measure(self, model, x=None, y=None):
        model.train()
        for p in model.parameters():
            p.requires_grad_(False)
            with torch.no_grad():
                p.add_(1.0)
            p.grad = torch.ones_like(p)
        for module in model.modules():
            module.register_forward_hook(lambda *args: None)
            module.register_forward_pre_hook(lambda *args: None)
            module.register_full_backward_hook(lambda *args: None)
        torch.rand(10)
        np.random.rand(3)
        random.random()
        torch.set_grad_enabled(False)
        model(x)  # BatchNorm in train mode would update running statistics
        if self.fail:
            raise RuntimeError("probe failed on purpose")
        return xr.Dataset({"value": ((), 1.0)})


def _snapshot(model):
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "grad_ids": [id(p.grad) for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state()[1].copy(),
        "python_rng": random.getstate(),
        "grad_enabled": torch.is_grad_enabled(),
    }


def _assert_same(before, after):
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert all(torch.equal(a, b) for a, b in zip(before["params"], after["params"]))
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert before["grad_ids"] == after["grad_ids"]
    assert all(torch.equal(a, b) for a, b in zip(before["buffers"], after["buffers"]))
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    assert np.array_equal(before["numpy_rng"], after["numpy_rng"])
    assert before["python_rng"] == after["python_rng"]
    assert before["grad_enabled"] == after["grad_enabled"]


@pytest.mark.parametrize("fail", [False, True], ids=["returns", "raises"])
@pytest.mark.parametrize("build", [mlp, batchnorm_mlp], ids=["mlp", "batchnorm"])
def test_measure_restores_everything(build, fail):
    torch.manual_seed(0)
    model = build().double()
    model.train()
    model[0].weight.requires_grad_(False)  # a mix of flags to restore
    x = torch.randn(4, 6, dtype=torch.float64)
    model(x).sum().backward()  # existing gradients, to be kept bit for bit and by identity
    before = _snapshot(model)
    probe = Meddler(fail=fail)
    if fail:
        with pytest.raises(RuntimeError, match="on purpose"):
            probe.measure(model, x)
    else:
        probe.measure(model, x)
    _assert_same(before, _snapshot(model))
    assert_no_hooks(model)


def test_measure_runs_in_eval_mode_and_restores_train_mode():
    seen = {}

    class ModeProbe(Probe):
        name = "mode_probe"
        needs_input = False

        def measure(self, model, x=None, y=None):
            seen["training"] = [m.training for m in model.modules()]
            return xr.Dataset()

    model = mlp().train()
    ModeProbe().measure(model)
    assert not any(seen["training"])
    assert all(m.training for m in model.modules())


def test_global_hooks_removed():
    from torch.nn.modules import module as module_mod

    class GlobalHooker(Probe):
        name = "global_hooker"
        needs_input = False

        def measure(self, model, x=None, y=None):
            nn.modules.module.register_module_forward_hook(lambda *a: None)
            raise ValueError("boom")

    before = len(module_mod._global_forward_hooks)
    with pytest.raises(ValueError):
        GlobalHooker().measure(mlp())
    assert len(module_mod._global_forward_hooks) == before


def test_provenance_attrs_and_netcdf_round_trip(tmp_path):
    ds = SpectralNorm(n_iterations=3).measure(mlp())
    assert ds.attrs["probe"] == "spectral_norm"
    assert ds.attrs["torch_version"] == torch.__version__
    assert '"n_iterations": 3' in ds.attrs["probe_config"]
    assert ds["spectral_norm"].attrs["long_name"]
    ds.to_netcdf(tmp_path / "sn.nc")
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "sn.nc"), ds)


class NeedsLabels(Probe):
    name = "needs_labels"
    needs_labels = True

    def measure(self, model, x=None, y=None):
        return xr.Dataset({"n": ((), int(y.shape[0]))})


class NeedsGrad(Probe):
    name = "needs_grad"
    needs_input_grad = True

    def measure(self, model, x=None, y=None):
        return xr.Dataset()


class NotADataset(Probe):
    name = "not_a_dataset"
    needs_input = False

    def measure(self, model, x=None, y=None):
        return {"value": 1}


@pytest.mark.parametrize(
    "probe, model, x, y, error, match",
    [
        (
            NeedsLabels(),
            nn.ReLU(),
            torch.randn(3, 6),
            torch.zeros(3, dtype=torch.long),
            ValueError,
            "at least one parameter",
        ),
        (NeedsLabels(), "not a model", torch.randn(3, 6), None, TypeError, "torch.nn.Module"),
        (NeedsLabels(), mlp(), [[1.0] * 6], torch.zeros(1, dtype=torch.long), TypeError, "`x` must be a torch.Tensor"),
        (NeedsLabels(), mlp(), torch.randn(3, 6, dtype=torch.float64), None, TypeError, "dtype torch.float64"),
        (NeedsLabels(), mlp(), torch.randn(3, 6), None, ValueError, "`y`.*required.*needs_labels"),
        (
            NeedsLabels(),
            mlp(),
            torch.randn(3, 6),
            torch.zeros(4, dtype=torch.long),
            ValueError,
            "one label per example",
        ),
        (NeedsLabels(), mlp(), torch.randn(3, 6), torch.zeros(3), TypeError, "integer class labels"),
        (NeedsLabels(), mlp(), torch.randn(0, 6), None, ValueError, "at least one example"),
        (NeedsLabels(), mlp(), None, None, ValueError, "needs an input batch"),
        (NeedsGrad(), mlp(), torch.ones(3, 6, dtype=torch.long), None, TypeError, "no Jacobian exists"),
        (NotADataset(), mlp(), None, None, TypeError, "must return an xarray.Dataset"),
    ],
    ids=[
        "no-parameters",
        "not-a-module",
        "x-not-tensor",
        "x-wrong-dtype",
        "y-missing",
        "y-wrong-length",
        "y-float",
        "x-empty",
        "x-missing",
        "integer-input-to-jacobian",
        "not-a-dataset",
    ],
)
def test_bad_input_gives_clear_error(probe, model, x, y, error, match):
    with pytest.raises(error, match=match):
        probe.measure(model, x, y)


def test_preserve_model_state_rejects_bad_mode():
    with pytest.raises(ValueError, match="`mode`"):
        with preserve_model_state(mlp(), mode="inference"):
            pass


def test_config_reads_init_arguments():
    assert SpectralNorm(n_iterations=7, seed=3).config() == {
        "n_iterations": 7,
        "method": "power",
        "seed": 3,
        "on_unsupported": "warn",
        "max_memory": None,
    }
    assert "SpectralNorm(n_iterations=7" in repr(SpectralNorm(n_iterations=7))
