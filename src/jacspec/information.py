"""Information in the weights: I(w;D) = −½ Σ log α_i for a multiplicative log-normal posterior.

Achille & Soatto 2018 (Achille & Soatto, *On the emergence of invariance and disentangling*), section 4: with an
improper log-uniform prior p(w_i) ∝ 1/|w_i| and the posterior w = ε ⊙ ŵ, ε_i ~ logN(−α_i/2, α_i)
(mean 1, variance e^{α_i} − 1), the information the weights hold about the training set is

    I(w;D) = −½ Σ_i log α_i + C                                            (Claim 1)

where the constant C is arbitrary because the prior is improper. Following the paper's Remark 4.3, every
value reported here is −½ Σ log α_i, i.e. C = 0; differences between models of the *same architecture*
(real vs random labels, two training steps) are meaningful, absolute values are not.

Two ways to obtain α, both for a posterior centred at the trained weights ŵ:

* :func:`laplace_log_alpha` — Proposition 5's optimum of the second-order IB Lagrangian
  L(α) = H_0 + Σ_i α_i ŵ_i² H_ii − (β/2) Σ_i log α_i, i.e. α_i = β / (2 ŵ_i² H_ii), with H_ii the
  diagonal of the Hessian of the **summed** loss over the given examples
  (:func:`hessian_diagonal`: ``"exact"``, ``"hutchinson"`` or ``"ggn"``);
* :func:`fit_variational_log_alpha` — minimise L(α) = E_ε[Σ_n loss_n(ε ⊙ ŵ)] + β·(−½ Σ log α) over
  log α with the reparametrisation trick (local reparametrisation for Linear/Conv layers).

Clipping
--------
log α is clipped to ``[-32, 2]`` by default (:data:`DEFAULT_LOG_ALPHA_RANGE`). Above: at log α = 2
(α ≈ 7.4) the posterior standard deviation of a weight is √(e^α − 1) ≈ 40 times the weight itself, so the
weight is pure noise; a weight with no curvature (H_ii ≤ 0, a dead unit, an input that is always zero,
ŵ_i = 0) would otherwise get α = ∞ and drive I(w;D) to −∞ (the log-uniform prior is improper), and the
variational fit would overflow (e^α − 1 is infinite in float64 beyond α ≈ 710, log α ≈ 6.6). Below: at
log α = −32, √α ≈ 1.1e−7 is the relative precision of a float32 number (2 log ε_float32 ≈ −31.8), a
precision the stored weights cannot have. The number of clipped values is always reported.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from jacspec.engine.attention import with_math_attention
from jacspec.engine.parameters import tied_parameters
from jacspec.engine.usage import parameter_readers

__all__ = [
    "DEFAULT_LOG_ALPHA_RANGE",
    "clip_log_alpha",
    "cross_entropy_sum",
    "fit_variational_log_alpha",
    "ggn_diagonal",
    "hessian_diagonal",
    "laplace_log_alpha",
    "lognormal_noise",
    "nuclear_norm_bound",
    "weight_information",
]

DEFAULT_LOG_ALPHA_RANGE: tuple[float, float] = (-32.0, 2.0)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOCAL_REPARAMETRIZATION_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def cross_entropy_sum(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The summed cross-entropy Σ_n −log softmax(output_n)[y_n] (the paper's H_{p,q}(y|x,w), section 4).

    Examples
    --------
    >>> import torch
    >>> from jacspec.information import cross_entropy_sum
    >>> round(float(cross_entropy_sum(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))), 4)  # 4 log 2
    2.7726
    """
    return F.cross_entropy(output, target, reduction="sum")


def weight_information(log_alpha: torch.Tensor) -> torch.Tensor:
    """I(w;D) = −½ Σ_i log α_i in nats (Achille & Soatto 2018, Claim 1 with C = 0, Remark 4.3).

    Examples
    --------
    >>> import torch
    >>> from jacspec.information import weight_information
    >>> float(weight_information(torch.tensor([-2.0, -4.0])))  # -½ Σ log α
    3.0
    """
    return -0.5 * log_alpha.sum()


def laplace_log_alpha(weights: torch.Tensor, hessian_diag: torch.Tensor, beta: float) -> torch.Tensor:
    """log α_i of Proposition 5's optimum, α_i = β / (2 ŵ_i² H_ii) (Achille & Soatto 2018, proof of Prop. 5).

    Parameters
    ----------
    weights : torch.Tensor
        The posterior means ŵ (any shape).
    hessian_diag : torch.Tensor
        H_ii, the diagonal of the Hessian of the summed loss, same shape.
    beta : float
        The Lagrange multiplier β > 0 of the IB Lagrangian L = H_{p,q} + β I(w;D).

    Returns
    -------
    torch.Tensor
        Unclipped log α, ``+inf`` where ŵ_i = 0 or H_ii ≤ 0 (no curvature: the weight can be made
        arbitrarily noisy at no cost to second order). Clip with :func:`clip_log_alpha`.

    Examples
    --------
    >>> import torch
    >>> from jacspec.information import laplace_log_alpha
    >>> laplace_log_alpha(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.5]), beta=1.0)  # log(β / (2 w² H))
    tensor([ 0.0000, -1.3863])
    """
    w2h = 2.0 * weights.detach() ** 2 * hessian_diag.detach()
    log_alpha = math.log(beta) - torch.log(w2h.clamp_min(torch.finfo(w2h.dtype).tiny))
    return torch.where(w2h > 0, log_alpha, torch.full_like(log_alpha, math.inf))


def clip_log_alpha(
    log_alpha: torch.Tensor, log_alpha_range: tuple[float, float] = DEFAULT_LOG_ALPHA_RANGE
) -> tuple[torch.Tensor, int]:
    """Clip log α to ``log_alpha_range`` (NaN counts as the upper bound); return it and the number at a bound.

    Examples
    --------
    >>> import torch
    >>> from jacspec.information import clip_log_alpha
    >>> clip_log_alpha(torch.tensor([-40.0, 0.0, 5.0, float("nan")]))
    (tensor([-32.,   0.,   2.,   2.]), 3)
    """
    low, high = log_alpha_range
    # at a bound counts too: the variational fit is projected onto the range at every step
    clipped = int(((log_alpha <= low) | (log_alpha >= high) | torch.isnan(log_alpha)).sum())
    log_alpha = torch.nan_to_num(log_alpha, nan=high, posinf=high, neginf=low)
    return log_alpha.clamp(low, high), clipped


def nuclear_norm_bound(weights_sq_norm: float, hessian_trace: float, n_weights: int, beta: float) -> float:
    """Upper bound of Proposition 5: I(w;D) ≤ ½ K [log ‖ŵ‖² + log ‖H‖_* − log(K² β / 2)].

    This is the bound as derived in the proof (Jensen's inequality on Σ log ŵ_i² and Σ log H_ii; the
    statement in the paper carries an extra factor K on the last term, a typo). ‖H‖_* = tr H at a minimum,
    where H is positive semi-definite; pass the trace (the sum of the Hessian diagonal). It bounds the
    *unclipped* Laplace value and is NaN when the trace is not positive.

    Examples
    --------
    >>> import math
    >>> from jacspec.information import nuclear_norm_bound
    >>> bound = nuclear_norm_bound(weights_sq_norm=4.0, hessian_trace=2.0, n_weights=2, beta=1.0)
    >>> math.isclose(bound, 0.5 * 2 * (math.log(4.0) + math.log(2.0) - math.log(2**2 * 1.0 / 2)))
    True
    """
    if hessian_trace <= 0 or weights_sq_norm <= 0:
        return math.nan
    k = n_weights
    return 0.5 * k * (math.log(weights_sq_norm) + math.log(hessian_trace) - math.log(k * k * beta / 2.0))


# --------------------------------------------------------------------------------------------------
# Hessian diagonals
# --------------------------------------------------------------------------------------------------


def _functional_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: LossFn,
    params: Mapping[str, torch.Tensor],
) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor]:
    """``f(sub) = loss(model with parameters params ∪ sub (x), y)``, by ``torch.func.functional_call``."""
    base = {name: p.detach() for name, p in params.items()}

    def f(sub: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return loss(torch.func.functional_call(model, {**base, **sub}, (x,), strict=False), y)

    return f


def _rademacher(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    bits = torch.randint(0, 2, shape, generator=generator, device=generator.device)
    return (2 * bits - 1).to(dtype=like.dtype, device=like.device)


@with_math_attention
def hessian_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: Mapping[str, torch.Tensor],
    loss: LossFn = cross_entropy_sum,
    method: Literal["exact", "hutchinson", "ggn"] = "exact",
    n_probes: int = 100,
    chunk_size: int = 64,
    generator: torch.Generator | None = None,
    progress: bool = False,
    fast_linear: bool = True,
    max_exact_parameters: int | None = None,
) -> dict[str, torch.Tensor]:
    """Diagonal of the Hessian of ``loss(model(x), y)`` with respect to ``params``.

    Parameters
    ----------
    model : nn.Module
        The network; its other parameters and buffers are held fixed.
    x, y : torch.Tensor
        Inputs and targets; ``loss(model(x), y)`` must be the **summed** loss over the examples.
    params : mapping
        ``{full parameter name: tensor}`` (from ``model.named_parameters()``) to differentiate.
    loss : callable
        ``loss(output, target) -> scalar``; default: summed cross-entropy.
    method : {"exact", "hutchinson", "ggn"}
        ``"exact"``: H_ii = e_iᵀ H e_i for every i, Hessian-vector products (forward-over-reverse
        ``torch.func``) with one-hot vectors, vectorised over ``chunk_size`` vectors at a time, one
        diagonal block per parameter tensor (cost: P Hessian-vector products).
        ``"hutchinson"``: diag H = E[z ⊙ Hz] over Rademacher z (Bekas et al., 2007), the mean over
        ``n_probes`` seeded probes (unbiased; entries may come out negative).
        ``"ggn"``: the diagonal of the generalised Gauss–Newton matrix G = Σ_n J_nᵀ (∂²ℓ_n/∂f²) J_n
        (non-negative for a convex loss), from per-example vector–Jacobian products with the columns of
        a square root of each example's output Hessian; needs a loss that sums per-example terms.
    n_probes : int
        Number of Rademacher probes for ``"hutchinson"``.
    chunk_size : int
        Vectors (``"exact"``, ``"hutchinson"``) or examples (``"ggn"``) processed together by ``vmap``.
    generator : torch.Generator, optional
        Source of the Rademacher probes (on the device of the parameters).
    progress : bool
        Show a tqdm progress bar.
    fast_linear : bool
        Use the layer-wise forms for ``nn.Linear`` modules called once on a 2-D input (``"exact"`` and
        ``"ggn"``). For ``"exact"``: with z = W a + b the layer's output and a_n its input,
        ∂²L/∂W_oi² = Σ_n (∂²ℓ_n/∂z_no²) a_ni² and ∂²L/∂b_o² = Σ_n ∂²ℓ_n/∂z_no², exactly, because z is linear in
        (W, b) and a does not depend on them; the diagonal of each example's Hessian with respect to z costs
        ``out`` Hessian-vector products for all examples at once (an example's loss depends only on its own
        z_n: true in eval mode, not for BatchNorm in train mode). The other parameters use the one-hot
        products above.
    max_exact_parameters : int, optional
        For ``"exact"``: refuse (ValueError, before any Hessian-vector product) when more than this many
        parameters are left to the one-hot products.

    Returns
    -------
    dict
        ``{name: tensor of the parameter's shape}``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.information import hessian_diagonal
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
    >>> params = dict(model.named_parameters())
    >>> diag = hessian_diagonal(model, x, y, params)
    >>> sorted(diag), diag["0.weight"].shape
    (['0.bias', '0.weight', '2.bias', '2.weight'], torch.Size([4, 3]))
    """
    if method == "ggn":
        return ggn_diagonal(model, x, y, params, loss=loss, chunk_size=chunk_size, progress=progress)
    from tqdm.auto import tqdm

    all_params = dict(model.named_parameters())
    f = _functional_loss(model, x, y, loss, all_params)
    names = list(params)
    if method == "exact":
        diagonal: dict[str, torch.Tensor] = {}
        if fast_linear:
            diagonal.update(_linear_exact_hessian_diagonal(model, x, y, loss, names, chunk_size))
        names = [name for name in names if name not in diagonal]
        total = sum(params[name].numel() for name in names)
        if max_exact_parameters is not None and total > max_exact_parameters:
            raise ValueError(
                f"`hessian='exact'` needs one Hessian-vector product per parameter outside nn.Linear layers and "
                f"is limited to max_exact_parameters={max_exact_parameters}, but {total} such parameters are to be "
                f"measured ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}). Use hessian='hutchinson' or "
                "hessian='ggn' (or raise max_exact_parameters)."
            )
        bar = tqdm(total=total, desc="Hessian diagonal", disable=not progress, leave=False)
        for name in names:
            w = params[name].detach()

            def grad_k(wk: torch.Tensor, name: str = name) -> torch.Tensor:
                return torch.func.grad(lambda v: f({name: v}))(wk)

            def hvp(v: torch.Tensor, w: torch.Tensor = w, grad_k=grad_k) -> torch.Tensor:
                return torch.func.jvp(grad_k, (w,), (v,))[1]

            flat = torch.empty(w.numel(), dtype=w.dtype, device=w.device)
            for start in range(0, w.numel(), chunk_size):
                stop = min(start + chunk_size, w.numel())
                index = torch.arange(start, stop, device=w.device)
                basis = torch.zeros(stop - start, w.numel(), dtype=w.dtype, device=w.device)
                basis[torch.arange(stop - start), index] = 1.0
                columns = torch.func.vmap(hvp)(basis.reshape(stop - start, *w.shape))
                flat[start:stop] = columns.reshape(stop - start, -1)[torch.arange(stop - start), index]
                bar.update(stop - start)
            diagonal[name] = flat.reshape(w.shape)
        bar.close()
        return {name: diagonal[name] for name in params}
    if method == "hutchinson":
        if generator is None:
            generator = torch.Generator(device=next(iter(params.values())).device).manual_seed(0)
        primals = {name: params[name].detach() for name in names}
        grad_all = torch.func.grad(f)

        def hvp_all(vectors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return torch.func.jvp(grad_all, (primals,), (vectors,))[1]

        sums = {name: torch.zeros_like(w) for name, w in primals.items()}
        bar = tqdm(total=n_probes, desc="Hutchinson probes", disable=not progress, leave=False)
        for start in range(0, n_probes, chunk_size):
            m = min(chunk_size, n_probes - start)
            probes = {name: _rademacher((m, *w.shape), generator, w) for name, w in primals.items()}
            products = torch.func.vmap(hvp_all)(probes)
            for name in names:
                sums[name] += (probes[name] * products[name]).sum(0)
            bar.update(m)
        bar.close()
        return {name: s / n_probes for name, s in sums.items()}
    raise ValueError(f"`method` must be one of 'exact', 'hutchinson' or 'ggn', but got {method!r}.")


def _output_hessian_sqrt(output: torch.Tensor, y: torch.Tensor, loss: LossFn) -> torch.Tensor:
    """Per-example square roots S_n (c × c) with S_n S_nᵀ = ∂²ℓ(f_n, y_n)/∂f_n² (negative eigenvalues → 0)."""
    flat = output.reshape(output.shape[0], -1)

    def loss_one(f_n: torch.Tensor, y_n: torch.Tensor) -> torch.Tensor:
        return loss(f_n.reshape(1, *output.shape[1:]), y_n.unsqueeze(0))

    hess = torch.func.vmap(torch.func.hessian(loss_one))(flat, y)
    hess = 0.5 * (hess + hess.transpose(1, 2))
    eigenvalues, eigenvectors = torch.linalg.eigh(hess)
    return eigenvectors * eigenvalues.clamp_min(0).sqrt().unsqueeze(1)


@with_math_attention
def ggn_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: Mapping[str, torch.Tensor],
    loss: LossFn = cross_entropy_sum,
    chunk_size: int = 64,
    progress: bool = False,
    fast_linear: bool = True,
) -> dict[str, torch.Tensor]:
    """Diagonal of the generalised Gauss–Newton matrix G = Σ_n J_nᵀ Λ_n J_n of a summed loss.

    Λ_n = ∂²ℓ(f_n, y_n)/∂f_n² is the Hessian of example n's loss with respect to the network output f_n
    (for softmax cross-entropy diag(p) − ppᵀ); with Λ_n = S_n S_nᵀ, diag G = Σ_n Σ_k (J_nᵀ S_n[:, k])²,
    i.e. the squares of c per-example vector–Jacobian products. G equals the Hessian for a model that is
    linear in its parameters, and is positive semi-definite for a convex loss. For a network whose
    nonlinearities are piecewise linear (ReLU, max-pooling) the Hessian diagonal equals the GGN diagonal
    almost everywhere (the residual term ∂²f/∂w_i² vanishes), so this is the exact Hessian diagonal there.

    With ``fast_linear`` (default), the weight and bias of every ``nn.Linear`` module that is called once
    on a 2-D input use the layer-wise form (as BackPACK's DiagGGN): with a_n the layer input and g_nk the
    backpropagated S_n[:, k] at the layer output, diag G_W = Σ_{n,k} g_nk² (a_n²)ᵀ and diag G_b = Σ_{n,k}
    g_nk², from one batched backward pass; the other parameters use per-example ``torch.func.vmap``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.information import ggn_diagonal
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
    >>> diag = ggn_diagonal(model, x, y, dict(model.named_parameters()))
    >>> bool(all((d >= 0).all() for d in diag.values()))  # a Gauss–Newton diagonal is non-negative
    True
    """
    from tqdm.auto import tqdm

    all_params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    diagonal = {name: torch.zeros_like(params[name]) for name in params}
    with torch.no_grad():
        output = torch.func.functional_call(model, ({**all_params}, buffers), (x,))
    sqrt_hessian = _output_hessian_sqrt(output.detach(), y, loss)  # (n, c, c)
    covered = _linear_ggn_diagonal(model, x, sqrt_hessian, list(params)) if fast_linear else {}
    diagonal.update(covered)
    names = [name for name in params if name not in covered]  # left to the per-example path
    if not names:
        return diagonal

    def output_one(sub: dict[str, torch.Tensor], x_n: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, ({**all_params, **sub}, buffers), (x_n.unsqueeze(0),), strict=False)
        return out.reshape(-1)

    def squared_vjps(x_n: torch.Tensor, s_n: torch.Tensor) -> dict[str, torch.Tensor]:
        sub = {name: all_params[name] for name in names}
        _, vjp_fn = torch.func.vjp(lambda p: output_one(p, x_n), sub)
        columns = torch.func.vmap(vjp_fn)(s_n.T)[0]  # each: (c, *shape)
        return {name: (col**2).sum(0) for name, col in columns.items()}

    def squared_vjps_looped(x_n: torch.Tensor, s_n: torch.Tensor) -> dict[str, torch.Tensor]:
        # for modules without vmap batching rules (nn.LSTM/GRU): one vector-Jacobian product per column
        sub = {name: all_params[name] for name in names}
        _, vjp_fn = torch.func.vjp(lambda p: output_one(p, x_n), sub)
        total = {name: torch.zeros_like(all_params[name]) for name in names}
        for k in range(s_n.shape[1]):
            (column,) = vjp_fn(s_n[:, k])
            for name in names:
                total[name] += column[name] ** 2
        return total

    n = x.shape[0]
    bar = tqdm(total=n, desc="GGN diagonal", disable=not progress, leave=False)
    batched = True
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        if batched:
            try:
                parts = torch.func.vmap(squared_vjps)(x[start:stop], sqrt_hessian[start:stop])
                for name in names:
                    diagonal[name] += parts[name].sum(0)
                bar.update(stop - start)
                continue
            except (RuntimeError, NotImplementedError):
                if start > 0:
                    raise
                batched = False
        for i in range(start, stop):
            part = squared_vjps_looped(x[i], sqrt_hessian[i])
            for name in names:
                diagonal[name] += part[name]
        bar.update(stop - start)
    bar.close()
    return diagonal


def _linear_candidates(
    model: nn.Module, names: list[str], x: torch.Tensor | None = None
) -> dict[str, tuple[nn.Module, list[str]]]:
    """``{module name: (module, [weight name, bias name])}`` for nn.Linear modules whose parameters are all wanted.

    The layer-wise forms see a parameter only through its module's output, so a Linear whose weight or
    bias is tied to another module, or read by another module's forward (a parent reading
    ``child.weight``), is left to the generic path, which differentiates the total loss with respect to
    the Parameter object (every use counted).
    """
    wanted = set(names)
    tied = {name for group in tied_parameters(model).values() for name in group}
    readers = parameter_readers(model, x) if x is not None else {}
    candidates = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            prefix = f"{module_name}." if module_name else ""
            owned = [prefix + "weight"] + ([prefix + "bias"] if module.bias is not None else [])
            label = module_name or "(root)"
            if any(name in tied or readers.get(name, {label}) - {label} for name in owned):
                continue
            if all(name in wanted for name in owned):
                candidates[module_name] = (module, owned)
    return candidates


def _linear_exact_hessian_diagonal(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: LossFn, names: list[str], chunk_size: int
) -> dict[str, torch.Tensor]:
    """Exact Hessian diagonal of the ``nn.Linear`` modules called once on a 2-D input (see hessian_diagonal)."""
    candidates = _linear_candidates(model, names, x)
    if not candidates:
        return {}
    records: dict[str, list] = {name: [] for name in candidates}

    def shifter(module_name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            shift = torch.zeros_like(output, requires_grad=True)  # z + δ at δ = 0: derivatives w.r.t. z
            records[module_name].append((inputs[0].detach(), shift))
            return output + shift

        return hook

    fixed = {name: p.detach() for name, p in model.named_parameters()}
    handles = [module.register_forward_hook(shifter(name)) for name, (module, _) in candidates.items()]
    try:
        with torch.enable_grad():
            total = loss(torch.func.functional_call(model, fixed, (x,), strict=False), y)
    finally:
        for handle in handles:
            handle.remove()
    usable = {name: rec[0] for name, rec in records.items() if len(rec) == 1 and rec[0][0].dim() == 2}
    if not usable:
        return {}
    shifts = [usable[name][1] for name in usable]
    with torch.enable_grad():
        grads = torch.autograd.grad(total, shifts, create_graph=True, allow_unused=True)
    result: dict[str, torch.Tensor] = {}
    for name, g in zip(usable, grads):
        activation, shift = usable[name]
        n, out = shift.shape
        curvature = torch.zeros_like(shift)  # (n, out): ∂²ℓ_n/∂z_no²
        if g is not None and g.requires_grad:
            for start in range(0, out, chunk_size):
                m = min(chunk_size, out - start)
                basis = torch.zeros(m, n, out, dtype=shift.dtype, device=shift.device)
                basis[torch.arange(m), :, torch.arange(start, start + m)] = 1.0
                (columns,) = torch.autograd.grad(
                    g, shift, grad_outputs=basis, is_grads_batched=True, retain_graph=True, allow_unused=True
                )
                if columns is not None:  # columns[j, n, start + j] = ∂²ℓ_n/∂z_n,start+j²
                    curvature[:, start : start + m] = columns[torch.arange(m), :, torch.arange(start, start + m)].T
        _, owned = candidates[name]
        result[owned[0]] = curvature.detach().T @ activation**2
        if len(owned) == 2:
            result[owned[1]] = curvature.detach().sum(0)
    return result


def _linear_ggn_diagonal(
    model: nn.Module, x: torch.Tensor, sqrt_hessian: torch.Tensor, names: list[str]
) -> dict[str, torch.Tensor]:
    """Layer-wise GGN diagonal of the ``nn.Linear`` modules called once on a 2-D input (see ggn_diagonal)."""
    candidates = _linear_candidates(model, names, x)
    if not candidates:
        return {}
    records: dict[str, list] = {name: [] for name in candidates}

    def recorder(module_name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            records[module_name].append((inputs[0].detach(), output))

        return hook

    leaves = {name: p.detach().requires_grad_(True) for name, p in model.named_parameters()}
    handles = [module.register_forward_hook(recorder(name)) for name, (module, _) in candidates.items()]
    try:
        with torch.enable_grad():
            output = torch.func.functional_call(model, leaves, (x,), strict=False)
    finally:
        for handle in handles:
            handle.remove()
    usable = {
        name: records[name][0]
        for name in candidates
        if len(records[name]) == 1 and records[name][0][0].dim() == 2 and records[name][0][1].requires_grad
    }
    if not usable:
        return {}
    flat = output.reshape(output.shape[0], -1)
    grad_outputs = sqrt_hessian.permute(2, 0, 1)  # (k, n, c): column k of every S_n
    outputs_at_layers = [usable[name][1] for name in usable]
    grads = torch.autograd.grad(flat, outputs_at_layers, grad_outputs=grad_outputs, is_grads_batched=True)
    result: dict[str, torch.Tensor] = {}
    for name, g in zip(usable, grads):
        activation = usable[name][0]
        _, owned = candidates[name]
        g2 = g.detach() ** 2  # (k, n, out)
        result[owned[0]] = torch.einsum("kno,ni->oi", g2, activation**2)
        if len(owned) == 2:
            result[owned[1]] = g2.sum((0, 1))
    return result


# --------------------------------------------------------------------------------------------------
# Variational fit
# --------------------------------------------------------------------------------------------------


def lognormal_noise(log_alpha: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """ε = exp(−α/2 + √α ξ), ξ ~ N(0, 1): a reparametrised sample of logN(−α/2, α) (mean 1).

    Examples
    --------
    >>> import torch
    >>> from jacspec.information import lognormal_noise
    >>> eps = lognormal_noise(torch.full((200_000,), 0.5), torch.Generator().manual_seed(0))
    >>> round(float(eps.mean()), 2)  # mean 1 for every α
    1.0
    """
    alpha = log_alpha.exp()
    xi = torch.randn(log_alpha.shape, generator=generator, dtype=log_alpha.dtype, device=log_alpha.device)
    return torch.exp(-0.5 * alpha + alpha.sqrt() * xi)


def _local_reparametrization_hook(module: nn.Module, log_alphas: dict[str, torch.Tensor], generator):
    """Forward hook: add N(0, Var) noise to a Linear/Conv output, Var = (x²) ∗ (ŵ² (e^α − 1)).

    The pre-activation b = Σ_i x_i ε_i ŵ_i has mean Σ_i x_i ŵ_i (E ε = 1), the module's own output, and
    variance Σ_i x_i² ŵ_i² (e^{α_i} − 1); local reparametrisation (Kingma et al., 2015) samples b from
    the Gaussian with these two moments, one draw per example and unit: exact in mean and variance.
    """

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        inp = inputs[0]
        var_w = mod.weight**2 * torch.expm1(log_alphas["weight"].exp())
        var_b = None
        if mod.bias is not None and "bias" in log_alphas:
            var_b = mod.bias**2 * torch.expm1(log_alphas["bias"].exp())
        if isinstance(mod, nn.Linear):
            var = F.linear(inp**2, var_w, var_b)
        else:
            var = mod._conv_forward(inp**2, var_w, var_b)
        xi = torch.randn(output.shape, generator=generator, dtype=output.dtype, device=output.device)
        return output + var.clamp_min(torch.finfo(var.dtype).tiny).sqrt() * xi

    return module.register_forward_hook(hook)


def fit_variational_log_alpha(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: Mapping[str, torch.Tensor],
    beta: float,
    loss: LossFn = cross_entropy_sum,
    n_steps: int = 300,
    n_samples: int = 1,
    lr: float = 0.05,
    init_log_alpha: float | Mapping[str, torch.Tensor] = -6.0,
    log_alpha_range: tuple[float, float] = DEFAULT_LOG_ALPHA_RANGE,
    local_reparametrization: bool = True,
    n_eval_samples: int = 16,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> dict:
    """Fit log α by minimising the IB Lagrangian with ŵ fixed (Achille & Soatto 2018, eq. (3) and Claim 1).

    L(α) = E_ε[Σ_n loss(f_{ε⊙ŵ}(x_n), y_n)] − (β/2) Σ_i log α_i, with ε_i = exp(−α_i/2 + √α_i ξ_i),
    minimised over s = log α by Adam with a learning rate decaying linearly to 0, ``n_samples`` draws per
    step, projected onto ``log_alpha_range`` after each step. Runs on a deep copy of ``model`` whose
    parameters are frozen: the model itself is never touched.

    Parameters
    ----------
    model : nn.Module
        The network at ŵ (in the mode to evaluate it in).
    x, y : torch.Tensor
        Inputs and targets.
    params : mapping
        ``{full parameter name: tensor}`` whose α are fitted; the other parameters stay at ŵ.
    beta : float
        β > 0.
    loss : callable
        ``loss(output, target) -> scalar``, the summed loss; default summed cross-entropy.
    n_steps, n_samples, lr : int, int, float
        Optimisation steps, Monte-Carlo draws of ε per step, Adam's initial learning rate.
    init_log_alpha : float or mapping
        Starting log α (one value, or a tensor per parameter name, e.g. the Laplace values).
    log_alpha_range : (float, float)
        Bounds of log α (see the module notes).
    local_reparametrization : bool
        Sample the outputs of ``nn.Linear``/``nn.Conv{1,2,3}d`` layers (both weight and bias fitted, or the
        weight with a fixed bias) from their Gaussian moment match instead of sampling their weights:
        lower-variance gradients, the same expected loss to second order (exact for a squared error).
    n_eval_samples : int
        Draws used to report the final expected loss.
    generator : torch.Generator, optional
        Source of the noise.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        ``log_alpha`` ({name: tensor}, clipped), ``expected_loss``, ``information`` (−½ Σ log α),
        ``lagrangian`` (expected_loss + β·information), ``history`` (the Lagrangian estimate per step),
        ``n_skipped_steps`` (steps skipped because the sampled Lagrangian was not finite).

    Examples
    --------
    >>> import torch
    >>> from jacspec.information import fit_variational_log_alpha
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    >>> result = fit_variational_log_alpha(model, x, y, dict(model.named_parameters()), beta=1e-3, n_steps=20)
    """
    from tqdm.auto import tqdm

    low, high = log_alpha_range
    frozen = copy.deepcopy(model)
    for p in frozen.parameters():
        p.requires_grad_(False)
    frozen_params = dict(frozen.named_parameters())
    names = list(params)
    log_alpha: dict[str, torch.Tensor] = {}
    for name in names:
        w = frozen_params[name]
        if isinstance(init_log_alpha, Mapping):
            start = init_log_alpha[name].detach().to(dtype=w.dtype, device=w.device).clamp(low, high).clone()
        else:
            start = torch.full_like(w, float(init_log_alpha)).clamp(low, high)
        log_alpha[name] = start.requires_grad_(True)

    local: dict[str, dict[str, torch.Tensor]] = {}  # module name -> {"weight": s, "bias": s}
    if local_reparametrization:
        # a tied parameter, or one read by another module's forward, must carry the same ε at every use:
        # it is sampled as a whole (functional_call) rather than locally at one module's output
        tied = {name for group in tied_parameters(frozen).values() for name in group}
        readers = parameter_readers(frozen, x)
        for module_name, module in frozen.named_modules():
            if not isinstance(module, LOCAL_REPARAMETRIZATION_MODULES):
                continue
            prefix = f"{module_name}." if module_name else ""
            wname, bname = prefix + "weight", prefix + "bias"
            if wname not in log_alpha:
                continue
            label = module_name or "(root)"
            if any(k in tied or readers.get(k, {label}) - {label} for k in (wname, bname)):
                continue
            # a bias that is fitted must be sampled with the weight (it belongs to the same output)
            entry = {"weight": log_alpha[wname]}
            if module.bias is not None and bname in log_alpha:
                entry["bias"] = log_alpha[bname]
            local[module_name] = entry
    locally_sampled = {(f"{m}." if m else "") + key for m, entry in local.items() for key in entry}
    sampled = [name for name in names if name not in locally_sampled]
    modules = dict(frozen.named_modules())
    handles = []
    try:
        for module_name, entry in local.items():
            handles.append(_local_reparametrization_hook(modules[module_name], entry, generator))

        def sample_loss() -> torch.Tensor:
            noisy = {name: frozen_params[name] * lognormal_noise(log_alpha[name], generator) for name in sampled}
            output = torch.func.functional_call(frozen, noisy, (x,), strict=False) if noisy else frozen(x)
            return loss(output, y)

        optimizer = torch.optim.Adam(list(log_alpha.values()), lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / n_steps))
        history = []
        n_skipped = 0
        for _ in tqdm(range(n_steps), desc="variational log α", disable=not progress, leave=False):
            optimizer.zero_grad(set_to_none=True)
            expected = sum(sample_loss() for _ in range(n_samples)) / n_samples
            information = -0.5 * sum(s.sum() for s in log_alpha.values())
            lagrangian = expected + beta * information
            if torch.isfinite(lagrangian):
                lagrangian.backward()
                optimizer.step()
            else:  # a draw overflowed: skip the step (counted in the result)
                n_skipped += 1
            schedule.step()
            with torch.no_grad():
                for s in log_alpha.values():
                    s.clamp_(low, high)
            history.append(float(lagrangian.detach()))
        with torch.no_grad():
            expected = float(sum(sample_loss() for _ in range(n_eval_samples)) / n_eval_samples)
    finally:
        for handle in handles:
            handle.remove()
    result_log_alpha = {name: s.detach() for name, s in log_alpha.items()}
    information = float(-0.5 * sum(s.sum() for s in result_log_alpha.values()))
    return {
        "log_alpha": result_log_alpha,
        "expected_loss": expected,
        "information": information,
        "lagrangian": expected + beta * information,
        "history": history,
        "n_skipped_steps": n_skipped,
    }
