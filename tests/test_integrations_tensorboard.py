"""jacspec.integrations.tensorboard.scalars: every 0-d result at its step, read back from the event file."""

import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

import jacspec  # noqa: E402
from jacspec.integrations.tensorboard import scalars  # noqa: E402
from jacspec.probes import Performance, Probe, SpectralNorm  # noqa: E402


class TotalNorm(Probe):
    """A probe without data: one 0-d variable, one integer 0-d variable and one 1-d variable."""

    name = "total_norm"
    needs_input = False

    def measure(self, model, x=None, y=None):
        norms = [float(p.detach().norm()) for p in model.parameters()]
        return xr.Dataset(
            {"total_norm": ((), sum(n**2 for n in norms) ** 0.5), "count": ((), len(norms)), "norms": ("p", norms)}
        )


def run_monitor(tmp_path, callback, steps=12, every=4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    data = {"train": (x[:48], y[:48]), "test": (x[48:], y[48:])}
    probes = [Performance(), SpectralNorm(), TotalNorm()]
    with jacspec.Monitor(model, probes, data=data, every=every, path=tmp_path / "run.nc", progress=False) as monitor:
        monitor.add_callback(callback)
        monitor.attach(optimizer)
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(model(x[:48]), y[:48]).backward()
            optimizer.step()
    return jacspec.open_run(tmp_path / "run.nc")


def expected_scalars(tree, prefix="jacspec"):
    """Reference: every 0-d variable of the run file, by tag and step (read back with xarray)."""
    out = {}
    for group in ("performance", "spectral_norm", "total_norm"):
        ds = tree[group].ds
        for name, variable in ds.data_vars.items():
            if name in ("wall_time", "probe_seconds"):  # the run store's bookkeeping, not probe results
                continue
            extra = [d for d in variable.dims if d not in ("step", "split")]
            if extra:
                continue
            for step in ds["step"].values.tolist():
                if "split" in variable.dims:
                    for split in ds["split"].values.tolist():
                        tag = f"{prefix}/{group}/{split}/{name}"
                        out.setdefault(tag, {})[step] = float(variable.sel(step=step, split=split))
                else:
                    out.setdefault(f"{prefix}/{group}/{name}", {})[step] = float(variable.sel(step=step))
    return out


def read_events(log_dir):
    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return {tag: {e.step: e.value for e in accumulator.Scalars(tag)} for tag in accumulator.Tags()["scalars"]}


def test_event_file_holds_every_scalar_at_its_step(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    tree = run_monitor(tmp_path, scalars(writer))
    writer.close()
    events = read_events(tmp_path / "tb")
    expected = expected_scalars(tree)
    assert set(events) == set(expected)
    assert set(expected) == {
        "jacspec/performance/train/loss",
        "jacspec/performance/train/accuracy",
        "jacspec/performance/test/loss",
        "jacspec/performance/test/accuracy",
        "jacspec/total_norm/total_norm",
        "jacspec/total_norm/count",
        "jacspec/spectral_norm/nonfinite_count",
    }
    for tag, by_step in expected.items():
        assert sorted(events[tag]) == [4, 8, 12]
        for step, value in by_step.items():
            assert events[tag][step] == pytest.approx(value, rel=1e-6), (tag, step)  # stored as float32
    assert events["jacspec/total_norm/count"][4] == 4.0


def test_log_directory_and_prefix(tmp_path):
    callback = scalars(tmp_path / "tb", prefix="probes")
    run_monitor(tmp_path, callback, steps=4)
    callback.writer.close()
    events = read_events(tmp_path / "tb")
    assert "probes/performance/test/loss" in events and sorted(events["probes/performance/test/loss"]) == [4]


def test_bad_arguments():
    with pytest.raises(TypeError, match="add_scalar"):
        scalars(object())
    with pytest.raises(TypeError, match="`prefix` must be a str"):
        scalars(SummaryWriter.__new__(SummaryWriter), prefix=3)
