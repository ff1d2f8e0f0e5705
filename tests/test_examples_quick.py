"""Every example runs standalone with ``--quick`` and writes its figure where ``--out`` says.

Each script runs in a subprocess (cwd = a temporary folder, one torch thread) as a user would run it:
``python examples/X.py --help`` must print its usage, and ``python examples/X.py --quick --out DIR`` must
exit 0 and write its figure(s) into DIR, never into ``docs/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# the figures each example writes into --out (the documentation's figures carry the same names)
FIGURES = {
    "custom_probe.py": ["custom_probe.png"],
    "disk_tangent_kernel.py": ["tangent_kernel_disk_eigenfunctions.png", "tangent_kernel_disk_ratio.png"],
    "information_plane.py": ["information_plane.png"],
    "label_noise_sweep.py": ["label_noise_sweep.png"],
    "manifold_kernel_spectra.py": ["fourier_manifold_kernel.png"],
    "mdl_label_noise.py": ["point_jacobian_label_noise.png"],
    "mine_gaussians.py": ["mine_gaussians.png"],
    "ntk_alignment_digits.py": ["tangent_kernel_digits.png", "tangent_kernel_digits_layers.png"],
    "spectral_bias.py": ["spectral_bias.png"],
    "weight_information_random_labels.py": ["weight_information_random_labels.png"],
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(FIGURES)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_example_quick(name, tmp_path):
    script = EXAMPLES / name
    docs_before = {p.name: p.stat().st_mtime_ns for p in (ROOT / "docs").glob("*.png")}
    usage = _run([str(script), "--help"], tmp_path)
    assert usage.returncode == 0, usage.stderr
    assert "--quick" in usage.stdout and "--out" in usage.stdout
    out = tmp_path / "figures"
    result = _run([str(script), "--quick", "--out", str(out)], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for figure in FIGURES[name]:
        path = out / figure
        assert path.is_file(), f"{name} did not write {figure} into --out: {sorted(os.listdir(out))}"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    # nothing was written into the documentation's figures
    assert {p.name: p.stat().st_mtime_ns for p in (ROOT / "docs").glob("*.png")} == docs_before
