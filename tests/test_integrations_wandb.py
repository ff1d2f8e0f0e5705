"""jacspec.integrations.wandb.scalars: the values logged (a spy on run.log), and a real offline run."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("wandb", reason="the wandb extra is not installed")

import jacspec  # noqa: E402
from jacspec.integrations.wandb import scalars  # noqa: E402
from jacspec.probes import Performance, SpectralNorm  # noqa: E402


class SpyRun:
    def __init__(self, log=None):
        self.calls = []
        self._log = log

    def log(self, values, step=None):
        self.calls.append((step, dict(values)))
        if self._log is not None:
            self._log(values, step=step)


def train(tmp_path, callback, steps=6):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    probes = [Performance(), SpectralNorm()]
    data = {"train": (x[:30], y[:30]), "test": (x[30:], y[30:])}
    with jacspec.Monitor(model, probes, data=data, every=3, path=tmp_path / "run.nc", progress=False) as monitor:
        monitor.add_callback(callback)
        monitor.attach(optimizer)
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(model(x[:30]), y[:30]).backward()
            optimizer.step()
    return jacspec.open_run(tmp_path / "run.nc")


def check_calls(calls, tree):
    # reference: the run file read back with xarray; one log call per probe/split result with 0-d variables
    perf = tree["performance"].ds
    expected = []
    for step in (3, 6):
        for split in ("train", "test"):
            expected.append(
                (
                    step,
                    {
                        f"jacspec/performance/{split}/loss": float(perf["loss"].sel(step=step, split=split)),
                        f"jacspec/performance/{split}/accuracy": float(perf["accuracy"].sel(step=step, split=split)),
                    },
                )
            )
        norms = tree["spectral_norm"].ds  # its one 0-d variable, logged without a split
        expected.append(
            (step, {"jacspec/spectral_norm/nonfinite_count": float(norms["nonfinite_count"].sel(step=step))})
        )
    assert [step for step, _ in calls] == [step for step, _ in expected]
    for (_, got), (_, want) in zip(calls, expected):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-12)


def test_logged_values_match_the_run_file(tmp_path):
    run = SpyRun()
    tree = train(tmp_path, scalars(run))
    check_calls(run.calls, tree)


def test_real_offline_run(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(mode="offline", dir=str(tmp_path), project="jacspec-test", settings=wandb.Settings(silent=True))
    try:
        spy = SpyRun(log=run.log)
        monkeypatch.setattr(run, "log", spy.log)
        tree = train(tmp_path, scalars())  # the active run, wandb.run
        check_calls(spy.calls, tree)
        # the values went through wandb itself: its summary holds the last row it committed (step 3 or 6;
        # wandb commits a row when a later step arrives or at finish)
        step = run.summary["_step"]
        assert step in (3, 6)
        assert run.summary["jacspec/performance/test/loss"] == pytest.approx(
            float(tree["performance"].ds["loss"].sel(step=step, split="test")), rel=1e-12
        )
    finally:
        run.finish()
    assert list(tmp_path.glob("wandb/offline-run-*"))


def test_bad_arguments(monkeypatch):
    import wandb

    monkeypatch.setattr(wandb, "run", None)
    with pytest.raises(ValueError, match="wandb.init"):
        scalars()
    with pytest.raises(TypeError, match="log"):
        scalars(object())
