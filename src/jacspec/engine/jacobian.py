"""Exact per-example Jacobians of a model's output with respect to its parameters, for any torch model.

For a network ``f_w`` with ``c`` outputs and a batch ``x_1..x_n`` this computes, for every trainable
parameter tensor ``w_p`` (a tied Parameter once),

    J_p[i, a] = ∂f_a(x_i) / ∂w_p,     shape (n, c, *w_p.shape),

through ``torch.func``: ``vmap`` over the examples of ``jacrev`` of ``functional_call(model, w,
x_i[None])``. Each example is run through the model as a batch of one, so nothing in the model needs
to be batched along the first dimension: position embeddings that broadcast over the batch (Hugging
Face BERT and GPT-2 called with ``inputs_embeds``), recurrent states with the batch in dimension 1
(``nn.LSTM``/``nn.GRU`` with ``batch_first=False``), parameters read by a parent module's ``forward``
and custom modules all give the exact Jacobian. A Parameter shared by several modules is one entry of
the parameter dictionary (``torch.func.functional_call`` ties it), so its Jacobian is the sum of the
contributions of every use.

Examples must not interact (BatchNorm in train mode is refused by the callers). Where ``vmap`` cannot
batch an operation, the examples are looped over (``jacrev`` per example, then one
``torch.autograd.grad`` per example and output as the last resort); :attr:`FunctionalJacobian.method`
says which ran. Memory: a chunk of ``m`` examples holds ``m·c·P`` numbers (``P`` parameters), the chunk
size follows from the memory budget.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from jacspec.engine.attention import math_attention
from jacspec.engine.parameters import owner_of, trainable_parameters

__all__ = ["FunctionalJacobian", "per_example_jacobians"]

Output = Callable[[nn.Module, Any], torch.Tensor]


class _Wrapped(nn.Module):
    """``forward(x) = output(model, x)``: lets functional_call reparametrise the model under any output."""

    def __init__(self, model: nn.Module, output: Output | None):
        super().__init__()
        self.model = model
        self._output = output

    def forward(self, x: Any) -> torch.Tensor:
        return self.model(x) if self._output is None else self._output(self.model, x)


def _rows(out: Any) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"The network output must be a tensor of shape (n, c), but got {type(out).__name__}; pass "
            "`output=lambda model, x: ...` to select the logits."
        )
    if out.dim() == 0 or out.shape[0] != 1 or out.dim() > 2:
        raise ValueError(
            f"On a batch of one example the network output has shape {tuple(out.shape)}; it must be (1, c) "
            "(or (1,)): one row per example. Pass `output=lambda model, x: ...` returning (n, c) logits."
        )
    return out.reshape(-1)


class FunctionalJacobian:
    """Per-example Jacobians of ``output(model, x)`` with respect to the trainable parameters, by chunk.

    Parameters
    ----------
    model : nn.Module
        The network (examples must not interact: BatchNorm in eval mode).
    x : torch.Tensor
        Batch of ``n`` inputs, examples along the first dimension.
    names : sequence of str, optional
        ``named_parameters()`` names of the parameters to differentiate (default: every trainable
        parameter, a tied Parameter once).
    output : callable, optional
        ``output(model, x) -> (n, c)``; default ``model(x)``.
    chunk_size : int, optional
        Examples per ``vmap`` call (default: as many as fit in a quarter of ``memory_budget_gb``).
    memory_budget_gb : float
        Memory bound of one chunk of Jacobians.

    Attributes
    ----------
    n, c : int
        Number of examples and of outputs.
    method : str
        ``"vmap"`` (batched over examples), ``"loop"`` (``jacrev`` per example) or ``"autograd"`` (one
        ``torch.autograd.grad`` per example and output); set by the first chunk computed.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(3, 2)
    >>> jac = FunctionalJacobian(model, torch.ones(4, 3))
    >>> {k: tuple(v.shape) for k, v in jac.chunk(0, 4).items()}  # (n, c, *parameter shape)
    {'weight': (4, 2, 2, 3), 'bias': (4, 2, 2)}
    >>> jac.method
    'vmap'
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        names: Sequence[str] | None = None,
        *,
        output: Output | None = None,
        chunk_size: int | None = None,
        memory_budget_gb: float = 2.0,
    ):
        self.model = model
        self.x = x
        self.output = output
        everything = trainable_parameters(model)
        if names is None:
            names = list(everything)
        unknown = [k for k in names if k not in everything]
        if unknown:
            raise ValueError(
                f"`names` must be trainable parameters of the model (named_parameters(), requires_grad=True); "
                f"{unknown!r} are not among {list(everything)}."
            )
        self.names = list(names)
        self.params = {k: everything[k].detach() for k in self.names}
        self.wrapped = _Wrapped(model, output)
        self.n = x.shape[0]
        with torch.no_grad(), math_attention():
            probe = self.wrapped(x)  # the whole batch: its output must have one row per example
        if not isinstance(probe, torch.Tensor):
            _rows(probe)
        if probe.dim() == 0 or probe.dim() > 2 or probe.shape[0] != self.n:
            raise ValueError(
                f"The network output must have shape (n, c) = ({self.n}, c), but got {tuple(probe.shape)}; pass "
                "`output=lambda model, x: ...` returning one row per example."
            )
        self.c = 1 if probe.dim() == 1 else probe.shape[1]
        self.dtype = probe.dtype
        self.device = probe.device
        self.width = sum(p.numel() for p in self.params.values())
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        per_example = max(1, self.c * self.width * itemsize * 3)  # Jacobian + jacrev's intermediates
        budget = float(memory_budget_gb) * 2**30
        self.chunk_size = chunk_size or max(1, int(budget / 4 // per_example))
        self.method: str | None = None
        self._cache: tuple[int, int, dict[str, torch.Tensor]] | None = None

    # -- the per-example function -------------------------------------------------------------------

    def _f(self, params: dict[str, torch.Tensor], example: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call

        prefixed = {"model." + k: v for k, v in params.items()}
        return _rows(functional_call(self.wrapped, prefixed, (example.unsqueeze(0),)))

    def _vmap(self, xs: torch.Tensor) -> dict[str, torch.Tensor]:
        from torch.func import jacrev, vmap

        return vmap(jacrev(self._f), in_dims=(None, 0))(self.params, xs)

    def _loop(self, xs: torch.Tensor) -> dict[str, torch.Tensor]:
        from torch.func import jacrev

        per = [jacrev(self._f)(self.params, xs[i]) for i in range(xs.shape[0])]
        return {k: torch.stack([p[k] for p in per]) for k in self.names}

    def _autograd(self, xs: torch.Tensor) -> dict[str, torch.Tensor]:
        everything = trainable_parameters(self.model)
        params = [everything[k] for k in self.names]
        out: dict[str, list[torch.Tensor]] = {k: [] for k in self.names}
        with torch.enable_grad():
            for i in range(xs.shape[0]):
                f = _rows(self.wrapped(xs[i : i + 1]))
                rows = [
                    torch.autograd.grad(f[a], params, retain_graph=True, allow_unused=True) for a in range(f.numel())
                ]
                for j, k in enumerate(self.names):
                    out[k].append(
                        torch.stack([g[j] if g[j] is not None else torch.zeros_like(params[j]) for g in rows])
                    )
        return {k: torch.stack(v).detach() for k, v in out.items()}

    def chunk(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        """``{name: J[start:stop]}``, each ``(stop − start, c, *shape)`` (the last chunk is cached)."""
        if self._cache is not None and self._cache[:2] == (start, stop):
            return self._cache[2]
        pieces: list[dict[str, torch.Tensor]] = []
        for s in range(start, stop, self.chunk_size):
            xs = self.x[s : min(stop, s + self.chunk_size)]
            pieces.append(self._compute(xs))
        result = {k: torch.cat([p[k] for p in pieces]) if len(pieces) > 1 else pieces[0][k] for k in self.names}
        self._cache = (start, stop, result)
        return result

    def _compute(self, xs: torch.Tensor) -> dict[str, torch.Tensor]:
        with math_attention(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*There is a performance drop because we have not yet")
            return self._compute_any(xs)

    def _compute_any(self, xs: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.names:
            return {}
        if self.method in (None, "vmap"):
            try:
                result = self._vmap(xs)
                self.method = "vmap"
                return result
            except (RuntimeError, NotImplementedError, ValueError, TypeError) as err:
                if self.method == "vmap":
                    raise
                self._vmap_error = err
        if self.method in (None, "loop"):
            try:
                result = self._loop(xs)
                self.method = "loop"
                return result
            except (RuntimeError, NotImplementedError) as err:
                if self.method == "loop":
                    raise
                self._loop_error = err
        result = self._autograd(xs)
        self.method = "autograd"
        return result

    def rows(self, start: int, stop: int, names: Sequence[str] | None = None) -> torch.Tensor:
        """``Φ[(i, a), :]`` for ``start ≤ i < stop``: the Jacobians of ``names`` flattened, ``((stop−start)·c, P)``."""
        blocks = self.chunk(start, stop)
        keys = self.names if names is None else list(names)
        m = stop - start
        if not keys:
            return torch.zeros(m * self.c, 0, dtype=self.dtype, device=self.device)
        return torch.cat([blocks[k].reshape(m * self.c, -1) for k in keys], dim=1)

    def layers(self) -> dict[str, list[str]]:
        """``{owning module: [parameter names]}`` in parameter order (the root is ``"(root)"``)."""
        grouped: dict[str, list[str]] = {}
        for k in self.names:
            grouped.setdefault(owner_of(k), []).append(k)
        return grouped


def per_example_jacobians(
    model: nn.Module,
    x: torch.Tensor,
    names: Sequence[str] | None = None,
    *,
    output: Output | None = None,
    chunk_size: int | None = None,
    memory_budget_gb: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Per-example Jacobians ``J_p[i, a] = ∂f_a(x_i)/∂w_p`` of every trainable parameter, exactly.

    Parameters
    ----------
    model : nn.Module
        The network; its output on ``x`` is ``(n, c)`` (or select it with ``output``).
    x : torch.Tensor
        Batch of ``n`` inputs, examples along the first dimension.
    names : sequence of str, optional
        Parameters to differentiate (``named_parameters()`` names; default: every trainable one, a tied
        Parameter once, its Jacobian summed over every use).
    output : callable, optional
        ``output(model, x) -> (n, c)``.
    chunk_size : int, optional
        Examples per ``vmap`` call.
    memory_budget_gb : float
        Memory bound of one chunk.

    Returns
    -------
    dict of str to torch.Tensor
        ``{name: (n, c, *parameter shape)}``.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(3, 2, bias=False)
    >>> x = torch.randn(4, 3)
    >>> jac = per_example_jacobians(model, x)["weight"]  # ∂(Wx)_a/∂W_bk = δ_ab x_k
    >>> torch.allclose(jac[:, 0, 0], x) and bool((jac[:, 0, 1] == 0).all())
    True
    """
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        raise TypeError(f"`x` must be a tensor with examples along the first dimension, but got {type(x).__name__}.")
    engine = FunctionalJacobian(
        model, x, names, output=output, chunk_size=chunk_size, memory_budget_gb=memory_budget_gb
    )
    return engine.chunk(0, engine.n)
