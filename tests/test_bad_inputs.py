"""The table of bad inputs (docs/bad_inputs.md): every case raises TypeError or ValueError (or a documented jacspec
subclass) whose message names the argument; probes leave the model as it was and no run file is touched.

Each row: (case id, call, expected exception class, regex the message must contain). The regex names the argument
(or the rule) so that a message that only says "invalid input" fails the test.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch import nn

import jacspec
from jacspec import fit
from jacspec.monitor import MonitorClosedError
from jacspec.probes import (
    FourierSpectrum,
    MutualInformation,
    Performance,
    PointJacobian,
    SpectralNorm,
    TangentComplexity,
    TangentKernel,
    WeightInformation,
)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


X = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))  # seeded: cases must not depend on collection order
Y = torch.tensor([0, 1, 2, 0, 1, 2])
NAN_X = X.clone()
NAN_X[2, 1] = float("nan")
INF_X = X.clone()
INF_X[4, 0] = float("inf")


def frozen():
    model = mlp()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def measure(probe, model=None, x=X, y=Y):
    return lambda: probe.measure(mlp() if model is None else model, x, y)


def monitor(**kwargs):
    args = {"model": mlp(), "probes": [SpectralNorm()]}
    args.update(kwargs)
    return lambda: jacspec.Monitor(**args)


def closed_monitor_step():
    m = jacspec.Monitor(mlp(), [SpectralNorm()], every=1)
    m.close()
    m.step(0)


PROBE_CASES = [
    # -- inputs a probe's model cannot take --------------------------------------------------------------
    ("pj-x-wrong-width", measure(PointJacobian(), x=torch.randn(6, 7)), ValueError, r"`x` of shape \(6, 7\).*5"),
    ("tk-x-wrong-width", measure(TangentKernel(), x=torch.randn(6, 7)), ValueError, r"`x` of shape \(6, 7\)"),
    ("perf-x-wrong-width", measure(Performance(), x=torch.randn(6, 7)), ValueError, r"`x` of shape"),
    ("pj-x-1d", measure(PointJacobian(), x=torch.randn(5), y=None), ValueError, r"`x` of shape \(5,\)"),
    ("tk-x-1d", measure(TangentKernel(), x=torch.randn(5), y=None), ValueError, r"`x` of shape \(5,\)"),
    ("pj-x-empty", measure(PointJacobian(), x=torch.randn(0, 5), y=Y[:0]), ValueError, r"`x`.*at least one"),
    ("tk-x-empty", measure(TangentKernel(), x=torch.randn(0, 5), y=Y[:0]), ValueError, r"`x`"),
    ("pj-x-not-tensor", measure(PointJacobian(), x=np.zeros((6, 5))), TypeError, r"`x`"),
    ("tk-x-list", measure(TangentKernel(), x=[[0.0] * 5] * 6), TypeError, r"`x`"),
    ("pj-x-none", measure(PointJacobian(), x=None), ValueError, r"`x`"),
    ("perf-x-none", measure(Performance(), x=None), ValueError, r"`x`"),
    ("pj-x-int", measure(PointJacobian(), x=torch.ones(6, 5, dtype=torch.long)), TypeError, r"`x`"),
    ("pj-x-float64-model-float32", measure(PointJacobian(), x=X.double()), TypeError, r"`x`.*dtype"),
    (
        "cnn-x-wrong-channels",
        measure(PointJacobian(), model=cnn(), x=torch.randn(6, 3, 8, 8)),
        ValueError,
        r"`x` of shape \(6, 3, 8, 8\).*Conv2d",
    ),
    ("pj-x-nan", measure(PointJacobian(), x=NAN_X), ValueError, r"`x` must be finite.*non-finite"),
    ("tk-x-nan", measure(TangentKernel(), x=NAN_X), ValueError, r"`x` must be finite.*non-finite"),
    (
        "tk-x-inf",
        measure(TangentKernel(), x=INF_X),
        ValueError,
        r"`x` must be finite.*non-finite",
    ),
    # -- labels --------------------------------------------------------------------------------------------
    ("perf-y-none", measure(Performance(), y=None), ValueError, r"`y`"),
    ("perf-y-float", measure(Performance(), y=Y.float()), TypeError, r"`y`.*integer"),
    ("perf-y-2d", measure(Performance(), y=Y[:, None]), ValueError, r"`y`.*shape"),
    ("perf-y-count", measure(Performance(), y=Y[:4]), ValueError, r"`y`"),
    ("perf-y-out-of-range", measure(Performance(), y=Y + 5), ValueError, r"`y`"),
    ("perf-y-negative", measure(Performance(), y=Y - 3), ValueError, r"`y`"),
    ("perf-y-not-tensor", measure(Performance(), y=[0, 1, 2, 0, 1, 2]), TypeError, r"`y`"),
    ("tk-y-count", measure(TangentKernel(), y=Y[:3]), ValueError, r"`y`"),
    ("wi-y-float", measure(WeightInformation(), y=Y.float()), TypeError, r"`y`"),
    # -- the model -------------------------------------------------------------------------------------------
    ("pj-model-not-module", lambda: PointJacobian().measure(lambda x: x, X), TypeError, r"`model`"),
    ("sn-model-none", lambda: SpectralNorm().measure(None), TypeError, r"`model`"),
    ("sn-model-no-parameters", lambda: SpectralNorm().measure(nn.ReLU()), ValueError, r"`model`.*parameters"),
    ("tk-model-frozen", measure(TangentKernel(), model=frozen()), ValueError, r"trainable|frozen|requires_grad"),
    ("wi-model-frozen", measure(WeightInformation(), model=frozen()), ValueError, r"trainable|frozen|requires_grad"),
    # -- probe options ---------------------------------------------------------------------------------------
    ("sn-n-iterations-0", lambda: SpectralNorm(n_iterations=0), ValueError, r"`n_iterations`"),
    ("sn-method-unknown", lambda: SpectralNorm(method="svd"), ValueError, r"`method`"),
    ("perf-batch-size-0", lambda: Performance(batch_size=0), ValueError, r"`batch_size`"),
    ("pj-jacobian-unknown", lambda: PointJacobian(jacobian="magic"), ValueError, r"`jacobian`"),
    ("pj-chunk-size-0", lambda: PointJacobian(chunk_size=0), ValueError, r"`chunk_size`"),
    ("tk-max-examples-0", lambda: TangentKernel(max_examples=0), ValueError, r"`max_examples`"),
    ("tk-trace-ks-negative", lambda: TangentKernel(trace_ks=(-1,)), ValueError, r"`trace_ks`"),
    ("tk-on-unsupported-unknown", lambda: TangentKernel(on_unsupported="maybe"), ValueError, r"`on_unsupported`"),
    ("tk-unknown-layer", measure(TangentKernel(layers=["nope"])), ValueError, r"nope"),
    ("tk-mode-unknown", lambda: TangentKernel(mode="test"), ValueError, r"`mode`"),
    ("tc-unknown-layer", measure(TangentComplexity(layers=["nope"])), ValueError, r"nope"),
    ("fs-n-points-0", lambda: FourierSpectrum(n_points=0), ValueError, r"`n_points`"),
    ("fs-interval-reversed", lambda: FourierSpectrum(interval=(1.0, 0.0)), ValueError, r"`interval`"),
    ("fs-basis-unknown", lambda: FourierSpectrum(basis="wavelet"), ValueError, r"`basis`"),
    ("mi-method-unknown", lambda: MutualInformation(method="magic"), ValueError, r"`method`"),
    (
        "mi-between-unknown-module",
        measure(MutualInformation(between=("input", "nope"), method="ksg")),
        ValueError,
        r"nope",
    ),
    ("wi-beta-negative", lambda: WeightInformation(beta=-1.0), ValueError, r"`beta`"),
    ("wi-method-unknown", lambda: WeightInformation(method="exact"), ValueError, r"`method`"),
    ("wi-hessian-unknown", lambda: WeightInformation(hessian="fisher"), ValueError, r"`hessian`"),
    ("wi-n-probes-0", lambda: WeightInformation(n_probes=0), ValueError, r"`n_probes`"),
]

MONITOR_CASES = [
    ("mon-model-not-module", monitor(model="mlp"), TypeError, r"`model`"),
    ("mon-probes-empty", monitor(probes=[]), ValueError, r"`probes`"),
    ("mon-probes-class", monitor(probes=[SpectralNorm]), TypeError, r"`probes\[0\]`.*SpectralNorm\(\)"),
    ("mon-probes-not-probe", monitor(probes=["spectral_norm"]), TypeError, r"`probes"),
    ("mon-probe-twice", monitor(probes=[SpectralNorm(), SpectralNorm()]), ValueError, r"`probes`.*distinct"),
    ("mon-data-not-mapping", monitor(probes=[Performance()], data=(X, Y)), TypeError, r"`data`"),
    ("mon-data-not-pair", monitor(probes=[Performance()], data={"train": X}), TypeError, r"`data\['train'\]`"),
    ("mon-data-y-count", monitor(probes=[Performance()], data={"train": (X, Y[:2])}), ValueError, r"`data"),
    ("mon-data-dtype", monitor(probes=[Performance()], data={"train": (X.double(), Y)}), TypeError, r"dtype"),
    ("mon-data-missing", monitor(probes=[Performance()]), ValueError, r"`data`"),
    ("mon-labels-missing", monitor(probes=[Performance()], data={"train": (X, None)}), ValueError, r"labels"),
    ("mon-every-zero", monitor(every=0), ValueError, r"`every`"),
    ("mon-every-string", monitor(every="often"), ValueError, r"`every`|schedule"),
    ("mon-on-error-unknown", monitor(on_error="ignore"), ValueError, r"`on_error`"),
    ("mon-closed-step", closed_monitor_step, MonitorClosedError, r"close\(\)"),
    ("mon-step-float", lambda: jacspec.Monitor(mlp(), [SpectralNorm()]).step(1.5), TypeError, r"`step`"),
    (
        "mon-attach-not-optimizer",
        lambda: jacspec.Monitor(mlp(), [SpectralNorm()]).attach("sgd"),
        TypeError,
        r"`optimizer`",
    ),
    ("mon-callback-not-callable", lambda: jacspec.Monitor(mlp(), [SpectralNorm()]).add_callback(3), TypeError, r"`fn`"),
]

FIT_CASES = [
    ("fit-lognormal-negative", lambda: fit.lognormal(np.array([1.0, -2.0, 3.0] * 10)), ValueError, r"positive"),
    ("fit-lognormal-empty", lambda: fit.lognormal(np.array([])), ValueError, r"values|at least"),
    ("fit-power-law-xmin-negative", lambda: fit.power_law(np.linspace(1, 10, 100), xmin=-1.0), ValueError, r"xmin"),
    ("fit-power-law-nan", lambda: fit.power_law(np.array([1.0, np.nan] * 50)), ValueError, r"finite|NaN|nan"),
]


@pytest.mark.parametrize(
    ("case", "call", "error", "match"),
    PROBE_CASES + MONITOR_CASES + FIT_CASES,
    ids=[c[0] for c in PROBE_CASES + MONITOR_CASES + FIT_CASES],
)
def test_bad_input_is_answered_clearly(case, call, error, match):
    assert issubclass(error, (TypeError, ValueError))
    with pytest.raises(error, match=match) as info:
        call()
    assert "Traceback" not in str(info.value)


def test_the_table_has_at_least_fifty_cases():
    assert len(PROBE_CASES + MONITOR_CASES + FIT_CASES) >= 50


REFUSED_CALLS = {
    "pj-x-wrong-width": (PointJacobian, torch.randn(6, 7), Y),
    "tk-x-nan": (TangentKernel, NAN_X, Y),
    "perf-y-out-of-range": (Performance, X, Y + 5),
    "tk-unknown-layer": (lambda: TangentKernel(layers=["nope"]), X, Y),
}


@pytest.mark.parametrize("case", sorted(REFUSED_CALLS))
def test_a_refused_probe_call_leaves_the_model_as_it_was(case):
    make, bad_x, bad_y = REFUSED_CALLS[case]
    probe = make()
    model = mlp().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises((TypeError, ValueError)):
        probe.measure(model, bad_x, bad_y)
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert torch.equal(rng, torch.get_rng_state())


def test_a_refused_monitor_leaves_an_existing_run_untouched(tmp_path):
    path = tmp_path / "run.nc"
    with jacspec.Monitor(mlp(), [SpectralNorm()], every=1, path=path) as m:
        m.step(0)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises((ValueError, FileExistsError), match="resume|overwrite"):
        jacspec.Monitor(mlp(), [SpectralNorm()], every=1, path=path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
