"""Which module's ``forward`` reads each parameter: the check that keeps per-layer hooks exact.

Per-layer hooks (the structured tangent-kernel path) see a parameter only through the module that owns
it: a parameter that a *parent* module reads directly (``F.linear(h, self.embed.weight)`` in a tied
decoder, ``self.fc.weight.T`` in a custom forward) while its own module also runs would be counted once
instead of once per use — a silent wrong answer. :func:`parameter_readers` runs one forward pass under a
``torch.overrides.TorchFunctionMode`` and records, for every torch operation that takes a parameter,
the innermost module whose ``forward`` was running; callers route such parameters to the exact
``torch.func`` fallback (:mod:`jacspec.engine.jacobian`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from jacspec.engine.parameters import module_name

__all__ = ["ReadTracker", "parameter_readers"]


class ReadTracker(TorchFunctionMode):
    """Records ``{id(parameter): {reading module name}}`` for the parameters given, while active.

    Use with :meth:`attach` (forward pre-hooks and hooks that keep the stack of running modules;
    removed by :meth:`detach`, call it in ``finally``).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> tracker = ReadTracker(model, {id(p): p for p in model.parameters()})
    >>> tracker.attach()
    >>> try:
    ...     with tracker:
    ...         _ = model(torch.ones(1, 2))
    ... finally:
    ...     tracker.detach()
    >>> sorted(tracker.readers[id(model[0].weight)])
    ['0']
    """

    def __init__(self, model: nn.Module, parameters: dict[int, torch.Tensor]):
        super().__init__()
        self.model = model
        self.watched = parameters
        self.readers: dict[int, set[str]] = {}
        self.stack: list[str] = []
        self.handles: list[Any] = []

    def attach(self) -> None:
        """Register the pre-hooks and hooks that track the running module on every module of the model."""
        for name, module in self.model.named_modules():
            label = module_name(name)

            def pre(_module, _args, label=label):
                self.stack.append(label)

            def post(_module, _args, _out, label=label):
                if self.stack and self.stack[-1] == label:
                    self.stack.pop()

            self.handles.append(module.register_forward_pre_hook(pre))
            self.handles.append(module.register_forward_hook(post, always_call=True))

    def detach(self) -> None:
        """Remove every hook :meth:`attach` registered."""
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.stack:
            leaves = [*args, *kwargs.values()]
            if any(isinstance(leaf, (list, tuple, dict)) for leaf in leaves):
                leaves, _ = tree_flatten((args, kwargs))
            for leaf in leaves:
                if isinstance(leaf, torch.Tensor) and id(leaf) in self.watched and self.watched[id(leaf)] is leaf:
                    self.readers.setdefault(id(leaf), set()).add(self.stack[-1])
        return func(*args, **kwargs)


def parameter_readers(
    model: nn.Module, x: Any, output: Callable[[nn.Module, Any], torch.Tensor] | None = None
) -> dict[str, set[str]]:
    """``{parameter name: {names of the modules whose forward read it}}`` over one forward pass.

    A parameter read only by its owning module maps to ``{owner}``; a tied parameter or one read by a
    parent's ``forward`` maps to several names or to another name. Runs with gradients enabled, as probes do.

    Examples
    --------
    >>> import torch
    >>> class Parent(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = torch.nn.Linear(2, 2)
    ...     def forward(self, x):
    ...         return self.fc(x) @ self.fc.weight  # the parent reads fc.weight too
    >>> readers = parameter_readers(Parent(), torch.ones(1, 2))
    >>> sorted(readers["fc.weight"]), sorted(readers["fc.bias"])
    (['(root)', 'fc'], ['fc'])
    """
    named = dict(model.named_parameters())
    tracker = ReadTracker(model, {id(p): p for p in named.values()})
    tracker.attach()
    try:
        with torch.enable_grad(), tracker:
            model(x) if output is None else output(model, x)
    finally:
        tracker.detach()
    return {name: set(tracker.readers.get(id(p), set())) for name, p in named.items()}
