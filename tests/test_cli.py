"""The command line: the demo (shortened), the report, the probe list, --version, help and bad files."""

import contextlib
import io
import re
import subprocess
import sys

import pytest

import jacspec
from jacspec.cli import demo, main


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory):
    """One shortened demo run (1 epoch) shared by the tests of this module, its stdout captured (not a TTY)."""
    stdout = io.StringIO()  # StringIO.isatty() is False: the demo must print plain progress lines
    with contextlib.redirect_stdout(stdout):
        result = demo(tmp_path_factory.mktemp("demo"), epochs=1, every=10, progress=True)
    result["stdout"] = stdout.getvalue()
    return result


def test_demo_writes_run_and_figure(demo_result):
    result = demo_result
    tmp_path = result["run"].parent
    assert result["run"].exists() and result["figure"].stat().st_size > 5000
    tree = jacspec.open_run(result["run"])
    assert {
        "performance",
        "spectral_norm",
        "fourier_spectrum",
        "weight_information",
        "point_jacobian",
        "mutual_information",
        "tangent_kernel",
    } <= set(tree.children)
    assert list(tree["performance"].ds["split"].values) == ["train", "test"]
    assert 0.0 <= result["test_accuracy"] <= 1.0
    again = demo(tmp_path, epochs=0, every=10, progress=False)  # the demo replaces its own run (step 0 only)
    assert again["run"] == result["run"]


def test_demo_prints_progress_without_a_terminal(demo_result):
    out = demo_result["stdout"]
    steps = [int(s) for s in re.findall(r"^probed step (\d+) ", out, flags=re.MULTILINE)]
    # one line per probed step: 1 epoch of the digits' training split in batches of 64, every 10 steps
    n_train = len(jacspec.datasets.digits()["train"][0])
    n_steps = -(-n_train // 64)
    assert steps == list(range(0, n_steps + 1, 10))
    assert re.search(rf"^epoch 1/1: step {n_steps}, mean training loss \d", out, flags=re.MULTILINE)


def test_report_and_probes_commands(demo_result, tmp_path, capsys):
    result = demo_result
    assert main(["report", str(result["run"]), "--figure", str(tmp_path / "report.png")]) == 0
    out = capsys.readouterr().out
    assert "performance" in out and "accuracy" in out and (tmp_path / "report.png").exists()
    assert main(["probes"]) == 0
    out = capsys.readouterr().out
    assert "spectral_norm" in out
    assert not re.search(r"paper 00\d", out, flags=re.IGNORECASE)  # full citations, never document numbers


def _jacspec(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jacspec", *args], capture_output=True, text=True, cwd=cwd)


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "jacspec", "probes"], capture_output=True, text=True, check=True)
    assert "spectral_norm" in out.stdout


def test_version_and_bare_help():
    version = _jacspec("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"jacspec {jacspec.__version__}"
    bare = _jacspec()
    assert bare.returncode == 0 and bare.stderr == ""
    assert bare.stdout.startswith("usage: jacspec") and all(c in bare.stdout for c in ("report", "info", "compare"))


def test_missing_and_foreign_files_one_line_exit_2(tmp_path):
    import numpy as np
    import xarray as xr

    text = tmp_path / "notes.txt"
    text.write_text("not a run\n")
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"t": ("x", np.arange(3.0))}, attrs={"title": "someone else's"}).to_netcdf(foreign, engine="netcdf4")
    cases = [
        (("report", str(tmp_path / "missing.nc")), "no such file"),
        (("info", str(text)), "not a readable jacspec run file"),
        (("report", str(foreign), "--out", str(tmp_path / "r")), "not a readable jacspec run file"),
        (("compare", str(foreign), "--var", "performance/loss"), "not a readable jacspec run file"),
    ]
    for args, message in cases[:2]:  # as subprocesses: the real exit code and stderr
        result = _jacspec(*args)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr
        assert result.stdout == ""
    for args, message in cases[2:]:  # in-process (same code path, faster)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            assert main(list(args)) == 2
        lines = stderr.getvalue().strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "r").exists()
