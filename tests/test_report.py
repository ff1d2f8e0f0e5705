"""`jacspec report`, `info` and `compare` on a small run made here by a Monitor (tiny MLP, few steps)."""

import base64
import re

import numpy as np
import pytest
import torch
from torch import nn

import jacspec
from jacspec.cli import main
from jacspec.probes import Performance, PointJacobian, SpectralNorm, TangentKernel, WeightInformation

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

GROUPS = {"performance", "spectral_norm", "point_jacobian", "tangent_kernel", "weight_information"}


def _train(path, seed=0, steps=3, all_probes=True):
    """A 6 -> 8 -> 3 ReLU MLP trained by SGD for `steps` steps, probed every step, written to `path`."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(36, 6), torch.randint(0, 3, (36,))
    data = {"train": (x[:24], y[:24]), "test": (x[24:], y[24:])}
    probes = [Performance(), SpectralNorm(), PointJacobian(), TangentKernel(), WeightInformation(hessian="ggn")]
    probes = probes if all_probes else probes[:1]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    with jacspec.Monitor(model, probes, data=data, every=1, path=path, progress=False) as monitor:
        monitor.attach(optimizer, probe_initial=True)
        for _ in range(steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(data["train"][0]), data["train"][1]).backward()
            optimizer.step()
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    return [_train(folder / "a.nc", seed=0), _train(folder / "b.nc", seed=1, all_probes=False)]


def test_report_writes_a_png_per_probe_group_and_a_self_contained_page(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(runs[0]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    tree = jacspec.open_run(runs[0])
    groups = set(tree.children)
    assert groups == GROUPS
    pngs = {p.stem for p in out.glob("*.png")}
    assert pngs == groups  # one figure per probe group, named after it
    page = (out / "report.html").read_text(encoding="utf-8")
    inlined = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(inlined) == len(groups)
    # the inlined images are the PNG files, byte for byte (so the page needs nothing beside it)
    assert sorted(base64.b64decode(i) for i in inlined) == sorted((out / f"{g}.png").read_bytes() for g in groups)
    assert 'src="http' not in page and "<script" not in page
    # key numbers: first and last probed step of a 0-d variable, per split, read back from the run itself
    loss = tree["performance"].ds["loss"]
    for split in ("train", "test"):
        first, last = float(loss.sel(split=split).isel(step=0)), float(loss.sel(split=split).isel(step=-1))
        assert f"<td>{first:.6g}</td>" in page and f"<td>{last:.6g}</td>" in page
    assert "jacspec_version" in page and "torch_version" in page  # provenance
    assert "Is My Neural Net Driven by the MDL Principle?" in page  # full citation beside point_jacobian
    assert not re.search(r"paper 00\d", page, flags=re.IGNORECASE)
    assert "performance" in text and "report written to" in text


def test_summary_rows_are_the_first_and_last_finite_values():
    import xarray as xr

    from jacspec.plot.report import summary_rows

    ds = xr.Dataset(
        {
            "loss": (("step", "split"), [[np.nan, 3.0], [2.0, 1.0], [0.5, np.nan]]),
            "spectrum": (("step", "eigen"), np.ones((3, 4))),  # not scalar per step: left out
        },
        coords={"step": [0, 10, 20], "split": ["train", "test"]},
    )
    rows = {r["split"]: r for r in summary_rows(ds)}
    assert set(rows) == {"train", "test"}
    # by hand: train's first finite value is at step 10, test's last at step 10
    assert (rows["train"]["first_step"], rows["train"]["first"], rows["train"]["last_step"], rows["train"]["last"]) == (
        10,
        2.0,
        20,
        0.5,
    )
    assert (rows["test"]["first_step"], rows["test"]["first"], rows["test"]["last_step"], rows["test"]["last"]) == (
        0,
        3.0,
        10,
        1.0,
    )


def test_info_lists_groups_variables_dims_steps_and_provenance(runs, capsys):
    assert main(["info", str(runs[0])]) == 0
    out = capsys.readouterr().out
    tree = jacspec.open_run(runs[0])
    for name, node in tree.children.items():
        ds = node.to_dataset(inherit=False)
        assert f"group {name}: {ds.sizes['step']} steps" in out
        for var in ds.data_vars:
            dims = ", ".join(f"{d}={n}" for d, n in ds[var].sizes.items())
            assert re.search(rf"^\s+{var}\s+\({re.escape(dims)}\)", out, flags=re.MULTILINE), var
    assert "steps (0, 1, 2, 3)" in out
    assert "torch_version" in out and "monitor_config" in out


def test_compare_overlays_runs_one_line_per_run_and_split(runs, tmp_path, capsys):
    out = tmp_path / "cmp" / "accuracy.png"
    assert main(["compare", *map(str, runs), "--var", "performance/accuracy", "--out", str(out)]) == 0
    assert out.stat().st_size > 5000
    from jacspec.plot.report import compare_figure

    series = {p.stem: jacspec.open_run(p)["performance"].ds["accuracy"] for p in runs}
    fig = compare_figure(series, "performance/accuracy")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4  # 2 runs x 2 splits
    # each line's y data is the run's values (reference: the run file read directly)
    drawn = {line.get_label(): line.get_ydata() for line in lines}
    for label, da in series.items():
        np.testing.assert_array_equal(drawn[f"{label} (test)"], da.sel(split="test").values)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == list(drawn)


def test_compare_refuses_bad_variables_in_one_line(runs, tmp_path, capsys):
    for var, message in (
        ("performance", "probe/variable"),
        ("nope/loss", "no group 'nope'"),
        ("performance/nope", "no variable 'nope'"),
        ("point_jacobian/singular_values", "one value per step"),
    ):
        assert main(["compare", str(runs[0]), "--var", var, "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x.png").exists()
