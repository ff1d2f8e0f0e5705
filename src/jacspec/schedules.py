"""When a :class:`jacspec.Monitor` probes: every n steps, log-spaced steps, a list, or a callable."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Every", "LogSpaced", "Steps", "as_schedule", "ScheduleLike"]


class Every:
    """Probe at steps ``0, n, 2n, ...`` (every step divisible by ``n``).

    Parameters
    ----------
    n : int
        The period in optimiser steps (positive).

    Examples
    --------
    >>> from jacspec.schedules import Every
    >>> [step for step in range(25) if Every(10)(step)]
    [0, 10, 20]
    """

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"`every` must be a positive integer number of steps, but got {n!r}.")
        self.n = n

    def __call__(self, step: int) -> bool:
        return step % self.n == 0

    def __repr__(self) -> str:
        return f"Every({self.n})"


class LogSpaced:
    """Probe at log-spaced steps: many early, few late (the papers plot against log time).

    The selected steps are 0 and the distinct values of ``round(10 ** (k / per_decade))`` for
    ``k = 0, 1, 2, ...``: with ``per_decade=10``: 0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, ...

    Parameters
    ----------
    per_decade : int
        Probed steps per factor of ten (early steps are all probed until they are closer than that).

    Examples
    --------
    >>> from jacspec.schedules import LogSpaced
    >>> LogSpaced(per_decade=5).steps(120)
    [0, 1, 2, 3, 4, 6, 10, 16, 25, 40, 63, 100]
    """

    def __init__(self, per_decade: int = 10):
        if isinstance(per_decade, bool) or not isinstance(per_decade, int) or per_decade <= 0:
            raise ValueError(f"`per_decade` must be a positive integer, but got {per_decade!r}.")
        self.per_decade = per_decade

    def __call__(self, step: int) -> bool:
        if step <= 1:
            return step >= 0
        k = round(self.per_decade * math.log10(step))
        return any(round(10 ** (j / self.per_decade)) == step for j in (k - 1, k, k + 1))

    def steps(self, stop: int) -> list[int]:
        """The selected steps below ``stop``."""
        return [s for s in range(stop) if self(s)]

    def __repr__(self) -> str:
        return f"LogSpaced(per_decade={self.per_decade})"


class Steps:
    """Probe at an explicit set of steps.

    Parameters
    ----------
    steps : iterable of int
        The non-negative steps to probe (order and repeats do not matter).

    Examples
    --------
    >>> from jacspec.schedules import Steps
    >>> schedule = Steps([0, 50, 500])
    >>> schedule(50), schedule(51)
    (True, False)
    """

    def __init__(self, steps: Iterable[int]):
        values = list(steps)
        bad = [s for s in values if isinstance(s, bool) or not isinstance(s, int) or s < 0]
        if not values or bad:
            raise ValueError(
                f"`every` as a list must hold non-negative integer steps, but got {values!r}"
                + (f" (invalid: {bad!r})" if bad else " (empty)")
                + "."
            )
        self.selected = frozenset(values)

    def __call__(self, step: int) -> bool:
        return step in self.selected

    def __repr__(self) -> str:
        return f"Steps({sorted(self.selected)})"


ScheduleLike = int | str | Iterable[int] | Callable[[int], bool]


def as_schedule(every: Any) -> Callable[[int], bool]:
    """Turn the ``every`` argument of :class:`jacspec.Monitor` into a predicate ``step -> bool``.

    Accepted: a positive int (every n steps), ``"log"`` (:class:`LogSpaced` with 10 per decade), a list
    or range of steps, a schedule object, or any callable ``step -> bool``.

    Examples
    --------
    >>> from jacspec.schedules import as_schedule
    >>> as_schedule(100), as_schedule("log"), as_schedule([0, 7])
    (Every(100), LogSpaced(per_decade=10), Steps([0, 7]))
    >>> as_schedule(lambda step: step in (3, 5))(5)
    True
    """
    if isinstance(every, (Every, LogSpaced, Steps)):
        return every
    if isinstance(every, bool):
        raise TypeError(f"`every` must be an int, 'log', a list of steps or a callable, but got {every!r}.")
    if isinstance(every, int):
        return Every(every)
    if isinstance(every, str):
        if every == "log":
            return LogSpaced()
        raise ValueError(f"`every` as a string must be 'log', but got {every!r}.")
    if callable(every):
        return every
    if isinstance(every, Iterable):
        return Steps(every)
    raise TypeError(
        f"`every` must be a positive int, 'log', a list of steps or a callable step -> bool, but got {every!r}."
    )
