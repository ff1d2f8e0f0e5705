"""Monitor: schedules, optimizer attachment, callbacks, custom probes, bad input, non-intrusiveness."""

import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import jacspec
from jacspec.datasets import digits
from jacspec.monitor import CallbackError, StopTraining
from jacspec.probes import Performance, Probe, SpectralNorm, available_probes, get_probe
from jacspec.schedules import Every, LogSpaced, Steps, as_schedule

from zoo import mlp


class WeightNorm(Probe):
    """The README's custom probe: the norm of every parameter tensor."""

    name = "weight_norm"
    needs_input = False

    def measure(self, model, x=None, y=None):
        names = [n for n, _ in model.named_parameters()]
        norms = [float(p.norm()) for p in model.parameters()]
        return xr.Dataset({"weight_norm": ("parameter", norms)}, coords={"parameter": names})


# -- schedules --------------------------------------------------------------------------------------


def test_schedules():
    assert [s for s in range(25) if Every(10)(s)] == [0, 10, 20]
    assert LogSpaced(10).steps(40) == [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32]
    log_steps = LogSpaced(4).steps(100000)
    ratios = np.diff(np.log10(log_steps[5:]))  # evenly spaced in log time once integers separate
    assert np.allclose(ratios, 0.25, atol=0.06)
    assert [s for s in range(10) if Steps([1, 5, 7])(s)] == [1, 5, 7]
    assert as_schedule("log").per_decade == 10
    assert as_schedule(range(0, 10, 3))(6)
    predicate = as_schedule(lambda s: s in (2, 3))
    assert predicate(2) and not predicate(4)


@pytest.mark.parametrize(
    "every, error, match",
    [
        (0, ValueError, "positive integer"),
        (-5, ValueError, "positive integer"),
        ("linear", ValueError, "'log'"),
        ([], ValueError, "empty"),
        ([1, -2], ValueError, "invalid"),
        (2.5, TypeError, "positive int"),
        (True, TypeError, "`every`"),
    ],
)
def test_bad_schedule(every, error, match):
    with pytest.raises(error, match=match):
        jacspec.Monitor(mlp(), [SpectralNorm()], every=every)


# -- attaching, stepping, callbacks -------------------------------------------------------------------


def _train(model, optimizer, x, y, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_attach_probes_selected_optimizer_steps(tmp_path):
    torch.manual_seed(0)
    model = mlp()
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    with jacspec.Monitor(
        model, [SpectralNorm(), Performance()], data={"train": (x, y)}, every=5, path=tmp_path / "r.nc"
    ) as monitor:
        monitor.add_callback(lambda step, split, name, ds: seen.append((step, split, name)))
        handle = monitor.attach(optimizer, probe_initial=True)
        _train(model, optimizer, x, y, 12)
        handle.remove()
        _train(model, optimizer, x, y, 10)  # detached: nothing more is probed
    assert seen == [
        (step, split, name)
        for step in (0, 5, 10)
        for name, split in (("spectral_norm", None), ("performance", "train"))
    ]
    tree = jacspec.open_run(tmp_path / "r.nc")
    assert list(tree["performance"].ds["step"].values) == [0, 5, 10]
    assert tree["performance"].ds["loss"].dims == ("step", "split")
    assert tree["spectral_norm"].ds["spectral_norm"].dims == ("step", "layer")


def test_step_in_a_hand_written_loop_and_force():
    monitor = jacspec.Monitor(mlp(), [SpectralNorm()], every=4)
    probed = [step for step in range(10) if monitor.step(step) is not None]
    assert probed == [0, 4, 8]
    assert monitor.step(9, force=True) is not None
    assert monitor.step() is None  # step 10 is not selected
    assert "spectral_norm" in monitor.last_results


def test_callback_that_raises_is_reported_and_run_goes_on(tmp_path):
    model = mlp()
    calls = []

    def broken(step, split, name, ds):
        raise KeyError("no such tag")

    monitor = jacspec.Monitor(model, [SpectralNorm()], every=1, path=tmp_path / "r.nc", callbacks=[broken])
    monitor.add_callback(lambda *args: calls.append(args[0]))
    with pytest.warns(CallbackError, match="no such tag"):
        monitor.step(0)
    with pytest.warns(CallbackError):
        monitor.step(1)
    assert calls == [0, 1]
    assert len(monitor.callback_errors) == 2
    assert list(jacspec.open_run(tmp_path / "r.nc")["spectral_norm"].ds["step"].values) == [0, 1]


def test_stop_training_from_a_callback(tmp_path):
    model = mlp()
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = jacspec.Monitor(model, [Performance()], data={"train": (x, y)}, every=2, path=tmp_path / "r.nc")

    @monitor.add_callback
    def stop_early(step, split, name, ds):
        if step >= 4:
            raise StopTraining(f"enough at step {step}")

    monitor.attach(optimizer)
    with pytest.raises(StopTraining, match="enough at step 4"):
        _train(model, optimizer, x, y, 100)
    assert list(jacspec.open_run(tmp_path / "r.nc")["performance"].ds["step"].values) == [2, 4]


def test_probe_error_keeps_earlier_steps(tmp_path):
    class Fragile(Probe):
        name = "fragile"
        needs_input = False

        def measure(self, model, x=None, y=None):
            if model[0].weight.detach().abs().max() > 5:
                raise FloatingPointError("weights blew up")
            return xr.Dataset({"max_weight": ((), float(model[0].weight.detach().abs().max()))})

    model = mlp()
    monitor = jacspec.Monitor(model, [Fragile()], every=1, path=tmp_path / "r.nc", on_error="raise")
    monitor.step(0)
    with torch.no_grad():
        model[0].weight.fill_(10.0)
    with pytest.raises(FloatingPointError, match="blew up"):
        monitor.step(1)
    assert list(jacspec.open_run(tmp_path / "r.nc")["fragile"].ds["step"].values) == [0]


# -- custom probes and registration -----------------------------------------------------------------


def test_custom_probe_works_like_a_builtin(tmp_path):
    from jacspec.plot import plot_run

    model = mlp()
    monitor = jacspec.Monitor(model, [WeightNorm(), SpectralNorm()], every=1, path=tmp_path / "r.nc")
    for step in range(3):
        monitor.step(step)
    tree = jacspec.open_run(tmp_path / "r.nc")
    assert tree["weight_norm"].ds["weight_norm"].dims == ("step", "parameter")
    assert tree["weight_norm"].attrs["probe"] == "weight_norm"
    fig = plot_run(tree, tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 1000
    assert any("weight_norm" in ax.get_title() for ax in fig.axes)


def test_entry_point_registration(tmp_path, monkeypatch):
    package = tmp_path / "thirdparty_probe.py"
    package.write_text(
        "import xarray as xr\nfrom jacspec.probes import Probe\n"
        "class ParameterCount(Probe):\n    name = 'parameter_count'\n    needs_input = False\n"
        "    def measure(self, model, x=None, y=None):\n"
        "        return xr.Dataset({'count': ((), sum(p.numel() for p in model.parameters()))})\n"
    )
    dist = tmp_path / "thirdparty_probe-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-probe\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[jacspec.probes]\nparameter_count = thirdparty_probe:ParameterCount\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    probes = available_probes()
    assert "parameter_count" in probes and "spectral_norm" in probes
    assert int(get_probe("parameter_count").measure(mlp())["count"]) == sum(p.numel() for p in mlp().parameters())
    sys.modules.pop("thirdparty_probe", None)


def test_get_probe_unknown_name():
    with pytest.raises(ValueError, match="Unknown probe 'nope'"):
        get_probe("nope")


# -- bad input --------------------------------------------------------------------------------------

X, Y = torch.randn(4, 6), torch.randint(0, 3, (4,))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"model": nn.ReLU()}, ValueError, "at least one parameter"),
        ({"probes": []}, ValueError, "at least one probe"),
        ({"probes": [SpectralNorm]}, TypeError, r"Instantiate it: SpectralNorm\(\)"),
        ({"probes": ["spectral_norm"]}, TypeError, r"`probes\[0\]` must be a jacspec.probes.Probe"),
        ({"probes": [SpectralNorm(), SpectralNorm()]}, ValueError, "distinct names"),
        ({"data": {"train": X}}, TypeError, r"`data\['train'\]` must be a pair"),
        ({"data": {"train": (X, Y, Y)}}, TypeError, "must be a pair"),
        ({"data": [(X, Y)]}, TypeError, "`data` must be a mapping"),
        ({"data": {"train": (X.numpy(), Y)}}, TypeError, "must be a torch.Tensor"),
        ({"data": {"train": (X, Y[:2])}}, ValueError, "x has 4 examples but y has 2"),
        ({"data": {"train": (X.double(), Y)}}, TypeError, "dtype torch.float64 but the model"),
        ({"probes": [Performance()], "data": {"train": (X, None)}}, ValueError, "needs labels"),
        ({"probes": [Performance()], "data": None}, ValueError, "needs input data"),
        ({"every": 0}, ValueError, "`every` must be a positive integer"),
    ],
    ids=[
        "no-parameters",
        "empty-probes",
        "probe-class",
        "probe-string",
        "duplicate-names",
        "split-not-pair",
        "split-triple",
        "data-not-mapping",
        "x-not-tensor",
        "xy-length",
        "x-wrong-dtype",
        "labels-missing",
        "data-missing",
        "every-zero",
    ],
)
def test_monitor_bad_input(kwargs, error, match):
    arguments = {"model": mlp(), "probes": [SpectralNorm()], "data": {"train": (X, Y)}, "every": 1}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        jacspec.Monitor(**arguments)


def test_bad_input_never_touches_an_existing_run(tmp_path):
    path = tmp_path / "r.nc"
    jacspec.Monitor(mlp(), [SpectralNorm()], every=1, path=path).step(0)
    before = path.read_bytes()
    for kwargs in ({"probes": []}, {"every": -1}, {"data": {"train": X}}):
        arguments = {"model": mlp(), "probes": [SpectralNorm()], "every": 1, "path": path, "resume": True}
        arguments.update(kwargs)
        with pytest.raises((TypeError, ValueError)):
            jacspec.Monitor(**arguments)
    assert path.read_bytes() == before


def test_attach_needs_an_optimizer():
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        jacspec.Monitor(mlp(), [SpectralNorm()]).attach("sgd")


# -- non-intrusiveness ------------------------------------------------------------------------------


def _seeded_digits_run(monitor_path=None):
    """200 SGD-momentum steps of a dropout MLP on digits with a shuffling DataLoader."""
    torch.manual_seed(123)
    data = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(TensorDataset(*data["train"]), batch_size=32, shuffle=True)
    monitor = None
    if monitor_path is not None:
        monitor = jacspec.Monitor(
            model, [SpectralNorm(), Performance()], data=data, every=10, path=monitor_path, progress=False
        )
        monitor.attach(optimizer, probe_initial=True)
    step = 0
    model.train()
    while step < 200:
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
            step += 1
            if step == 200:
                break
    if monitor is not None:
        monitor.close()
    return model, optimizer, torch.get_rng_state()


def test_training_with_monitor_is_bit_identical(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CallbackError)
        plain_model, plain_opt, plain_rng = _seeded_digits_run()
        probed_model, probed_opt, probed_rng = _seeded_digits_run(tmp_path / "probed.nc")
    for (name, a), (_, b) in zip(plain_model.state_dict().items(), probed_model.state_dict().items()):
        assert torch.equal(a, b), name
    for a, b in zip(plain_opt.state_dict()["state"].values(), probed_opt.state_dict()["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert torch.equal(plain_rng, probed_rng)
    steps = jacspec.open_run(tmp_path / "probed.nc")["spectral_norm"].ds["step"].values
    assert list(steps) == list(range(0, 201, 10))


def test_custom_probe_example_runs(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "custom_probe", Path(__file__).parents[1] / "examples" / "custom_probe.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.main(tmp_path, epochs=1)
    ds = jacspec.open_run(run)["logit_margin"].ds
    assert ds["margin_quantile"].dims == ("step", "split", "quantile")
    assert ds["mean_margin"].sel(split="train").values[-1] > ds["mean_margin"].sel(split="train").values[0]
    assert (tmp_path / "custom_probe.png").exists()
