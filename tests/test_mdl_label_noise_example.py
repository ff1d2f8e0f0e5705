"""Reduced version of examples/mdl_label_noise.py (Brandão et al. 2023, 5.1–5.2): a 1×512 MLP on 200 digits,
trained until it fits random labels, has a larger mean log singular value at p = 1 than at p = 0."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mdl_label_noise.py"


def load_example():
    spec = importlib.util.spec_from_file_location("mdl_label_noise", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reduced_label_noise_raises_mean_log_singular_value(tmp_path):
    example = load_example()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summaries = example.run(
            noise_levels=(0.0, 1.0), depths=(1,), epochs=80, every_epochs=40, out=tmp_path, n_train=200, verbose=False
        )
    finally:
        torch.set_num_threads(threads)
    clean, noisy = summaries
    assert clean["p"] == 0.0 and noisy["p"] == 1.0
    # both fit their training labels (the paper compares networks trained to overfit) ...
    assert clean["train_accuracy"] > 0.9 and noisy["train_accuracy"] > 0.9
    assert noisy["test_accuracy"] < 0.3  # ... and random labels do not generalise
    # Brandão et al. 2023, 5.1: E[log σ] on the training set rises with the label noise p
    assert noisy["train_mean_log_sigma"] > clean["train_mean_log_sigma"] + 0.05
    # run files and the figure were written; each run holds the initial and two probed steps
    import jacspec

    tree = jacspec.open_run(tmp_path / "mlp1_p1.0.nc")
    ds = tree["point_jacobian"].to_dataset()
    assert ds["mean_log_singular_value"].dims == ("step", "split")
    assert ds.sizes["step"] == 3
    np.testing.assert_allclose(
        ds["mean_log_singular_value"].sel(split="train").values[-1], noisy["train_mean_log_sigma"]
    )
    assert (tmp_path / "mdl_label_noise.png").stat().st_size > 0
