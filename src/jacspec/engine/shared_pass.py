"""One forward pass and ``c`` backward passes per (step, split), shared by the probes that need them.

In one :class:`jacspec.Monitor` step, PointJacobian needs ``∂f/∂x`` (``c`` backward passes to the
input), TangentKernel and TangentComplexity need every layer's output gradients (``c`` backward passes
to the layers' outputs) and Performance needs the logits. Measured alone, each probe runs its own
forward and backward passes over the same batch. A :class:`SharedPass` runs them once: one forward pass
with the tangent kernel's per-layer hooks and ``x`` requiring grad, then ``c`` batched backward passes
whose cotangents reach the layers' outputs and the input together (``torch.autograd.grad`` with
``is_grads_batched=True``), and hands each probe what it asked for.

A probe takes part by implementing :meth:`jacspec.probes.base.Probe.share` (declare what it needs,
before the step) and asking :func:`active_pass` during its ``measure``; with no pass active (a probe
measured on its own) it computes everything itself, exactly as before. What is shared is the same
computation the probe would do alone (float64 results agree to rounding, see
``tests/test_shared_pass.py``); anything a probe's options change (``output=``, ``max_memory=``, a
chunk size, ``mode="train"``, a sliced batch) makes that probe measure on its own.

Examples
--------
>>> import torch
>>> from jacspec.engine.shared_pass import SharedPass, sharing, active_pass
>>> model, x = torch.nn.Linear(3, 2), torch.randn(4, 3)
>>> shared = SharedPass(model, x, outputs_hint=2)  # c = 2 known (else a one-example forward finds it)
>>> shared.request_logits()
>>> with sharing([shared]):
...     bool(torch.allclose(active_pass(model, x).logits(), model(x)))
True
>>> shared.forward_passes
1
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["SharedPass", "active_pass", "sharing"]

_local = threading.local()

SizePredicate = Callable[[int, int], bool]


@dataclass
class _FactorRequest:
    names: tuple[str, ...]
    modules: dict[str, nn.Module]
    on_unsupported: str
    strict: bool
    when: SizePredicate
    takers: int = 1
    result: Any = None
    error: BaseException | None = None
    caught: list[warnings.WarningMessage] = field(default_factory=list)
    declined: bool = False


class SharedPass:
    """The logits, input Jacobians and per-layer tangent-kernel factors of one batch, computed once.

    Parameters
    ----------
    model : nn.Module
        The network, in the mode every requesting probe measures in (eval).
    x : torch.Tensor
        The batch (examples first). Probes find the pass by the identity of ``model`` and ``x``.
    outputs_hint : int, optional
        The number of outputs ``c`` if known (the Monitor passes the previous step's); otherwise a
        one-example forward pass finds it. Either way every request's predicate is evaluated with ``c``
        *before* the pass, so a result nobody will use (a tangent kernel that goes matrix-free, input
        Jacobians larger than their chunk) is never computed over the whole batch.

    Notes
    -----
    The pass runs at the first request of any result, inside that probe's ``measure`` (so inside its
    :func:`jacspec.probes.base.preserve_model_state`). Each request names a predicate of ``(n, c)``
    (examples, outputs) telling whether the result is still wanted once ``c`` is known (e.g. the tangent
    kernel only on its dense path, the input Jacobians only when they fit the probe's chunk). An error
    or warning raised while collecting one probe's factors belongs to that probe: it is kept and re-raised
    (re-emitted) when that probe asks, and the other results come from a plain pass.
    Attribute ``forward_passes`` counts the forward passes the pass ran.

    Examples
    --------
    >>> import torch
    >>> from jacspec.engine.shared_pass import SharedPass
    >>> model, x = torch.nn.Linear(3, 2), torch.randn(4, 3)
    >>> shared = SharedPass(model, x, outputs_hint=2)
    >>> shared.request_input_jacobians()
    >>> jacobians = shared.input_jacobians()  # (n, c, d): each example's ∂f/∂x, here the weight
    >>> tuple(jacobians.shape), bool(torch.allclose(jacobians[0], model.weight)), shared.forward_passes
    ((4, 2, 3), True, 1)
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, outputs_hint: int | None = None):
        self.model = model
        self.x = x
        self.outputs_hint = outputs_hint
        self.outputs: int | None = None
        self.forward_passes = 0
        self._logits_wanted = False
        self._input_when: SizePredicate | None = None
        self._factors: _FactorRequest | None = None
        self._ran = False
        self._logits: torch.Tensor | None = None
        self._input_jacobians: torch.Tensor | None = None

    # -- requests (before the step) -------------------------------------------------------------------
    def request_logits(self) -> None:
        """Ask for ``model(x)`` (detached)."""
        self._logits_wanted = True

    def request_input_jacobians(self, when: SizePredicate | None = None) -> None:
        """Ask for ``∂f_i/∂x_i`` of every example, shape ``(n, c, d)``, when ``when(n, c)`` holds."""
        self._logits_wanted = True
        if self._input_when is None:
            self._input_when = when or (lambda n, c: True)

    def request_layer_factors(
        self,
        modules: dict[str, nn.Module],
        on_unsupported: str,
        strict: bool,
        when: SizePredicate | None = None,
    ) -> bool:
        """Ask for the per-layer factors of :mod:`jacspec.kernels` over ``modules`` (``{name: module}``).

        ``strict``: implementation="auto" (stop at the first sign the hooks would not be exact). Returns
        False when another probe already asked for factors of other layers or options (this probe then
        computes its own).
        """
        key = (tuple(modules), on_unsupported, bool(strict))
        if self._factors is None:
            self._factors = _FactorRequest(key[0], dict(modules), key[1], key[2], when=when or (lambda n, c: True))
            return True
        if (self._factors.names, self._factors.on_unsupported, self._factors.strict) == key:
            self._factors.takers += 1
            previous = self._factors.when
            self._factors.when = lambda n, c: previous(n, c) or (when or (lambda n_, c_: True))(n, c)
            return True
        return False

    # -- results (during the step) --------------------------------------------------------------------
    def logits(self) -> torch.Tensor:
        """``model(x)``, detached, computed by the shared pass."""
        self._run()
        return self._logits

    def n_outputs(self) -> int:
        """``c``, the number of outputs per example (-1 when the output is not ``(n, c)``)."""
        self._run()
        return -1 if self.outputs is None else self.outputs

    def input_jacobians(self) -> torch.Tensor | None:
        """``(n, c, d)`` Jacobians of each example's output with respect to its input, or None if not computed."""
        self._run()
        return self._input_jacobians

    def layer_factors(self, names: Sequence[str], on_unsupported: str, strict: bool) -> Any:
        """``(factors, n, c, info)`` as :func:`jacspec.kernels._collect` gives, or None if not shared.

        Re-raises the error (and re-emits the warnings) that collecting them raised.
        """
        request = self._factors
        if request is None or (request.names, request.on_unsupported, request.strict) != (
            tuple(names),
            on_unsupported,
            bool(strict),
        ):
            return None
        self._run()
        if request.declined:  # not wanted at this size (e.g. the kernel goes matrix-free): compute your own
            return None
        for caught in request.caught:
            warnings.warn_explicit(caught.message, caught.category, caught.filename, caught.lineno)
        request.caught = []
        if request.error is not None:
            raise request.error
        result = request.result
        request.takers -= 1
        if request.takers <= 0:  # the last probe that asked: release the activations and gradients
            request.result = None
        return result

    # -- the pass -------------------------------------------------------------------------------------
    def _run(self) -> None:
        if self._ran:
            return
        self._ran = True
        from jacspec.engine.attention import math_attention
        from jacspec.kernels import _collect

        x = self.x
        n = x.shape[0]
        c = self.outputs_hint if self.outputs_hint is not None else self._one_example_outputs()
        self.outputs = c if c >= 1 else None
        # what is still wanted at this (n, c), decided before anything runs over the whole batch
        want_input = self._input_when is not None and x.is_floating_point() and c >= 1 and self._input_when(n, c)
        request = self._factors
        if request is not None and not (c >= 1 and request.when(n, c)):
            request.declined, request = True, None
        if request is None and not want_input and not self._logits_wanted:
            return
        with math_attention() if request is not None else contextlib.nullcontext():
            if request is not None:
                xg = x.detach().clone().requires_grad_(True) if want_input else x
                sink: dict[str, Any] = {}
                info: dict[str, Any] = {}
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        self.forward_passes += 1
                        factors, n, c = _collect(
                            self.model,
                            xg,
                            request.modules,
                            None,
                            request.on_unsupported,
                            strict=request.strict,
                            info=info,
                            extra_targets=[xg] if want_input else [],
                            want_factors=request.when,
                            sink=sink,
                        )
                        request.result = (factors, n, c, info) if request.when(n, c) else None
                    except Exception as err:  # noqa: BLE001 - belongs to the probe that asked; re-raised there
                        request.error = err
                request.caught = list(caught)
                if "f" in sink:
                    self._logits = sink["f"]
                    self.outputs = int(self._logits.shape[1])
                    if want_input:
                        n, c = self._logits.shape
                        if self._input_when(n, c):
                            (grad,) = sink["extra_grads"]  # (c, n, *input_shape)
                            self._input_jacobians = grad.movedim(0, 1).reshape(n, c, -1)
                    return
            self._plain_pass(want_input)

    def _one_example_outputs(self) -> int:
        self.forward_passes += 1
        with torch.no_grad():
            out = self.model(self.x[:1])
        return int(out.shape[1]) if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == 1 else -1

    def _plain_pass(self, want_input: bool) -> None:
        self.forward_passes += 1
        if want_input:  # exactly PointJacobian's own computation on the whole batch
            from jacspec.probes.point_jacobian import input_jacobians

            try:
                self._input_jacobians, self._logits = input_jacobians(self.model, self.x)
                self.outputs = int(self._logits.shape[1])
                if not self._input_when(*self._logits.shape):  # the hinted c was wrong: not what was asked
                    self._input_jacobians = None
                return
            except (TypeError, ValueError):  # an output that is not (n, c): each probe reports it itself
                self.forward_passes += 1
        with torch.no_grad():
            self._logits = self.model(self.x)
        if isinstance(self._logits, torch.Tensor) and self._logits.dim() == 2:
            self.outputs = int(self._logits.shape[1])


@contextlib.contextmanager
def sharing(passes: Sequence[SharedPass]) -> Iterator[None]:
    """Make ``passes`` findable by :func:`active_pass` inside the block (one Monitor step).

    Examples
    --------
    >>> import torch
    >>> from jacspec.engine.shared_pass import SharedPass, active_pass, sharing
    >>> model, x = torch.nn.Linear(3, 2), torch.randn(4, 3)
    >>> shared = SharedPass(model, x)
    >>> with sharing([shared]):
    ...     active_pass(model, x) is shared
    True
    >>> active_pass(model, x) is None
    True
    """
    previous = getattr(_local, "passes", ())
    _local.passes = tuple(passes)
    try:
        yield
    finally:
        _local.passes = previous


def active_pass(model: nn.Module, x: Any) -> SharedPass | None:
    """The shared pass of this step for exactly this ``model`` and batch ``x``, or None.

    Examples
    --------
    >>> import torch
    >>> from jacspec.engine.shared_pass import SharedPass, active_pass, sharing
    >>> model, x = torch.nn.Linear(3, 2), torch.randn(4, 3)
    >>> with sharing([SharedPass(model, x)]):
    ...     active_pass(model, x.clone()) is None  # another batch: the probe measures on its own
    True
    """
    for shared in getattr(_local, "passes", ()):
        if shared.model is model and shared.x is x:
            return shared
    return None
