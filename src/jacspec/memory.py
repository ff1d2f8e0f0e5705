"""Memory budgets: ``max_memory=`` of every probe, parsed once and checked before any large allocation.

A probe estimates the bytes its largest buffers need from the shapes it is about to use (a kernel of
``(n·c)²`` float64 numbers, a chunk of per-example Jacobians, ...) and calls :func:`check_memory` before
allocating them, so an impossible request is refused at once, with the ways out, instead of after minutes
and gigabytes (or by the operating system's out-of-memory killer).
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = [
    "MemoryBudgetError",
    "parse_memory",
    "check_memory",
    "format_bytes",
    "forward_bytes_per_example",
    "largest_activation_bytes",
    "budget_argument",
    "DEFAULT_MAX_MEMORY",
]

#: The default budget of a probe's largest buffers: 2 GiB.
DEFAULT_MAX_MEMORY = 2 * 2**30

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


class MemoryBudgetError(MemoryError, ValueError):
    """A probe's request exceeds its ``max_memory``; raised before anything is allocated.

    A subclass of both ``MemoryError`` (what 0.1 raised) and ``ValueError`` (a bad combination of inputs and
    options, which the message names with the ways out).

    Examples
    --------
    >>> from jacspec.memory import MemoryBudgetError, check_memory
    >>> try:
    ...     check_memory(8 * 10**10, "1GB", what="the kernel", ways_out=["max_examples=100"])
    ... except MemoryBudgetError as error:
    ...     print(str(error).split(":")[0])
    the kernel needs 80 GB, more than max_memory='1GB' (1 GB)
    """


def parse_memory(value: int | float | str, argument: str = "max_memory") -> int:
    """Bytes from ``value``: a positive number of bytes or a string such as ``"2GB"``, ``"512 MiB"``, ``"1.5G"``.

    Decimal units (kB, MB, GB, TB) are powers of 1000, binary ones (KiB, MiB, GiB, TiB) and the one-letter
    forms (K, M, G, T, as in ``ulimit``/Slurm) powers of 1024; case is ignored.

    Parameters
    ----------
    value : int, float or str
        The budget.
    argument : str
        The argument's name, for the error message.

    Returns
    -------
    int
        The budget in bytes (at least 1).

    Raises
    ------
    TypeError
        ``value`` is not a number or a string (booleans are refused).
    ValueError
        A non-positive or non-finite number, or a string that is not a number with a known unit.

    Examples
    --------
    >>> from jacspec.memory import parse_memory
    >>> parse_memory("2GB"), parse_memory("512 MiB"), parse_memory("1.5G"), parse_memory(10**6)
    (2000000000, 536870912, 1610612736, 1000000)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(
            f"`{argument}` must be a number of bytes or a string such as '2GB', but got {type(value).__name__} "
            f"{value!r}."
        )
    if isinstance(value, str):
        match = _PATTERN.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(
                f"`{argument}` must be a number with a unit such as '2GB', '512MiB' or '1.5G', but got {value!r} "
                f"(known units: {', '.join(sorted({u for u in _UNITS if u}, key=len))})."
            )
        number = float(match.group(1)) * _UNITS[unit]
    else:
        number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError(f"`{argument}` must be a positive, finite amount of memory, but got {value!r}.")
    return max(1, int(number))


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest decimal unit below it, with three significant figures.

    Examples
    --------
    >>> from jacspec.memory import format_bytes
    >>> format_bytes(512), format_bytes(3.2e9)
    ('512 B', '3.2 GB')
    """
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def check_memory(
    needed: int | float,
    max_memory: int | float | str | None,
    what: str,
    ways_out: list[str] | tuple[str, ...] = (),
    argument: str = "max_memory",
    shown: str | None = None,
) -> None:
    """Refuse, before allocating, a request of ``needed`` bytes above the budget ``max_memory``.

    Parameters
    ----------
    needed : int or float
        Bytes the probe's largest buffers would take (an estimate from the shapes, made before allocating).
    max_memory : int, float, str or None
        The budget (see :func:`parse_memory`); None: no check.
    what : str
        What needs the memory, e.g. ``"TangentKernel's (n·c)² = 50000² float64 kernel"``.
    ways_out : sequence of str
        Options that would make the request fit, named in the error.
    argument : str
        The budget's argument name in the message (``max_memory``; ``memory_budget_gb`` for the 0.1 functions).
    shown : str, optional
        How the budget is shown in the message (default: the value given).

    Raises
    ------
    MemoryBudgetError
        When ``needed > max_memory``.

    Examples
    --------
    >>> from jacspec.memory import check_memory
    >>> check_memory(10**6, "2GB", what="a small buffer")  # fits: returns None
    """
    if max_memory is None:
        return
    budget = parse_memory(max_memory)
    if needed <= budget:
        return
    if shown is None:
        shown = f"{max_memory!r}" if isinstance(max_memory, str) else f"{int(max_memory)}"
    fixes = list(ways_out) + [f"a larger {argument} (at least {format_bytes(needed)})"]
    raise MemoryBudgetError(
        f"{what} needs {format_bytes(needed)}, more than {argument}={shown} ({format_bytes(budget)}): refused "
        f"before allocating. Ways out: {'; '.join(fixes)}."
    )


def forward_bytes_per_example(model, x, output: Callable | None = None) -> tuple[int, int]:
    """Bytes autograd keeps for the backward pass of one example, and that example's output size.

    One forward of ``x[:1]`` runs under :func:`torch.autograd.graph.saved_tensors_hooks`, which sees every
    tensor saved for the backward pass; tensors that share a parameter's or buffer's storage (the weights
    themselves, saved once whatever the batch) are not counted. A probe multiplies the result by the number
    of examples (and of vectors) it is about to differentiate at once, before doing so.

    Parameters
    ----------
    model : nn.Module
        The network.
    x : torch.Tensor
        Inputs ``(n, *input_shape)``; only ``x[:1]`` is used.
    output : callable, optional
        ``output(model, x) -> tensor`` in place of ``model(x)``.

    Returns
    -------
    saved_bytes : int
        Bytes of the tensors saved for backward by one example's forward pass.
    output_numel : int
        Entries of one example's output.

    Examples
    --------
    >>> import torch
    >>> from jacspec.memory import forward_bytes_per_example
    >>> model = torch.nn.Sequential(torch.nn.Linear(10, 50), torch.nn.ReLU(), torch.nn.Linear(50, 3))
    >>> forward_bytes_per_example(model, torch.randn(4, 10))  # float32: the input (10) and the ReLU's output (50)
    (240, 3)
    """
    import torch

    shared = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    total = 0
    seen: set[int] = set()

    def pack(tensor):
        nonlocal total
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in shared and ptr not in seen:
            seen.add(ptr)
            total += tensor.untyped_storage().nbytes()
        return tensor

    one = x[:1].detach().clone()
    if one.is_floating_point():
        one = one.requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(one) if output is None else output(model, one)
    return int(total), int(out.numel()) if hasattr(out, "numel") else 1


def largest_activation_bytes(model, x, output: Callable | None = None) -> tuple[int, int]:
    """Bytes of the largest module output of one example in a forward pass without gradients, and its output size.

    What a batched, gradient-free forward (loss and accuracy, the network evaluated on a grid) holds at its
    peak is about two consecutive activations; this returns the largest single one, per example, from forward
    hooks on every module during one forward of ``x[:1]`` (the hooks are removed afterwards).

    Parameters
    ----------
    model : nn.Module
        The network.
    x : torch.Tensor
        Inputs ``(n, *input_shape)``; only ``x[:1]`` is used.
    output : callable, optional
        ``output(model, x) -> tensor`` in place of ``model(x)``.

    Returns
    -------
    activation_bytes : int
        Bytes of the largest tensor a module returned (the input's own bytes when larger).
    output_numel : int
        Entries of one example's output.

    Examples
    --------
    >>> import torch
    >>> from jacspec.memory import largest_activation_bytes
    >>> model = torch.nn.Sequential(torch.nn.Linear(10, 50), torch.nn.ReLU(), torch.nn.Linear(50, 3))
    >>> largest_activation_bytes(model, torch.randn(4, 10))  # float32: the 50 hidden units
    (200, 3)
    """
    import torch

    one = x[:1].detach().clone()
    largest = one.numel() * one.element_size()

    def hook(module, inputs, out):
        nonlocal largest
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                largest = max(largest, tensor.numel() * tensor.element_size())

    handles = [module.register_forward_hook(hook) for module in model.modules()]
    try:
        with torch.no_grad():
            out = model(one) if output is None else output(model, one)
    finally:
        for handle in handles:
            handle.remove()
    return int(largest), int(out.numel()) if hasattr(out, "numel") else 1


def budget_argument(max_memory: int | float | str | None) -> int | float | str | None:
    """Validate a probe's ``max_memory=`` at construction (None: no budget) and return it unchanged.

    Examples
    --------
    >>> from jacspec.memory import budget_argument
    >>> budget_argument("512MiB"), budget_argument(None)
    ('512MiB', None)
    """
    if max_memory is not None:
        parse_memory(max_memory)
    return max_memory
