"""Memory budgets (jacspec.memory): parsing of ``max_memory`` and the refusal before allocating."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from jacspec.memory import MemoryBudgetError, check_memory, format_bytes, parse_memory


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1),
        (2.5e9, 2_500_000_000),
        ("2GB", 2 * 10**9),  # decimal units: powers of 1000
        ("2 gb", 2 * 10**9),
        ("512MiB", 512 * 2**20),  # binary units: powers of 1024
        ("1.5G", int(1.5 * 2**30)),  # one-letter forms as in Slurm / ulimit
        ("100kB", 100_000),
        ("1e3", 1000),
        ("3TiB", 3 * 2**40),
    ],
)
def test_parse_memory_units(value, expected):
    assert parse_memory(value) == expected


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (True, TypeError, "`max_memory` must be a number of bytes"),
        ([1], TypeError, "list"),
        (0, ValueError, "positive"),
        (-5, ValueError, "positive"),
        (float("inf"), ValueError, "finite"),
        ("2 parsecs", ValueError, "known units"),
        ("GB", ValueError, "'GB'"),
    ],
)
def test_parse_memory_refuses_bad_values(value, error, match):
    with pytest.raises(error, match=match):
        parse_memory(value)


def test_check_memory_refuses_with_the_ways_out():
    need = 8 * 50_000**2  # the (n·c)² float64 kernel at n·c = 50 000: 20 GB
    with pytest.raises(MemoryBudgetError) as info:
        check_memory(need, "2GB", what="the kernel", ways_out=["max_examples=", 'method="lanczos"'])
    text = str(info.value)
    assert "20 GB" in text and "max_memory='2GB'" in text
    assert "max_examples=" in text and 'method="lanczos"' in text and "at least 20 GB" in text
    assert isinstance(info.value, MemoryError) and isinstance(info.value, ValueError)  # 0.1 raised MemoryError


def test_check_memory_passes_within_budget_and_without_one():
    check_memory(2 * 10**9, "2GB", what="exactly the budget")
    check_memory(10**15, None, what="no budget")


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1 kB"), (1.234e6, "1.23 MB")])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


# ---------------------------------------------------------------------------------------------------------------
# max_memory= on every probe: refused before any batch-sized work, identical results within the budget


class _CountingMLP(nn.Module):
    """An MLP that records the batch size of every forward call (to see what ran before a refusal)."""

    def __init__(self, d_in: int = 2, hidden: int = 32, c: int = 3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, c)
        self.batch_sizes: list[int] = []

    def forward(self, x):
        self.batch_sizes.append(int(x.shape[0]))
        return self.head(self.net(x))


def _probes(max_memory):
    from jacspec.probes import (
        FourierSpectrum,
        MutualInformation,
        Performance,
        PointJacobian,
        SpectralNorm,
        TangentComplexity,
        WeightInformation,
    )

    return {
        "point_jacobian": PointJacobian(max_memory=max_memory),
        "performance": Performance(max_memory=max_memory),
        "spectral_norm": SpectralNorm(method="exact", max_memory=max_memory),
        "spectral_norm_power": SpectralNorm(max_memory=max_memory),
        "weight_information": WeightInformation(max_memory=max_memory),
        "weight_information_ggn": WeightInformation(hessian="ggn", max_memory=max_memory),
        "weight_information_variational": WeightInformation(method="variational", n_steps=5, max_memory=max_memory),
        "mutual_information": MutualInformation(between=("input", "net.1"), method="ksg", max_memory=max_memory),
        "fourier_spectrum": FourierSpectrum(n_points=64, input_dim=2, max_memory=max_memory),
        "fourier_spectrum_kernel": FourierSpectrum(basis="kernel", max_samples=100, max_memory=max_memory),
        "tangent_complexity": TangentComplexity(max_memory=max_memory),
    }


PROBE_KEYS = list(_probes(None))


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(200, 2, generator=g, dtype=torch.float64), torch.randint(0, 3, (200,), generator=g)


@pytest.mark.parametrize("key", PROBE_KEYS)
def test_every_probe_refuses_over_budget_before_any_batch_work(key):
    torch.manual_seed(0)
    model = _CountingMLP().double()
    x, y = _data()
    probe = _probes("100B")[key]
    with pytest.raises(MemoryBudgetError, match=r"max_memory='100B'.*refused before allocating. Ways out: ") as err:
        probe.measure(model, x, y)
    assert type(probe).__name__ in str(err.value)  # the message names the probe
    # nothing ran on the batch: at most the one-example forward that sizes the request
    assert all(size <= 1 for size in model.batch_sizes), model.batch_sizes


@pytest.mark.parametrize("key", PROBE_KEYS)
def test_every_probe_is_unchanged_within_its_budget(key):
    # reference: the same probe without a budget (0.1 behaviour); a generous budget must not change a value
    torch.manual_seed(0)
    model = _CountingMLP().double()
    x, y = _data()
    free = _probes(None)[key].measure(model, x, y)
    budgeted = _probes("1GB")[key].measure(model, x, y)
    xr.testing.assert_allclose(free, budgeted, rtol=1e-12, atol=0)


def test_point_jacobian_fits_its_chunks_to_the_budget():
    # a budget below the default chunk's estimate: smaller chunks, the same singular values (reference: no budget)
    from jacspec.probes import PointJacobian

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 5)).double()
    x = torch.randn(300, 20, dtype=torch.float64)
    probe = PointJacobian(max_memory="100kB")
    assert probe._chunk_under_budget(model, x) < 300  # the default chunk (all 300 examples) would not fit
    np.testing.assert_allclose(
        probe.measure(model, x)["singular_values"], PointJacobian().measure(model, x)["singular_values"], rtol=1e-12
    )
    with pytest.raises(MemoryBudgetError, match="a smaller `chunk_size=`"):
        PointJacobian(max_memory="100kB", chunk_size=300).measure(model, x)


@pytest.mark.parametrize("key", PROBE_KEYS)
def test_every_probe_checks_max_memory_at_construction(key):
    cls = type(_probes(None)[key])
    for bad in ("lots", -1):
        with pytest.raises(ValueError, match="`max_memory` must be"):
            cls(max_memory=bad)


def test_forward_bytes_per_example_counts_saved_activations_not_weights():
    # reference by hand: Linear(10, 50) saves its input x (10 floats), Tanh its output (50), Linear(50, 3) its
    # input (the same tensor as Tanh's output: counted once); the weights are not per-example memory
    from jacspec.memory import forward_bytes_per_example, largest_activation_bytes

    model = nn.Sequential(nn.Linear(10, 50), nn.Tanh(), nn.Linear(50, 3)).double()
    x = torch.randn(7, 10, dtype=torch.float64)
    assert forward_bytes_per_example(model, x) == (8 * (10 + 50), 3)
    assert largest_activation_bytes(model, x) == (8 * 50, 3)
    assert not any(hook for m in model.modules() for hook in m._forward_hooks.values())
