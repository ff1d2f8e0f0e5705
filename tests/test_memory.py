"""Memory budgets (jacspec.memory): parsing of ``max_memory`` and the refusal before allocating."""

from __future__ import annotations

import pytest

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
