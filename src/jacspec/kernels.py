"""Empirical tangent kernels of multiclass networks, layer by layer, without the full Jacobian.

For a network ``f_w: X → R^c`` and a batch ``x_1..x_n``, the tangent features are the rows of the
``(n·c) × P`` Jacobian ``Φ[(i, a), p] = ∂f_a(x_i)/∂w_p`` (Baratin 2021, eq. 1 and B.1.4, eq. 22) and the
tangent kernel is ``K = Φ Φᵀ``, an ``(n·c) × (n·c)`` matrix with rows ordered sample-major
(index ``i·c + a``). Splitting the parameters by the module that owns them gives the layer-wise
kernels ``K = Σ_ℓ K^ℓ`` with ``K^ℓ = Φ_ℓ Φ_ℓᵀ`` (thesis, section 4.3.3).

``Φ`` is never materialised. One forward pass with hooks records, for every parametrised module, its
input and output; ``c`` backward passes give ``G[i, a] = ∂f_a(x_i)/∂z_i``, the gradient of class
score ``a`` with respect to the module output ``z_i``. Then

* ``nn.Linear`` (input ``x_i``, no extra dims): ``Φ_ℓ[(i, a)] = g_ia ⊗ [x_i, 1]`` and
  ``K^ℓ[(i, a), (j, b)] = (g_ia · g_jb) (x_i · x_j + 1)``, i.e. ``K^ℓ = (G Gᵀ) ∘ (X Xᵀ + 1)`` with the
  input Gram matrix broadcast over classes: two matrix products, no per-example gradient;
* ``nn.Linear`` on extra dims and ``nn.Conv2d`` (``groups=1``, zero padding): the per-layer Jacobian
  ``Φ_ℓ[(i, a)] = Σ_t g_iat ⊗ [u_it, 1]`` from the unfolded input patches ``u_it``, built a chunk of
  examples at a time;
* any other module that owns parameters (LayerNorm, BatchNorm in eval mode, Embedding, attention,
  custom modules): per-example vector-Jacobian products of the module alone, ``Φ_ℓ[(i, a)] =
  g_iaᵀ ∂z_i/∂w_ℓ``, with ``torch.func.vmap`` over examples and classes, a chunk of examples at a
  time.

Which implementation runs (``implementation=``):

* ``"structured"``: the per-layer hooks above. Exact when every parameter is read only inside the
  ``forward`` of the module that owns it, every module's inputs and outputs are batched along their
  first dimension and no Parameter is shared between modules; otherwise the offending parameters are
  reported through ``on_unsupported`` (a parameter that a parent module reads while its own module also
  runs is detected by recording which module's ``forward`` reads each parameter, never counted once
  silently). A parameter read only by an ancestor (``MultiheadAttention.out_proj``) is differentiated
  through that ancestor's forward; its block keeps the name of the module that owns it.
* ``"functional"``: the exact generic fallback of :mod:`jacspec.engine.jacobian`: per-example
  Jacobians of the whole model through ``torch.func`` (``vmap`` over ``functional_call`` + ``jacrev``,
  chunked under the memory budget, a loop over examples where ``vmap`` cannot batch), then
  ``K^ℓ = Σ_{p ∈ ℓ} J_p J_pᵀ``. Handles broadcast position embeddings (Hugging Face BERT/GPT-2 with
  ``inputs_embeds``), recurrent states with the batch in dimension 1 (LSTM/GRU), tied Parameters
  (one entry, its Jacobian summed over every use), parameters read by a parent module and custom
  modules. Costs ``n·c`` rows of the Jacobian in memory (by chunks).
* ``"auto"`` (default): ``"structured"`` when every module owning a trainable parameter is of a known
  class (``nn.Linear``, ``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d``, ``nn.Embedding``,
  ``nn.LayerNorm``, ``nn.GroupNorm``, ``nn.BatchNorm1d/2d/3d`` in eval mode, and classes added to
  :data:`STRUCTURED_MODULES`), no Parameter is registered under two names, every parameter is read only
  by its own module and every module output is batched along dim 0; ``"functional"`` otherwise.

With every implementation the ``layer`` of a parameter is the ``named_modules()`` name of the module
that owns it (the root spelled ``"(root)"``). Examples must not interact (BatchNorm in train mode
raises).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from jacspec.engine.attention import with_math_attention
from jacspec.engine.jacobian import FunctionalJacobian
from jacspec.engine.parameters import module_name, owner_of, tied_parameters, trainable_parameters
from jacspec.engine.shared_pass import active_pass
from jacspec.engine.usage import ReadTracker
from jacspec.memory import check_memory

__all__ = [
    "STRUCTURED_MODULES",
    "UnsupportedLayerError",
    "alignment",
    "center_features",
    "centered_kernel_alignment",
    "effective_rank",
    "label_vector",
    "layerwise_tangent_kernels",
    "parametrised_modules",
    "tangent_kernel",
    "tangent_kernel_diagonal",
    "trace_ratios",
]

OnUnsupported = Literal["raise", "warn", "ignore"]
Implementation = Literal["auto", "structured", "functional"]

#: Module classes whose per-layer hooks ``implementation="auto"`` trusts; add your own (``.add(cls)``)
#: for a module that reads only its own parameters and keeps its outputs batched along dim 0.
STRUCTURED_MODULES: set[type[nn.Module]] = {
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Embedding,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
}


class _NeedsFunctional(Exception):
    """Raised inside the structured path under implementation='auto': use the functional one."""


class UnsupportedLayerError(ValueError):
    """A parametrised module whose contribution to the tangent kernel cannot be computed.

    Examples
    --------
    >>> from jacspec.kernels import UnsupportedLayerError
    >>> issubclass(UnsupportedLayerError, ValueError)
    True
    """


# --------------------------------------------------------------------------------------------------
# Which modules are layers
# --------------------------------------------------------------------------------------------------


def parametrised_modules(model: nn.Module, layers: Sequence[str] | None = None) -> dict[str, nn.Module]:
    """Modules that directly own at least one parameter with ``requires_grad``, by module name.

    Parameters
    ----------
    model : nn.Module
        The network.
    layers : sequence of str, optional
        Restrict to these module names (from ``model.named_modules()``); ``None`` keeps all.

    Returns
    -------
    dict
        ``{name: module}`` in ``named_modules()`` order; the root module is named ``"(root)"``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.kernels import parametrised_modules
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> list(parametrised_modules(model))
    ['0', '2']
    """
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if any(p is not None and p.requires_grad for p in module._parameters.values()):
            found[name or "(root)"] = module
    if layers is not None:
        if isinstance(layers, str):
            layers = [layers]
        unknown = [name for name in layers if name not in found]
        if unknown:
            raise ValueError(
                f"`layers` must name modules that own trainable parameters; {unknown!r} are not among {list(found)}."
            )
        found = {name: found[name] for name in found if name in set(layers)}
    if not found:
        frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
        raise ValueError(
            "`model` has no module with trainable parameters (requires_grad=True)"
            + (f"; these are frozen: {frozen[:10]}{' ...' if len(frozen) > 10 else ''}" if frozen else "")
            + ". Unfreeze the parameters to measure (p.requires_grad_(True)), or pick `layers` that own trainable ones."
        )
    return found


def _own_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p for k, p in module._parameters.items() if p is not None and p.requires_grad}


def _check_no_training_batchnorm(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise ValueError(
                f"`model` has BatchNorm module {name!r} in train mode: its output for one example depends "
                "on the whole batch, so per-example tangent features are not defined. Call model.eval() "
                "(or use the probe's default mode='eval') to use the running statistics."
            )


# --------------------------------------------------------------------------------------------------
# Per-layer factors: what the hooks record
# --------------------------------------------------------------------------------------------------


@dataclass
class _Call:
    args: tuple
    kwargs: dict
    outputs: list[torch.Tensor]  # tensor leaves of the output that require grad
    spec: Any  # pytree spec of the output
    leaf_index: list[int]  # position of each kept leaf in the flattened output
    n_leaves: int


@dataclass
class _LayerRecord:
    name: str
    module: nn.Module
    params: dict[str, torch.Tensor]
    calls: list[_Call] = field(default_factory=list)
    adopted_by: str | None = None


class _Factors:
    """The data one layer needs to produce its rows of Φ_ℓ for one batch."""

    n: int
    c: int

    def phi(self, start: int, stop: int) -> torch.Tensor:  # ((stop-start)·c, P_ℓ)
        raise NotImplementedError

    def width(self) -> int:
        raise NotImplementedError


class _OuterFactors(_Factors):
    """Linear / Conv2d: Φ_ℓ[(i, a)] = Σ_t g_iat ⊗ u_it with u the (bias-augmented) input patches."""

    def __init__(self, u: torch.Tensor, g: torch.Tensor):
        self.u = u  # (n, T, d)
        self.g = g  # (n, c, T, o)
        self.n, self.c = g.shape[0], g.shape[1]

    @property
    def positions(self) -> int:
        return self.u.shape[1]

    def width(self) -> int:
        return self.u.shape[2] * self.g.shape[3]

    def phi(self, start: int, stop: int) -> torch.Tensor:
        g, u = self.g[start:stop], self.u[start:stop]
        if self.positions == 1:
            out = g[:, :, 0, :, None] * u[:, None, 0, None, :]
        else:
            out = torch.einsum("iato,itd->iaod", g, u)
        return out.reshape((stop - start) * self.c, -1)


class _GenericFactors(_Factors):
    """Any module: Φ_ℓ rows by per-example vector-Jacobian products of the module (torch.func)."""

    def __init__(self, record: _LayerRecord, grads: list[list[torch.Tensor]], n: int, c: int):
        self.record = record
        self.grads = grads  # per call, per kept output leaf: (c, n, *leaf_shape[1:])
        self.n, self.c = n, c

    def width(self) -> int:
        return sum(p.numel() for p in self.record.params.values())

    def phi(self, start: int, stop: int) -> torch.Tensor:
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[:2] == (start, stop):
            return cached[2]
        rows = self._phi(start, stop)
        self._cache = (start, stop, rows)  # shared by the blocks of adopted parameters
        return rows

    def _phi(self, start: int, stop: int) -> torch.Tensor:
        from torch.func import functional_call, vjp, vmap

        module = self.record.module
        params = {k: p.detach() for k, p in self.record.params.items()}
        total = None
        for call, grads in zip(self.record.calls, self.grads):
            args = tuple(_slice_batch(_detach(a), self.n, start, stop) for a in call.args)
            in_dims = tuple(0 if _is_batched(a, self.n) else None for a in call.args)
            cotangents = [g[:, start:stop].transpose(0, 1) for g in grads]  # (m, c, ...)

            def per_example(p, example_args, example_cotangents, call=call, in_dims=in_dims):
                def module_fn(p_):
                    batched = tuple(a.unsqueeze(0) if d == 0 else a for a, d in zip(example_args, in_dims, strict=True))
                    out = functional_call(module, p_, batched, call.kwargs)
                    leaves, _ = tree_flatten(out)
                    return tuple(leaves[k].squeeze(0) for k in call.leaf_index)

                _, vjp_fn = vjp(module_fn, p)
                return vmap(lambda *cts: vjp_fn(tuple(cts))[0])(*example_cotangents)

            result = vmap(per_example, in_dims=(None, in_dims, 0))(params, args, cotangents)
            flat = torch.cat([result[k].reshape(stop - start, self.c, -1) for k in params], dim=2)
            total = flat if total is None else total + flat
        return total.reshape((stop - start) * self.c, -1)


def _detach(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def _is_batched(value: Any, n: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n


def _slice_batch(value: Any, n: int, start: int, stop: int) -> Any:
    return value[start:stop] if _is_batched(value, n) else value


def _handle_unsupported(message: str, on_unsupported: OnUnsupported) -> None:
    if on_unsupported == "raise":
        raise UnsupportedLayerError(
            message + " Pass on_unsupported='warn' or 'ignore' to leave these parameters out of the kernel."
        )
    if on_unsupported == "warn":
        warnings.warn(message + " These parameters are left out of the kernel.", stacklevel=4)


def _structured_kind(module: nn.Module, params: dict[str, torch.Tensor]) -> str:
    if set(params) - {"weight", "bias"}:
        return "generic"
    if type(module) is nn.Linear:
        return "linear"
    if (
        type(module) is nn.Conv2d
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    ):
        return "conv2d"
    return "generic"


def _outer_factors(record: _LayerRecord, grads: list[list[torch.Tensor]], n: int, c: int) -> _OuterFactors:
    """Bias-augmented input patches u (n, T, d) and output gradients g (n, c, T, o), calls concatenated."""
    module = record.module
    us, gs = [], []
    for call, (g,) in zip(record.calls, grads):
        inp = call.args[0].detach()
        if isinstance(module, nn.Conv2d):
            patches = F.unfold(
                inp, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride
            ).transpose(1, 2)  # (n, T, in·kh·kw), T = output positions in row-major order
            grad = g.reshape(c, n, g.shape[2], -1).permute(1, 0, 3, 2)  # (n, c, T, out)
        else:
            patches = inp.reshape(n, -1, inp.shape[-1])
            grad = g.reshape(c, n, -1, g.shape[-1]).transpose(0, 1)
        parts = []
        if "weight" in record.params:
            parts.append(patches)
        if "bias" in record.params:
            parts.append(torch.ones_like(patches[..., :1]))
        us.append(torch.cat(parts, dim=-1))
        gs.append(grad)
    return _OuterFactors(torch.cat(us, dim=1), torch.cat(gs, dim=2))


def _collect(
    model: nn.Module,
    x: Any,
    names: dict[str, nn.Module],
    output: Callable[[nn.Module, Any], torch.Tensor] | None,
    on_unsupported: OnUnsupported,
    strict: bool = False,
    info: dict[str, Any] | None = None,
    extra_targets: Sequence[torch.Tensor] = (),
    want_factors: Callable[[int, int], bool] | None = None,
    sink: dict[str, Any] | None = None,
) -> tuple[dict[str, _Factors], int, int]:
    """One forward pass with hooks and c backward passes: the factors of every layer for batch ``x``.

    ``strict`` (implementation="auto"): raise ``_NeedsFunctional`` at the first sign that the hooks
    would not be exact (unknown class, tied, parent-read or unbatched), instead of ``on_unsupported``.
    The shared pass (:mod:`jacspec.engine.shared_pass`) also passes ``extra_targets`` (tensors the
    forward started from, e.g. ``x`` requiring grad, whose ``(c, *shape)`` gradients the same backward
    passes give), ``want_factors(n, c)`` (False: only the output and the extra gradients are wanted) and
    ``sink`` (filled with the detached output ``"f"`` and ``"extra_grads"``).
    """
    _check_no_training_batchnorm(model)
    if strict:
        unknown = [name for name, module in names.items() if type(module) not in STRUCTURED_MODULES]
        if unknown:
            raise _NeedsFunctional(f"modules of classes outside STRUCTURED_MODULES: {unknown}")
        if tied_parameters(model):
            raise _NeedsFunctional("tied parameters")
    owners: dict[int, list[str]] = {}
    records: dict[str, _LayerRecord] = {}
    for name, module in names.items():
        params = _own_parameters(module)
        for p in params.values():
            owners.setdefault(id(p), []).append(name)
        records[name] = _LayerRecord(name, module, params)
    # a parameter object owned by several modules (weight tying) would need cross terms
    shared = {pid: who for pid, who in owners.items() if len(who) > 1}
    if shared:
        who = sorted({n for w in shared.values() for n in w})
        if strict:
            raise _NeedsFunctional("shared parameters")
        _handle_unsupported(
            f"Parameters shared between modules {who} (weight tying) are not supported by the per-layer "
            "hooks (implementation='structured'); implementation='functional' (or 'auto') sums the "
            "contributions of every use exactly.",
            on_unsupported,
        )
        for name in who:
            records[name].params = {k: p for k, p in records[name].params.items() if id(p) not in shared}

    # ancestors of the layers are hooked too: a parameter used by an ancestor's forward rather than by
    # its own module's (e.g. MultiheadAttention.out_proj) is adopted by the nearest ancestor that ran
    all_modules = dict(model.named_modules())
    ancestors: dict[str, _LayerRecord] = {}
    for name in records:
        parts = [] if name == "(root)" else name.split(".")
        for k in range(len(parts) - 1, -1, -1):
            parent = ".".join(parts[:k]) or "(root)"
            if parent not in records and parent not in ancestors:
                ancestors[parent] = _LayerRecord(parent, all_modules["" if parent == "(root)" else parent], {})

    n_expected = x.shape[0] if isinstance(x, torch.Tensor) else None
    aborted: list[str] = []

    def make_hook(record: _LayerRecord):
        def hook(module, args, kwargs, out):
            leaves, spec = tree_flatten(out)
            keep = [
                k
                for k, leaf in enumerate(leaves)
                if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.requires_grad
            ]
            if strict and record.params and any(leaves[k].shape[:1] != (n_expected,) for k in keep):
                # abort the forward at once: the functional engine will run instead (the flag holds even
                # if the model's forward catches the exception)
                aborted.append(record.name)
                raise _NeedsFunctional(f"module {record.name!r} not batched along dim 0")
            record.calls.append(_Call(args, kwargs, [leaves[k] for k in keep], spec, keep, len(leaves)))
            # hand a copy downstream, so that in-place operations after the module leave our tensor intact
            return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) and t.requires_grad else t, out)

        return hook

    handles = []
    watched = {id(p): p for r in records.values() for p in r.params.values()}
    tracker = ReadTracker(model, watched)
    try:
        for record in [*records.values(), *ancestors.values()]:
            if record.params or record.name in ancestors:
                handles.append(record.module.register_forward_hook(make_hook(record), with_kwargs=True))
        tracker.attach()
        with torch.enable_grad(), tracker:
            f = model(x) if output is None else output(model, x)
            if not isinstance(f, torch.Tensor):
                raise TypeError(
                    f"The network output must be a tensor of shape (n, c), but got {type(f).__name__}; pass "
                    "`output=lambda model, x: ...` to select the logits."
                )
    finally:
        tracker.detach()
        for handle in handles:
            handle.remove()
    if aborted:
        raise _NeedsFunctional(f"module {aborted[0]!r} not batched along dim 0")
    n = x.shape[0] if isinstance(x, torch.Tensor) else f.shape[0]
    if f.dim() == 1:
        f = f[:, None]
    if f.dim() != 2 or f.shape[0] != n:
        raise ValueError(
            f"The network output must have shape (n, c) = ({n}, c), but got {tuple(f.shape)}; pass "
            "`output=lambda model, x: ...` returning one row per example."
        )
    c = f.shape[1]

    def batched(record: _LayerRecord) -> bool:
        return all(t.shape[:1] == (n,) for call in record.calls for t in call.outputs)

    # a parameter read by another module's forward (a parent, or a second module) than its own
    for record in records.values():
        foreign = {}
        for key, p in record.params.items():
            others = tracker.readers.get(id(p), set()) - {record.name}
            if others:
                foreign[key] = sorted(others)
        if not foreign:
            continue
        if strict:
            raise _NeedsFunctional(f"parameters of {record.name!r} read by {foreign}")
        if record.calls:  # its own forward used them too: the hooks would count one use only
            prefix = "" if record.name == "(root)" else record.name + "."
            _handle_unsupported(
                f"Parameters {[prefix + k for k in foreign]} of module {record.name!r} "
                f"({type(record.module).__name__}) are read by its own forward and also by the forward of "
                f"{sorted({m for v in foreign.values() for m in v})}: per-layer hooks would count only the "
                "first use. implementation='functional' (or 'auto') counts every use exactly.",
                on_unsupported,
            )
            record.params = {k: p for k, p in record.params.items() if k not in foreign}
            if not record.params:
                record.calls = []

    for record in records.values():
        if record.params and record.calls and not batched(record):
            if strict:
                raise _NeedsFunctional(f"module {record.name!r} not batched along dim 0")
            bad = next(t for call in record.calls for t in call.outputs if t.shape[:1] != (n,))
            _handle_unsupported(
                f"Module {record.name!r} ({type(record.module).__name__}) returned a tensor of shape "
                f"{tuple(bad.shape)}, not batched along the first dimension (n = {n}), so the per-layer hooks "
                "(implementation='structured') cannot split it by example; implementation='functional' (or "
                "'auto') runs each example alone and handles it.",
                on_unsupported,
            )
            record.params, record.calls = {}, []

    # modules that own parameters but whose forward hook never fired
    silent = [r for r in records.values() if r.params and not r.calls]
    if silent:
        params = [p for r in silent for p in r.params.values()]
        with torch.enable_grad():
            used = torch.autograd.grad(f.sum(), params, retain_graph=True, allow_unused=True)
        k = 0
        for record in silent:
            m = len(record.params)
            if any(g is not None for g in used[k : k + m]):
                if strict:
                    raise _NeedsFunctional(f"parameters of {record.name!r} used outside its forward")
                _adopt(record, records, ancestors, batched, on_unsupported)
            k += m
        records = {name: records.get(name) or ancestors[name] for name in all_names_in_order(model, records, ancestors)}

    if info is not None:
        kept = {id(p) for r in records.values() for p in r.params.values()}
        info["used_ids"] = kept
        info["dropped_ids"] = set(owners) - kept
    keep_factors = want_factors is None or want_factors(n, c)
    targets = [t for r in records.values() for call in r.calls for t in call.outputs] if keep_factors else []
    everything = targets + list(extra_targets)
    grads_all = _output_gradients(f, everything) if everything else []
    grads_flat = grads_all[: len(targets)]
    if sink is not None:
        sink["f"] = f.detach()
        sink["extra_grads"] = grads_all[len(targets) :]
    if not keep_factors:
        return {}, n, c
    factors: dict[str, _Factors] = {}
    k = 0
    for name, record in records.items():
        grads = []
        for call in record.calls:
            grads.append(grads_flat[k : k + len(call.outputs)])
            k += len(call.outputs)
        if not record.params or not record.calls:
            if name in ancestors and not record.params:
                continue  # an ancestor that adopted nothing is not a layer
            factors[name] = _ZeroFactors(n, c)
            continue
        kind = _structured_kind(record.module, record.params)
        if kind != "generic" and all(len(call.outputs) == 1 for call in record.calls):
            factors[name] = _outer_factors(record, grads, n, c)
            continue
        generic = _GenericFactors(record, grads, n, c)
        groups = _owner_columns(name, record.params)
        if len(groups) == 1 and name in groups:
            factors[name] = generic
        else:  # parameters adopted from descendants: one block per owning module
            for owner, columns in groups.items():
                factors[owner] = _ColumnFactors(generic, columns)
    order = {module_name(m): k for k, (m, _) in enumerate(model.named_modules())}
    factors = {name: factors[name] for name in sorted(factors, key=lambda name: order.get(name, len(order)))}
    return factors, n, c


def _owner_columns(name: str, params: dict[str, torch.Tensor]) -> dict[str, list[tuple[int, int]]]:
    """``{owning module: [(start, stop) column ranges]}`` of a record's parameters (adopted keys hold dots)."""
    prefix = "" if name == "(root)" else name + "."
    groups: dict[str, list[tuple[int, int]]] = {}
    offset = 0
    for key, p in params.items():
        owner = name if "." not in key else prefix + key.rsplit(".", 1)[0]
        groups.setdefault(owner, []).append((offset, offset + p.numel()))
        offset += p.numel()
    return groups


class _ColumnFactors(_Factors):
    """Some columns of another layer's Φ rows: the parameters of one module adopted by its ancestor."""

    def __init__(self, base: _GenericFactors, columns: list[tuple[int, int]]):
        self.base = base
        self.columns = columns
        self.n, self.c = base.n, base.c

    def width(self) -> int:
        return sum(stop - start for start, stop in self.columns)

    def phi(self, start: int, stop: int) -> torch.Tensor:
        rows = self.base.phi(start, stop)
        return torch.cat([rows[:, a:b] for a, b in self.columns], dim=1)


def _adopt(
    record: _LayerRecord,
    records: dict[str, _LayerRecord],
    ancestors: dict[str, _LayerRecord],
    batched: Callable[[_LayerRecord], bool],
    on_unsupported: OnUnsupported,
) -> None:
    """Move the parameters of a module that never ran to the nearest ancestor that ran (batched)."""
    parts = [] if record.name == "(root)" else record.name.split(".")
    for k in range(len(parts) - 1, -1, -1):
        parent_name = ".".join(parts[:k]) or "(root)"
        parent = records.get(parent_name) or ancestors[parent_name]
        if parent.calls and batched(parent):
            prefix = "" if parent_name == "(root)" else parent_name + "."
            relative = record.name[len(prefix) :] if prefix else record.name
            for key, p in record.params.items():
                parent.params[f"{relative}.{key}"] = p
            record.params = {}
            record.adopted_by = parent_name
            return
    _handle_unsupported(
        f"Module {record.name!r} owns parameters that the output depends on, but neither its forward nor that "
        "of an enclosing module (with outputs batched along dim 0) ran.",
        on_unsupported,
    )
    record.params = {}


def all_names_in_order(
    model: nn.Module, records: dict[str, _LayerRecord], ancestors: dict[str, _LayerRecord]
) -> list[str]:
    """Names of the layer records and the ancestors holding adopted parameters, in named_modules order."""
    keep = {name for name, r in records.items() if r.adopted_by is None}
    keep |= {name for name, r in ancestors.items() if r.params}
    return [(name or "(root)") for name, _ in model.named_modules() if (name or "(root)") in keep]


class _ZeroFactors(_Factors):
    """A layer whose parameters the output does not depend on: Φ_ℓ = 0."""

    def __init__(self, n: int, c: int):
        self.n, self.c = n, c

    def width(self) -> int:
        return 0

    def phi(self, start: int, stop: int) -> torch.Tensor:
        return torch.zeros((stop - start) * self.c, 0)


def _output_gradients(f: torch.Tensor, targets: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[∂f_a/∂t for a in classes]`` stacked as (c, *t.shape) for each target tensor t."""
    n, c = f.shape
    with torch.enable_grad():
        eye = torch.eye(c, dtype=f.dtype, device=f.device)
        cotangents = eye[:, None, :].expand(c, n, c)
        try:
            grads = torch.autograd.grad(
                f, targets, grad_outputs=cotangents, is_grads_batched=True, retain_graph=True, allow_unused=True
            )
        except RuntimeError:  # an operation without a batching rule: one backward pass per class
            per_class = [
                torch.autograd.grad(f[:, a].sum(), targets, retain_graph=True, allow_unused=True) for a in range(c)
            ]
            grads = tuple(
                torch.stack([g if g is not None else torch.zeros_like(t) for g in gs])
                for gs, t in zip(zip(*per_class), targets)
            )
    return [
        (g if g is not None else torch.zeros((c, *t.shape), dtype=t.dtype, device=t.device)).detach()
        for g, t in zip(grads, targets)
    ]


# --------------------------------------------------------------------------------------------------
# Kernel assembly
# --------------------------------------------------------------------------------------------------


def _chunk_size(n_other_rows: int, width: int, c: int, itemsize: int, budget: float) -> int:
    """Examples per chunk so that a (chunk·c) × max(width, other rows) block stays within a quarter of budget."""
    per_example = c * max(width, n_other_rows, 1) * itemsize
    return max(1, int(budget / 4 // per_example))


def _gram(fa: _Factors, fb: _Factors | None, out: torch.Tensor, budget: float, chunk_size: int | None) -> None:
    """out += Φ_ℓ(a) Φ_ℓ(b)ᵀ, computed block by block (fb None: symmetric, b = a)."""
    symmetric = fb is None
    fb = fa if fb is None else fb
    c = fa.c
    if fa.width() == 0:
        return
    itemsize = out.element_size()
    if isinstance(fa, _OuterFactors) and isinstance(fb, _OuterFactors) and fa.positions == fb.positions == 1:
        # K^ℓ = (G Gᵀ) ∘ (U Uᵀ) with U Uᵀ = X Xᵀ + 1 broadcast over the classes
        gb = fb.g[:, :, 0, :].reshape(fb.n * c, -1)
        ub = fb.u[:, 0, :]
        step = chunk_size or _chunk_size(fb.n * c, 0, c, itemsize, budget)
        for start in range(0, fa.n, step):
            stop = min(start + step, fa.n)
            gg = fa.g[start:stop, :, 0, :].reshape((stop - start) * c, -1) @ gb.T
            uu = fa.u[start:stop, 0, :] @ ub.T
            gg.view(stop - start, c, fb.n, c).mul_(uu[:, None, :, None])
            out[start * c : stop * c] += gg
        return
    step = chunk_size or _chunk_size(0, max(fa.width(), fb.n * c), c, itemsize, budget)
    # keep all of Φ_ℓ(b) when it fits in half the budget, else recompute its chunks
    keep_b = fb.n * c * fb.width() * itemsize <= budget / 2
    phi_b_all = fb.phi(0, fb.n) if keep_b else None
    for start in range(0, fa.n, step):
        stop = min(start + step, fa.n)
        phi_a = phi_b_all[start * c : stop * c] if (symmetric and keep_b) else fa.phi(start, stop)
        if keep_b:
            out[start * c : stop * c] += phi_a @ phi_b_all.T
            continue
        for bstart in range(0 if not symmetric else start, fb.n, step):
            bstop = min(bstart + step, fb.n)
            phi_b = phi_a if (symmetric and bstart == start) else fb.phi(bstart, bstop)
            block = phi_a @ phi_b.T
            out[start * c : stop * c, bstart * c : bstop * c] += block
            if symmetric and bstart != start:
                out[bstart * c : bstop * c, start * c : stop * c] += block.T


def _diagonal(fa: _Factors, out: torch.Tensor, budget: float, chunk_size: int | None) -> None:
    c = fa.c
    if fa.width() == 0:
        return
    if isinstance(fa, _OuterFactors) and fa.positions == 1:
        out += ((fa.g[:, :, 0, :] ** 2).sum(-1) * (fa.u[:, None, 0, :] ** 2).sum(-1)).reshape(-1)
        return
    step = chunk_size or _chunk_size(0, fa.width(), c, out.element_size(), budget)
    for start in range(0, fa.n, step):
        stop = min(start + step, fa.n)
        out[start * c : stop * c] += (fa.phi(start, stop) ** 2).sum(1)


def _check_options(on_unsupported: str, memory_budget_gb: float) -> float:
    if on_unsupported not in ("raise", "warn", "ignore"):
        raise ValueError(f"`on_unsupported` must be 'raise', 'warn' or 'ignore', but got {on_unsupported!r}.")
    if not isinstance(memory_budget_gb, (int, float)) or isinstance(memory_budget_gb, bool) or memory_budget_gb <= 0:
        raise ValueError(f"`memory_budget_gb` must be a positive number of gigabytes, but got {memory_budget_gb!r}.")
    return float(memory_budget_gb) * 2**30


def _n_examples(x: Any) -> int:
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        raise TypeError(f"`x` must be a tensor with examples along the first dimension, but got {type(x).__name__}.")
    return x.shape[0]


def _check_kernel_memory(rows: int, cols: int, n_kernels: int, dtype: torch.dtype, budget: float) -> None:
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = n_kernels * rows * cols * itemsize
    check_memory(
        need,
        int(budget),
        what=f"{n_kernels} kernel matri{'ces' if n_kernels > 1 else 'x'} of shape ({rows}, {cols}) (n·c rows, {dtype})",
        ways_out=[
            "fewer examples (TangentKernel(max_examples=...))",
            "TangentKernel(method='lanczos')",
            "fewer `layers`",
        ],
        argument="memory_budget_gb",
        shown=f"{budget / 2**30:g}",
    )


def _check_implementation(implementation: Any) -> None:
    if implementation not in ("auto", "structured", "functional"):
        raise ValueError(f"`implementation` must be 'auto', 'structured' or 'functional', but got {implementation!r}.")


class _FunctionalFactors(_Factors):
    """Rows of Φ_ℓ read from the exact per-example Jacobians of the functional engine."""

    def __init__(self, engine: FunctionalJacobian, keys: list[str]):
        self.engine = engine
        self.keys = keys
        self.n, self.c = engine.n, engine.c

    def width(self) -> int:
        return sum(self.engine.params[k].numel() for k in self.keys)

    def phi(self, start: int, stop: int) -> torch.Tensor:
        return self.engine.rows(start, stop, self.keys)


def _functional_factors(
    model: nn.Module,
    x: torch.Tensor,
    names: dict[str, nn.Module],
    output: Callable[[nn.Module, Any], torch.Tensor] | None,
    memory_budget_gb: float,
    chunk_size: int | None,
) -> tuple[dict[str, _Factors], FunctionalJacobian]:
    _check_no_training_batchnorm(model)
    params = trainable_parameters(model, list(names))
    # Φ of every layer is computed at once when it fits in half the budget (layers share the cache)
    engine = FunctionalJacobian(model, x, list(params), output=output, memory_budget_gb=memory_budget_gb)
    itemsize = torch.empty((), dtype=engine.dtype).element_size()
    if chunk_size is not None:
        engine.chunk_size = chunk_size
    grouped: dict[str, list[str]] = {}
    for key in params:
        grouped.setdefault(owner_of(key), []).append(key)
    if engine.n * engine.c * engine.width * itemsize <= float(memory_budget_gb) * 2**30 / 2:
        engine.chunk(0, engine.n)
    else:
        engine.chunk(0, min(engine.n, engine.chunk_size))  # sets engine.method
    factors: dict[str, _Factors] = {
        name: _FunctionalFactors(engine, grouped[name]) for name in names if name in grouped
    }
    return factors, engine


def _factors(
    model: nn.Module,
    x: torch.Tensor,
    x2: torch.Tensor | None,
    names: dict[str, nn.Module],
    output: Callable[[nn.Module, Any], torch.Tensor] | None,
    on_unsupported: OnUnsupported,
    implementation: Implementation,
    memory_budget_gb: float,
    chunk_size: int | None,
    report: dict[str, Any] | None,
) -> tuple[dict[str, _Factors], dict[str, _Factors] | None, int, int, int]:
    """The factors of every layer on ``x`` (and ``x2``), by the implementation chosen."""
    info: dict[str, Any] = {}
    used: list[str] = []
    reasons: dict[str, str] = {}
    chosen = implementation
    factors_a = factors_b = None
    if implementation in ("auto", "structured"):
        try:
            shared = active_pass(model, x) if output is None and x2 is None else None
            taken = None if shared is None else shared.layer_factors(names, on_unsupported, implementation == "auto")
            if taken is not None:  # this step's shared pass collected them (one forward for every probe)
                factors_a, n, c, shared_info = taken
                info.update(shared_info)
            else:
                factors_a, n, c = _collect(
                    model, x, names, output, on_unsupported, strict=implementation == "auto", info=info
                )
            m = n
            if x2 is not None:
                factors_b, m, c2 = _collect(
                    model, x2, names, output, on_unsupported, strict=implementation == "auto", info={}
                )
                if c2 != c:
                    raise ValueError(f"`x` and `x2` give outputs with {c} and {c2} classes; they must agree.")
            chosen = "structured"
            method = "hooks"
            ids = info.get("used_ids", set())
            everything = dict(model.named_parameters())
            used = [k for k, p in everything.items() if id(p) in ids]
            reasons = {
                k: "unsupported by the per-layer hooks"
                for k, p in everything.items()
                if id(p) in info.get("dropped_ids", set())
            }
        except _NeedsFunctional as why:
            chosen = "functional"
            info["reason"] = str(why)
    if chosen == "functional":
        factors_a, engine = _functional_factors(model, x, names, output, memory_budget_gb, chunk_size)
        n, c = engine.n, engine.c
        m = n
        if x2 is not None:
            factors_b, engine_b = _functional_factors(model, x2, names, output, memory_budget_gb, chunk_size)
            m = engine_b.n
            if engine_b.c != c:
                raise ValueError(f"`x` and `x2` give outputs with {c} and {engine_b.c} classes; they must agree.")
        method = engine.method or "vmap"
        used = list(engine.names)
    if report is not None:
        from jacspec.engine.parameters import parameter_record

        report.update({"implementation": chosen, "method": method, **parameter_record(model, used, reasons)})
        if "reason" in info:
            report["functional_because"] = info["reason"]
    return factors_a, factors_b, n, m, c


@with_math_attention
def layerwise_tangent_kernels(
    model: nn.Module,
    x: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    layers: Sequence[str] | None = None,
    output: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    on_unsupported: OnUnsupported = "raise",
    memory_budget_gb: float = 2.0,
    chunk_size: int | None = None,
    per_layer: bool = True,
    implementation: Implementation = "auto",
    report: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Layer-wise empirical tangent kernels ``K^ℓ = Φ_ℓ(x) Φ_ℓ(x2)ᵀ`` (Baratin 2021, section 4.3.3).

    Parameters
    ----------
    model : nn.Module
        Network with output ``(n, c)`` (or select it with ``output``). Examples must not interact
        (BatchNorm must be in eval mode).
    x : torch.Tensor
        Batch of ``n`` inputs, examples along the first dimension.
    x2 : torch.Tensor, optional
        Second batch of ``m`` inputs for the cross-kernel; ``None`` gives the symmetric kernel on ``x``.
    layers : sequence of str, optional
        Names (``named_modules()``) of the modules whose own parameters to include; default: every
        module owning a parameter with ``requires_grad``.
    output : callable, optional
        ``output(model, x) -> (n, c)`` tensor; default ``model(x)``.
    on_unsupported : {"raise", "warn", "ignore"}
        What to do with parameters whose tangent features cannot be computed (shared between modules,
        used outside their module's forward, or module outputs not batched along dim 0).
    memory_budget_gb : float
        Bound on the memory of the kernels and of each intermediate block; chunk sizes follow from it
        and a request whose kernels alone exceed it raises ``MemoryError`` before allocating.
    chunk_size : int, optional
        Examples per block (default: derived from ``memory_budget_gb``).
    per_layer : bool
        Return one kernel per layer (default) or only their sum under the key ``"total"``.
    implementation : {"auto", "structured", "functional"}
        Per-layer hooks, the exact ``torch.func`` fallback, or the first when it is known to be exact
        (see :mod:`jacspec.kernels` for when which).
    report : dict, optional
        Filled with ``implementation`` (the one that ran), ``method`` (``"hooks"``, or the functional
        engine's ``"vmap"``/``"loop"``/``"autograd"``), ``parameters_used`` (names) and
        ``parameters_skipped`` (``{name: reason}``, frozen parameters included).

    Returns
    -------
    dict of str to torch.Tensor
        ``{module name: K^ℓ}``, each ``(n·c, m·c)`` with rows and columns ordered sample-major
        (index ``i·c + a``), in the dtype of the network output; they sum to the full tangent kernel.

    Examples
    --------
    >>> import torch
    >>> from jacspec.kernels import layerwise_tangent_kernels
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> kernels = layerwise_tangent_kernels(model, torch.randn(5, 4))
    >>> {name: tuple(k.shape) for name, k in kernels.items()}
    {'0': (15, 15), '2': (15, 15)}
    """
    budget = _check_options(on_unsupported, memory_budget_gb)
    _check_implementation(implementation)
    names = parametrised_modules(model, layers)
    n = _n_examples(x)
    m = n if x2 is None else _n_examples(x2)
    factors_a, factors_b, n, m, c = _factors(
        model, x, x2, names, output, on_unsupported, implementation, memory_budget_gb, chunk_size, report
    )
    dtype, device = _output_dtype_device(factors_a, torch.get_default_dtype())
    _check_kernel_memory(n * c, m * c, (len(factors_a) if per_layer else 1), dtype, budget)
    kernels: dict[str, torch.Tensor] = {}
    total = None if per_layer else torch.zeros(n * c, m * c, dtype=dtype, device=device)
    for name, fa in factors_a.items():
        target = torch.zeros(n * c, m * c, dtype=dtype, device=device) if per_layer else total
        _gram(fa, None if factors_b is None else factors_b[name], target, budget, chunk_size)
        if per_layer:
            kernels[name] = target
    if not per_layer:
        kernels["total"] = total
    return kernels


def _output_dtype_device(factors: dict[str, _Factors], default: torch.dtype) -> tuple[torch.dtype, torch.device]:
    for fa in factors.values():
        if isinstance(fa, _OuterFactors):
            return fa.g.dtype, fa.g.device
        if isinstance(fa, _GenericFactors) and fa.grads and fa.grads[0]:
            return fa.grads[0][0].dtype, fa.grads[0][0].device
        if isinstance(fa, _FunctionalFactors):
            return fa.engine.dtype, fa.engine.device
        if isinstance(fa, _ColumnFactors) and fa.base.grads and fa.base.grads[0]:
            return fa.base.grads[0][0].dtype, fa.base.grads[0][0].device
    return default, torch.device("cpu")


def tangent_kernel(model: nn.Module, x: torch.Tensor, x2: torch.Tensor | None = None, **options: Any) -> torch.Tensor:
    """The empirical tangent kernel ``K = Φ(x) Φ(x2)ᵀ = Σ_ℓ K^ℓ``, shape ``(n·c, m·c)``, sample-major.

    Takes the options of :func:`layerwise_tangent_kernels` (except ``per_layer``).

    Examples
    --------
    >>> import torch
    >>> from jacspec.kernels import tangent_kernel
    >>> model = torch.nn.Linear(4, 3)
    >>> x = torch.randn(2, 4)
    >>> K = tangent_kernel(model, x)  # for f(x) = Wx + b: K[(i,a),(j,b)] = δ_ab (x_i·x_j + 1)
    >>> torch.allclose(K, torch.kron(x @ x.T + 1, torch.eye(3)), atol=1e-5)
    True
    """
    options.pop("per_layer", None)
    return layerwise_tangent_kernels(model, x, x2, per_layer=False, **options)["total"]


@with_math_attention
def tangent_kernel_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    *,
    layers: Sequence[str] | None = None,
    output: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    on_unsupported: OnUnsupported = "raise",
    memory_budget_gb: float = 2.0,
    chunk_size: int | None = None,
    implementation: Implementation = "auto",
    report: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """The diagonal ``K^ℓ[(i, a), (i, a)] = ‖∂f_a(x_i)/∂w_ℓ‖²`` of each layer-wise kernel, shape ``(n·c,)``.

    Takes the options of :func:`layerwise_tangent_kernels` (except ``x2`` and ``per_layer``). Costs
    about one kernel row per example: use it for traces (``Tr K = ‖Φ‖_F²``, the complexity
    measure of Baratin 2021, eq. 18) on batches whose full kernel would not fit.

    Examples
    --------
    >>> import torch
    >>> from jacspec.kernels import tangent_kernel_diagonal
    >>> model = torch.nn.Linear(4, 3)
    >>> diag = tangent_kernel_diagonal(model, torch.ones(2, 4))["(root)"]
    >>> diag.tolist()  # ‖x‖² + 1 = 5 for every (example, class)
    [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    """
    budget = _check_options(on_unsupported, memory_budget_gb)
    _check_implementation(implementation)
    names = parametrised_modules(model, layers)
    _n_examples(x)
    factors, _, n, _, c = _factors(
        model, x, None, names, output, on_unsupported, implementation, memory_budget_gb, chunk_size, report
    )
    dtype, device = _output_dtype_device(factors, torch.get_default_dtype())
    diagonals = {}
    for name, fa in factors.items():
        out = torch.zeros(n * c, dtype=dtype, device=device)
        _diagonal(fa, out, budget, chunk_size)
        diagonals[name] = out
    return diagonals


# --------------------------------------------------------------------------------------------------
# Statistics of a kernel (plain functions on tensors / arrays)
# --------------------------------------------------------------------------------------------------


def center_features(kernel: torch.Tensor, n: int, c: int, m: int | None = None) -> torch.Tensor:
    """Kernel of the centered tangent features ``Φ(x) − E_x Φ(x)`` (mean over examples, per class).

    For a sample-major ``(n·c) × (m·c)`` kernel this is ``(C_n ⊗ I_c) K (C_m ⊗ I_c)`` with
    ``C_n = I − 11ᵀ/n`` (Baratin 2021, section 4.3.1: results are reported for centered features).

    Examples
    --------
    >>> import torch
    >>> from jacspec.kernels import center_features
    >>> phi = torch.randn(4 * 2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # n=4, c=2
    >>> centered = center_features(phi @ phi.T, n=4, c=2)
    >>> bool(torch.allclose(centered.reshape(4, 2, 4, 2).sum(dim=0), torch.zeros(2, 4, 2, dtype=torch.float64)))
    True
    """
    m = n if m is None else m
    k4 = kernel.reshape(n, c, m, c)
    k4 = k4 - k4.mean(dim=0, keepdim=True)
    k4 = k4 - k4.mean(dim=2, keepdim=True)
    return k4.reshape(n * c, m * c)


def effective_rank(eigenvalues: np.ndarray) -> float:
    """``exp(H(μ))`` with ``μ_j = λ_j / Σ λ`` and ``H(μ) = −Σ μ_j log μ_j`` (Baratin 2021, eq. 5).

    Eigenvalues below zero (round-off of a positive semi-definite matrix) count as zero, and
    ``0 log 0 = 0``. Returns NaN for a zero kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.kernels import effective_rank
    >>> round(effective_rank(np.array([1.0, 1.0, 1.0, 0.0])), 6), round(effective_rank(np.array([5.0, 0.0])), 6)
    (3.0, 1.0)
    """
    lam = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    largest = lam.max() if lam.size else 0.0
    if not largest > 0 or not np.isfinite(largest):
        return float("nan")
    lam = lam / largest  # scale-free, and the sum cannot overflow near the float64 maximum
    mu = lam[lam > 0] / lam.sum()
    return float(np.exp(-(mu * np.log(mu)).sum()))


def trace_ratios(eigenvalues: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """``T_k = Σ_{j<k} λ_j / Σ_j λ_j``, the share of the trace in the top ``k`` eigenvalues (Baratin 2021, eq. 6).

    Eigenvalues below zero (round-off of a positive semi-definite matrix) count as zero, as in
    :func:`effective_rank`, so ``T_k`` is non-decreasing in ``k`` and at most 1; NaN for a zero kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.kernels import trace_ratios
    >>> trace_ratios(np.array([4.0, 3.0, 2.0, 1.0]), ks=[1, 2, 4])
    array([0.4, 0.7, 1. ])
    """
    lam = np.sort(np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None))[::-1]
    largest = lam[0] if lam.size else 0.0
    if not largest > 0 or not np.isfinite(largest):
        return np.full(len(ks), np.nan)
    cumulative = np.cumsum(lam / largest)
    return np.array([cumulative[k - 1] / cumulative[-1] for k in ks], dtype=np.float64)


def label_vector(y: torch.Tensor, c: int) -> torch.Tensor:
    """``Y ∈ R^{n·c}``: the one-hot labels of the ``n`` examples concatenated (sample-major).

    Examples
    --------
    >>> import torch
    >>> from jacspec.kernels import label_vector
    >>> label_vector(torch.tensor([2, 0]), c=3)
    tensor([0, 0, 1, 1, 0, 0])
    """
    return F.one_hot(y.long(), c).reshape(-1)


def centered_kernel_alignment(kernel: torch.Tensor, other: torch.Tensor) -> float:
    """``CKA(K, K') = Tr[K_c K'_c] / (‖K_c‖_F ‖K'_c‖_F)`` with ``K_c = C K C``, ``C = I − 11ᵀ/r`` (Baratin 2021, eq. 7).

    ``other`` is either an ``r × r`` kernel or a vector ``v`` standing for the rank-one kernel ``v vᵀ``
    (e.g. the label vector: ``CKA(K, Y Yᵀ)``), which is not formed; ``kernel`` is then taken to be
    symmetric. Computed in float64.

    Examples
    --------
    >>> import torch
    >>> from jacspec.kernels import centered_kernel_alignment
    >>> y = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    >>> round(centered_kernel_alignment(3.0 * torch.outer(y, y), torch.outer(y, y)), 12)
    1.0
    """
    if other.dim() == 1:
        # rank-one K' = v vᵀ: Tr[K_c K'_c] = v_cᵀ K v_c with v_c = C v, ‖K'_c‖_F = ‖v_c‖², and for a
        # symmetric K, ‖C K C‖_F² = ‖K‖_F² − (2/r)‖K 1‖² + (1ᵀ K 1)²/r²; no centered matrix is formed
        k = kernel.double()
        r = k.shape[0]
        v = other.double().to(k.device)
        v = v - v.mean()
        row_sums = k.sum(1)
        norm_sq = (k * k).sum() - 2.0 / r * (row_sums @ row_sums) + row_sums.sum() ** 2 / r**2
        return _ratio(v @ k @ v, norm_sq.clamp_min(0).sqrt() * (v @ v), "CKA")
    k = _centered(kernel.double())
    o = _centered(other.double().to(k.device))
    return _ratio((k * o).sum(), torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(o), "CKA")


def alignment(kernel: torch.Tensor, other: torch.Tensor) -> float:
    """Uncentered kernel alignment ``Tr[K K'] / (‖K‖_F ‖K'‖_F)`` (Baratin 2021, Fig. B.6); ``other`` as in CKA.

    Examples
    --------
    >>> import torch
    >>> from jacspec.kernels import alignment
    >>> kernel = torch.tensor([[2.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    >>> round(alignment(kernel, torch.eye(2, dtype=torch.float64)), 12)  # proportional kernels align perfectly
    1.0
    """
    k = kernel.double()
    if other.dim() == 1:
        v = other.double().to(k.device)
        return _ratio(v @ k @ v, torch.linalg.matrix_norm(k) * (v @ v), "alignment")
    o = other.double().to(k.device)
    return _ratio((k * o).sum(), torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(o), "alignment")


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor, what: str) -> float:
    """``numerator / denominator``, or NaN with a RuntimeWarning when the denominator is zero (never silently)."""
    numerator, denominator = float(numerator), float(denominator)
    if denominator > 0 and math.isfinite(denominator):
        return numerator / denominator
    warnings.warn(
        f"{what} is undefined here: a (centred) kernel is zero, e.g. a constant kernel or labels that are all "
        "the same class; NaN is returned. Measure on a batch with several classes.",
        RuntimeWarning,
        stacklevel=3,
    )
    return float("nan")


def _centered(kernel: torch.Tensor) -> torch.Tensor:
    return kernel - kernel.mean(0, keepdim=True) - kernel.mean(1, keepdim=True) + kernel.mean()
