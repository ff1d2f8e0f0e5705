import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "weight_information_random_labels.py"


@pytest.fixture(autouse=True)
def _one_thread():
    # two threads on a busy two-core machine spin against each other: ten times slower than one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load_example():
    spec = importlib.util.spec_from_file_location("weight_information_random_labels", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corrupt_labels_fraction():
    example = _load_example()
    y = torch.arange(100) % 10
    assert torch.equal(example.corrupt_labels(y, 0.0), y)
    changed = int((example.corrupt_labels(y, 0.5) != y).sum())
    assert 35 <= changed <= 50  # half are redrawn, a tenth of those land on the true class


def test_reduced_random_label_example_orders_real_below_random():
    # Achille & Soatto 2018, section 6.1: fitting random labels needs more information in the weights than real ones
    example = _load_example()
    results = example.run(
        n_train=120, fractions=(0.0, 1.0), n_steps=400, every=400, hidden=16, variational_steps=80, beta=1e-2
    )
    final = results.isel(step=-1)
    assert final["train_accuracy"].sel(fraction=0.0).item() == 1.0
    assert final["train_accuracy"].sel(fraction=1.0).item() > 0.9  # random labels are (nearly) memorised
    for method in ("laplace", "variational"):
        real = final["information_per_sample"].sel(estimator=method, fraction=0.0).item()
        random = final["information_per_sample"].sel(estimator=method, fraction=1.0).item()
        assert real < random, (method, real, random)


def test_plots_draw_from_probe_results_and_example_results():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr
    from torch import nn

    from jacspec.plot import plot_log_alpha_quantiles, plot_random_labels, plot_weight_information
    from jacspec.probes import WeightInformation

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    probe = WeightInformation()
    steps = [probe.measure(model, x, y).expand_dims(step=[s]) for s in (0, 10)]
    run = xr.concat(steps, dim="step")
    run = xr.concat([run, run], dim=xr.DataArray(["train", "test"], dims="split", name="split"))
    fig = plot_weight_information(run)
    assert len(fig.axes[0].lines) == 2  # one line per split
    fig = plot_log_alpha_quantiles(run)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "2"]
    example = _load_example()
    results = example.run(n_train=40, fractions=(0.0, 1.0), n_steps=20, every=10, hidden=8, variational_steps=5)
    fig = plot_random_labels(results)
    assert len(fig.axes) == 3
    plt.close("all")


def test_in_a_monitor_run_file(tmp_path):
    from torch import nn

    import jacspec
    from jacspec.plot import plot_weight_information
    from jacspec.probes import WeightInformation

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x, y = torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))
    data = {"train": (x[:20], y[:20]), "test": (x[20:], y[20:])}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probes = [WeightInformation(hessian="ggn"), WeightInformation(method="variational", n_steps=3)]
    for i, probe in enumerate(probes):
        path = tmp_path / f"run{i}.nc"
        with jacspec.Monitor(model, [probe], data=data, every=2, path=path, progress=False) as monitor:
            for step in range(5):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                monitor.step(step)
        ds = jacspec.open_run(path)["weight_information"].ds
        assert ds["weight_information_per_sample"].dims == ("step", "split")
        assert ds["layer_weight_information"].dims == ("step", "split", "layer")
        assert list(ds["step"].values) == [0, 2, 4]
        total = ds["layer_weight_information"].sum("layer")
        np.testing.assert_allclose(total.values, ds["weight_information"].values, rtol=1e-12)
        assert plot_weight_information(ds).axes
