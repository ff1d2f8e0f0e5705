"""The run file: netCDF round trip, resume, refusal to overwrite, foreign files, SIGKILL safety."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr

import jacspec
from jacspec.probes import Probe, SpectralNorm
from jacspec.store import RunFileError, RunStore

from zoo import mlp


class Activations(Probe):
    """Per-example outputs of the model: a (sample, unit) variable plus a scalar, with attrs."""

    name = "activations"

    def measure(self, model, x=None, y=None):
        with torch.no_grad():
            out = model(x).numpy()
        return xr.Dataset(
            {
                "output": (("sample", "unit"), out, {"long_name": "model output", "units": "1"}),
                "output_norm": ((), float(np.linalg.norm(out)), {"long_name": "Frobenius norm", "units": "1"}),
            },
            coords={"sample": np.arange(out.shape[0]), "unit": [f"u{i}" for i in range(out.shape[1])]},
            attrs={"note": "test"},
        )


def _expected(results_by_step):
    """Concatenate in-memory probe results along split and step (the reference for the file)."""
    steps = sorted(results_by_step)
    per_step = []
    for step in steps:
        by_split = results_by_step[step]
        if list(by_split) == [None]:
            per_step.append(by_split[None])
        else:
            splits = list(by_split)
            per_step.append(xr.concat([by_split[s] for s in splits], dim="split").assign_coords(split=splits))
    out = xr.concat(per_step, dim="step").assign_coords(step=np.asarray(steps, dtype=np.int64))
    out["step"].attrs = {"long_name": "training step", "units": "1"}
    if "split" in out.dims:
        out["split"].attrs = {"long_name": "data split"}
    return out


def test_round_trip_is_identical(tmp_path):
    torch.manual_seed(0)
    model = mlp()
    data = {"train": (torch.randn(7, 6), None), "test": (torch.randn(7, 6), None)}
    kept = {}
    monitor = jacspec.Monitor(model, [Activations(), SpectralNorm()], data=data, every=3, path=tmp_path / "run.nc")
    monitor.add_callback(
        lambda step, split, name, ds: kept.setdefault(name, {}).setdefault(step, {}).update({split: ds})
    )
    for step in range(10):
        with torch.no_grad():
            model[0].weight.add_(0.01)
        monitor.step(step)
    tree = jacspec.open_run(tmp_path / "run.nc")
    assert set(tree.children) == {"activations", "spectral_norm"}
    for name in ("activations", "spectral_norm"):
        got = tree[name].to_dataset(inherit=False).drop_vars(["wall_time", "probe_seconds"])
        xr.testing.assert_identical(got, _expected(kept[name]))
    assert tree["activations"].ds["output"].dims == ("step", "split", "sample", "unit")
    assert list(tree["activations"].ds["step"].values) == [0, 3, 6, 9]
    assert tree.attrs["jacspec_format"] == "jacspec-run"
    assert tree.attrs["torch_version"] == torch.__version__


def test_splits_of_different_sizes_are_padded(tmp_path):
    model = mlp()
    data = {"train": (torch.randn(5, 6), None), "test": (torch.randn(3, 6), None)}
    monitor = jacspec.Monitor(model, [Activations()], data=data, every=1, path=tmp_path / "run.nc")
    monitor.step(0)
    ds = jacspec.open_run(tmp_path / "run.nc")["activations"].ds
    assert ds.sizes["sample"] == 5
    assert np.isnan(ds["output"].sel(split="test").values[0, 3:]).all()
    assert np.isfinite(ds["output"].sel(split="train").values).all()


def test_resume_appends_after_last_step(tmp_path):
    path = tmp_path / "run.nc"
    model = mlp()
    first = jacspec.Monitor(model, [SpectralNorm()], every=2, path=path)
    for step in range(5):
        first.step(step)
    with pytest.raises(FileExistsError, match="resume=True"):
        jacspec.Monitor(model, [SpectralNorm()], every=2, path=path)
    first.close()  # a second Monitor on an open run is refused (tests/test_store_scaling.py)
    second = jacspec.Monitor(model, [SpectralNorm()], every=2, path=path, resume=True)
    for step in range(3, 9):  # steps up to 4 are already stored and are skipped
        second.step(step)
    steps = jacspec.open_run(path)["spectral_norm"].ds["step"].values
    assert list(steps) == [0, 2, 4, 6, 8]


def test_existing_file_is_never_overwritten_silently(tmp_path):
    path = tmp_path / "run.nc"
    jacspec.Monitor(mlp(), [SpectralNorm()], every=1, path=path).step(0)
    size = path.stat().st_size
    with pytest.raises(FileExistsError, match="already exists"):
        jacspec.Monitor(mlp(), [SpectralNorm()], every=1, path=path)
    assert path.stat().st_size == size
    assert list(jacspec.open_run(path)["spectral_norm"].ds["step"].values) == [0]


@pytest.mark.parametrize("resume", [False, True])
def test_foreign_file_is_refused_and_kept(tmp_path, resume):
    path = tmp_path / "other.nc"
    with netCDF4.Dataset(path, "w") as handle:
        handle.title = "somebody else's data"
    content = path.read_bytes()
    with pytest.raises(RunFileError, match="written by something else"):
        jacspec.Monitor(mlp(), [SpectralNorm()], every=1, path=path, resume=resume, overwrite=not resume)
    with pytest.raises(RunFileError, match="written by something else"):
        jacspec.open_run(path)
    assert path.read_bytes() == content


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("not netcdf")
    with pytest.raises(RunFileError, match="not a readable netCDF4 file"):
        jacspec.open_run(path)


def test_path_in_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        jacspec.Monitor(mlp(), [SpectralNorm()], path=tmp_path / "nowhere" / "run.nc")


def test_steps_must_increase(tmp_path):
    store = RunStore(tmp_path / "run.nc")
    ds = SpectralNorm().measure(mlp())
    store.append(5, {"spectral_norm": {None: ds}})
    with pytest.raises(RunFileError, match="not after the last stored step"):
        store.append(5, {"spectral_norm": {None: ds}})
    assert list(jacspec.open_run(tmp_path / "run.nc")["spectral_norm"].ds["step"].values) == [5]


CHILD = textwrap.dedent(
    """
    import sys, numpy as np, torch, xarray as xr
    import jacspec
    from jacspec.probes import Probe

    class Big(Probe):
        name = "big"
        needs_input = False
        def measure(self, model, x=None, y=None):
            g = np.random.default_rng(int(model.step))
            return xr.Dataset({"values": (("sample", "unit"), g.normal(size=(400, 64)))})

    model = torch.nn.Linear(2, 2)
    model.step = 0
    monitor = jacspec.Monitor(model, [Big()], every=1, path=sys.argv[1], resume=True)
    step = 0 if monitor.store.last_step is None else monitor.store.last_step + 1
    while True:
        model.step = step
        monitor.step(step)
        print(step, flush=True)
        step += 1
    """
)


def test_sigkill_at_random_moments_leaves_a_readable_file(tmp_path):
    """Kill a writing process with SIGKILL at random moments; every finished step must survive."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    path = tmp_path / "killed.nc"
    rng = random.Random(1234)
    reported: list[int] = []
    for _ in range(4):  # 50 kills of a store-only writer: tests/test_store_scaling.py
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        first = proc.stdout.readline()  # wait until the child writes (imports take a while)
        assert first.strip(), proc.stderr.read()
        reported.append(int(first))
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        reported += [int(line) for line in out.split()]
        ds = jacspec.open_run(path)["big"].ds
        steps = list(ds["step"].values)
        # every reported step is on disk; at most one more (written, not yet reported)
        assert steps[: len(reported)] == reported
        assert steps == list(range(len(steps)))
        assert len(steps) - len(reported) in (0, 1)
        for step in steps:  # contents are whole, not half-written
            expected = np.random.default_rng(step).normal(size=(400, 64))
            np.testing.assert_array_equal(ds["values"].sel(step=step).values, expected)
        reported = steps
    assert not (tmp_path / "killed.nc.partial").exists() or len(reported) > 0
