"""The command line: the demo (shortened), the report and the probe list."""

import subprocess
import sys

import jacspec
from jacspec.cli import demo, main


def test_demo_writes_run_and_figure(tmp_path):
    result = demo(tmp_path, epochs=1, every=10, progress=False)
    assert result["run"].exists() and result["figure"].stat().st_size > 5000
    tree = jacspec.open_run(result["run"])
    assert {"performance", "spectral_norm"} <= set(tree.children)
    assert list(tree["performance"].ds["split"].values) == ["train", "test"]
    assert 0.0 <= result["test_accuracy"] <= 1.0
    again = demo(tmp_path, epochs=1, every=10, progress=False)  # the demo replaces its own run
    assert again["run"] == result["run"]


def test_report_and_probes_commands(tmp_path, capsys):
    result = demo(tmp_path, epochs=1, every=10, progress=False)
    assert main(["report", str(result["run"]), "--figure", str(tmp_path / "report.png")]) == 0
    out = capsys.readouterr().out
    assert "performance" in out and "accuracy" in out and (tmp_path / "report.png").exists()
    assert main(["probes"]) == 0
    assert "spectral_norm" in capsys.readouterr().out


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "jacspec", "probes"], capture_output=True, text=True, check=True)
    assert "spectral_norm" in out.stdout
