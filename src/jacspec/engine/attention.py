"""Attention kernels that every torch.func transform can differentiate.

The fused CPU/GPU kernels behind ``torch.nn.functional.scaled_dot_product_attention`` (flash,
memory-efficient) have no forward-mode derivative and no ``vmap`` batching rule, so Hessian-vector
products (forward-over-reverse) and per-example Jacobians through ``nn.MultiheadAttention``,
``nn.TransformerEncoder`` or Hugging Face attention fail or fall back to slow loops. Probes run those
computations under :func:`math_attention`, the composite "math" backend, which is differentiable
by every transform and gives the same values up to round-off.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["math_attention", "with_math_attention"]

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Run ``scaled_dot_product_attention`` on the composite math backend inside the block.

    Examples
    --------
    >>> import torch
    >>> q = torch.randn(1, 2, 3, 4)
    >>> with math_attention():
    ...     out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    >>> tuple(out.shape)
    (1, 2, 3, 4)
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch without the attention module
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def with_math_attention(function: F) -> F:
    """Decorator: call ``function`` under :func:`math_attention`.

    Examples
    --------
    >>> @with_math_attention
    ... def f():
    ...     return 1
    >>> f()
    1
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with math_attention():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
