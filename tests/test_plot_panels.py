"""The figures: Dataset or DataTree in, optional ax, labels from long_name/units, legends only where they fit."""

import re

import numpy as np
import pytest
import xarray as xr

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jacspec.plot import (  # noqa: E402
    plot_fourier_spectrum,
    plot_group,
    plot_layer_alignment,
    plot_log_alpha_quantiles,
    plot_probe,
    plot_run,
    plot_spectral_norms,
    plot_tangent_kernel,
    plot_variable,
    plot_weight_information,
)
from jacspec.plot._common import axis_label, cite, layer_labels, log_time  # noqa: E402
from jacspec.plot.panels import panel_variables  # noqa: E402
from jacspec.plot.weight_information import SIGN_NOTE  # noqa: E402

LONG_NAME = "share of the trace of the tangent kernel held by the top k eigenvalues of the centred kernel"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _group(n_layers=3, steps=(0, 1, 10, 100, 1000)):
    """A fake probe group over steps and splits, with a constant variable and a long dim."""
    rng = np.random.default_rng(0)
    s, p = len(steps), 2
    layers = [str(2 * i) for i in range(n_layers)]
    return xr.Dataset(
        {
            "score": (("step", "split"), rng.random((s, p)), {"long_name": LONG_NAME, "units": "nats"}),
            "per_layer": (("step", "split", "layer"), rng.random((s, p, n_layers)), {"long_name": "per-layer score"}),
            "spectrum": (("step", "split", "eigen"), rng.random((s, p, 30)) + 0.1, {"long_name": "amplitude"}),
            "bandwidth": (("step", "split"), np.full((s, p), 3.0), {"long_name": "kernel width"}),
            "wall_time": (("step",), np.arange(s, dtype=float)),
        },
        coords={"step": list(steps), "split": ["train", "test"], "layer": layers, "eigen": np.arange(1, 31)},
    )


def _texts(fig):
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def test_axis_labels_are_wrapped_never_truncated():
    ax = plot_variable(_group(), "score")
    label = ax.get_ylabel()
    assert label.replace("\n", " ") == f"{LONG_NAME} [nats]"  # every word kept, in order
    assert max(len(line) for line in label.splitlines()) <= 36 and "\n" in label
    assert axis_label(xr.DataArray(1.0, attrs={"long_name": "accuracy", "units": "1"})) == "accuracy"


def test_lines_per_split_and_layer_with_a_legend_that_fits():
    ax = plot_variable(_group(n_layers=3), "per_layer")
    assert len(ax.lines) == 6  # 3 layers x 2 splits
    # the values drawn are the data's (reference: the Dataset itself)
    ds = _group(n_layers=3)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), ds["per_layer"].sel(split="train").isel(layer=0).values)
    assert [t.get_text() for t in ax.get_legend().get_texts()][:3] == [
        "module 0 (train)",
        "module 2 (train)",
        "module 4 (train)",
    ]
    assert ax.lines[0].get_linestyle() == "-" and ax.lines[3].get_linestyle() == "--"  # train solid, test dashed


def test_no_legend_beyond_eight_entries_a_colour_bar_instead():
    fig, ax = plt.subplots()
    plot_variable(_group(n_layers=6), "per_layer", ax=ax)  # 12 lines
    assert ax.get_legend() is None and len(ax.lines) == 12
    assert len(fig.axes) == 2  # the colour bar's axes
    assert "train: solid, test: dashed" in _texts(fig)


def test_long_dimension_is_a_heatmap_and_constant_variables_are_skipped():
    fig, ax = plt.subplots()
    plot_variable(_group(), "spectrum", ax=ax)
    assert len(ax.collections) == 1 and not ax.lines and len(fig.axes) == 2
    ds = _group()
    assert panel_variables(ds) == ["score", "per_layer", "spectrum"]  # no wall_time, no constant bandwidth
    fig = plot_group(ds)
    assert len([a for a in fig.axes if a.get_visible() and a.get_title()]) == 3


def test_log_time_axis_for_log_spaced_steps():
    ax = plot_variable(_group(steps=(0, 1, 10, 100, 1000)), "score")
    assert ax.get_xscale() == "symlog"
    ax = plot_variable(_group(steps=(0, 20, 40, 60)), "score")
    assert ax.get_xscale() == "linear"
    fig, ax = plt.subplots()
    assert log_time(ax, np.array([0, 20, 40]), log=True) and ax.get_xscale() == "symlog"


def test_layer_labels_and_citations():
    assert layer_labels(["0", "encoder.fc", "input;4"]) == ["module 0", "encoder.fc", "input → module 4"]
    assert cite("after paper " + "000, Fig. 2") == (
        'after Brandão et al., "Is My Neural Net Driven by the MDL Principle?", ECML PKDD 2023 (LNCS 14170), Fig. 2'
    )


def _tangent_kernel_group():
    rng = np.random.default_rng(1)
    steps, splits, layers, ks = [0, 10, 100, 1000], ["train", "test"], ["0", "2"], [1, 10, 40]
    shape = (len(steps), len(splits))

    def v(*extra):
        return rng.random(shape + extra) + 0.1

    return xr.Dataset(
        {
            "effective_rank": (("step", "split"), v(), {"long_name": "effective rank exp(H(mu)) (eq. 5)"}),
            "trace_ratio": (("step", "split", "k"), np.sort(v(3), axis=-1)),
            "cka_labels": (("step", "split"), v(), {"long_name": "CKA(K, YY^T) (eq. 7)"}),
            "max_eigenvalue": (("step", "split"), v() * 10),
            "mean_eigenvalue": (("step", "split"), v()),
            "layer_cka_labels": (("step", "split", "layer"), v(2)),
        },
        coords={"step": steps, "split": splits, "layer": layers, "k": ks},
    )


def test_tangent_kernel_panels_from_dataset_or_tree_and_given_axes():
    ds = _tangent_kernel_group()
    tree = xr.DataTree.from_dict({"/tangent_kernel": ds})
    for data in (ds, tree, tree["tangent_kernel"]):
        fig = plot_tangent_kernel(data)
        assert [a.get_title() for a in fig.axes][1:] == [
            "effective rank (eq. 5)",
            "trace ratios T_k (eq. 6)",
            "CKA(K, YYᵀ) with labels (eq. 7)",
        ]
    fig, axes = plt.subplots(1, 4)
    assert plot_tangent_kernel(ds, ax=axes) is fig
    assert len(axes[2].lines) == 2 * 2  # the k present among (10, 40, 160): 10 and 40, two splits
    with pytest.raises(ValueError, match="4 Axes"):
        plot_tangent_kernel(ds, ax=axes[:2])
    fig = plot_probe(tree["tangent_kernel"])
    assert len([a for a in fig.axes if a.get_visible()]) >= 5  # + per-layer CKA
    assert "Baratin" in fig._suptitle.get_text()
    fig, ax = plt.subplots()
    plot_layer_alignment(ds, ax=ax)
    assert len(ax.lines) == 4


def test_weight_information_explains_its_sign():
    rng = np.random.default_rng(2)
    ds = xr.Dataset(
        {
            "weight_information_per_sample": (("step", "split"), -rng.random((3, 2)) * 10),
            "weight_information": (("step", "split"), -rng.random((3, 2)) * 1000),
            "layer_weight_information": (("step", "split", "layer"), -rng.random((3, 2, 2)) * 500),
            "log_alpha_quantiles": (("step", "split", "layer", "quantile"), np.sort(rng.random((3, 2, 2, 7)))),
        },
        coords={
            "step": [0, 5, 10],
            "split": ["train", "test"],
            "layer": ["0", "2"],
            "quantile": [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0],
        },
        attrs={"method": "laplace", "beta": 0.001, "n_examples": 100},
    )
    fig = plot_weight_information(xr.DataTree.from_dict({"/weight_information": ds}))
    text = " ".join(t.replace("\n", " ") for t in _texts(fig))
    assert SIGN_NOTE in text and "sign carries no meaning" in text
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 4
    # per example: the layer panel is the layer sum divided by n_examples
    np.testing.assert_allclose(
        fig.axes[1].lines[0].get_ydata(), ds["layer_weight_information"].sel(split="train", layer="0") / 100
    )
    fig, ax = plt.subplots()
    plot_weight_information(ds, ax=ax)
    assert len(ax.lines) == 2 and any("sign carries no meaning" in t.replace("\n", " ") for t in _texts(fig))
    fig = plot_log_alpha_quantiles(ds)
    assert fig.axes[0].get_xlabel().startswith("module")


def test_spectral_norm_and_fourier_from_run_groups():
    ds = xr.Dataset(
        {"spectral_norm": (("step", "layer"), np.arange(6.0).reshape(3, 2) + 1)},
        coords={"step": [0, 1, 2], "layer": ["0", "2"], "matrix_shape": ("layer", ["8x6", "3x8"])},
    )
    ax = plot_spectral_norms(xr.DataTree.from_dict({"/spectral_norm": ds}))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["module 0 (8x6)", "module 2 (3x8)"]
    rng = np.random.default_rng(3)
    fourier = xr.Dataset(
        {"amplitude": (("step", "split", "output", "eigen"), rng.random((3, 2, 4, 20)) + 0.01)},
        coords={"step": [0, 1, 2], "split": ["train", "test"], "eigen": np.arange(1, 21)},
    )
    fig = plot_fourier_spectrum(fourier)
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(panels) == 3 and len([a for a in panels if a.collections]) == 2  # a heatmap per split
    last = panels[2]  # the first and last step of each split
    assert len(last.lines) == 4 and last.get_yscale() == "log"
    rms = np.sqrt((fourier["amplitude"].sel(split="test").isel(step=-1) ** 2).mean("output"))
    np.testing.assert_allclose(last.lines[3].get_ydata(), rms.values)


def test_no_internal_document_numbers_in_any_figure(tmp_path):
    tree = xr.DataTree.from_dict({"/tangent_kernel": _tangent_kernel_group(), "/custom": _group()})
    for name in tree.children:
        fig = plot_probe(tree[name])
        assert not any(re.search(r"paper 00\d", t, flags=re.IGNORECASE) for t in _texts(fig))
    fig = plot_run(tree)
    assert fig.axes and not any(re.search(r"paper 00\d", t, flags=re.IGNORECASE) for t in _texts(fig))
    with pytest.raises(TypeError, match="xarray.Dataset or xarray.DataTree"):
        plot_variable([1, 2], "score")
    with pytest.raises(ValueError, match="'step' dimension"):
        plot_variable(_group().isel(step=0), "score")
