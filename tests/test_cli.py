"""The command line: the demo (shortened), the report and the probe list."""

import subprocess
import sys

import pytest

import jacspec
from jacspec.cli import demo, main


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory):
    """One shortened demo run (1 epoch) shared by the tests of this module."""
    return demo(tmp_path_factory.mktemp("demo"), epochs=1, every=10, progress=False)


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


def test_report_and_probes_commands(demo_result, tmp_path, capsys):
    result = demo_result
    assert main(["report", str(result["run"]), "--figure", str(tmp_path / "report.png")]) == 0
    out = capsys.readouterr().out
    assert "performance" in out and "accuracy" in out and (tmp_path / "report.png").exists()
    assert main(["probes"]) == 0
    assert "spectral_norm" in capsys.readouterr().out


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "jacspec", "probes"], capture_output=True, text=True, check=True)
    assert "spectral_norm" in out.stdout
