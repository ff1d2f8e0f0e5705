"""Singular values of the point Jacobian ∂f(x)/∂x at every example (Brandão et al. 2023, 4.2–4.4 and 8.5).

For a model ``f: R^d → R^c`` (inputs flattened, ``d`` = number of input features) and an example
``x_k``, the point Jacobian is ``J_k = ∇f|_{x_k} ∈ R^{c×d}`` (Brandão et al. 2023, 4.2, l.140–150). Its singular
values ``σ_1 ≥ … ≥ σ_min(c,d)`` describe how much the output moves along each input direction; the
paper's model–data complexity measure is ``E[log σ]`` over examples and components (4.3, eq. 5).

The paper (8.5, l.416) computes one ``torch.autograd.functional.jacobian`` per example and
``torch.linalg.svdvals`` on each. Here:

* the Jacobians of a whole chunk of examples come from ``c`` backward passes through the batch, one per
  output unit (examples are independent in eval mode, so ``∂(Σ_k f_a(x_k))/∂x_k = ∂f_a(x_k)/∂x_k``), or
  from ``torch.func.vmap(jacrev)`` (``method="vmap"``). (Vectorising the ``c`` backward passes with
  ``is_grads_batched=True`` measured no faster on an MLP and slower on a CNN, so it is not used);
* when ``c ≪ d`` the singular values come from the eigen-decomposition of the small ``c×c`` Gram
  matrix ``J Jᵀ`` in float64 (exactly the squared singular values in exact arithmetic), refined as
  ``σ_i = ‖Jᵀ u_i‖`` with ``u_i`` the eigenvectors, which keeps small singular values accurate;
* examples are processed in chunks so memory stays bounded for large ``n``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from torch import nn

from jacspec.engine.attention import math_attention
from jacspec.memory import budget_argument, check_memory, forward_bytes_per_example, parse_memory
from jacspec.probes.base import Probe

__all__ = [
    "PointJacobian",
    "input_jacobians",
    "jacobian_singular_values",
    "per_example_singular_values",
    "point_jacobian_singular_values",
]

OutputFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
JacobianMethod = Literal["auto", "batched", "vmap", "loop"]
SpectrumMethod = Literal["auto", "gram", "svd"]


def _forward(model: nn.Module, x: torch.Tensor, output: OutputFn | None) -> torch.Tensor:
    out = model(x) if output is None else output(model, x)
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            "The model output (or `output(model, x)`) must be a torch.Tensor of shape (n, c), but got "
            f"{type(out).__name__}. Pass `output=` a callable returning that tensor."
        )
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            "The model output (or `output(model, x)`) must be 2-D with one row per example, shape "
            f"(n={x.shape[0]}, c), but got shape {tuple(out.shape)}. Select a 2-D output with `output=`, "
            "e.g. output=lambda model, x: model(x).flatten(1)."
        )
    if not out.is_floating_point():
        raise TypeError(f"The model output must be floating point to be differentiated, but got dtype {out.dtype}.")
    return out


def _check_float_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`x` must be a torch.Tensor with examples along the first dimension, but got {type(x)}.")
    if not x.is_floating_point():
        raise TypeError(
            f"`x` must be floating point: no Jacobian exists with respect to an input of dtype {x.dtype} "
            "(integer or boolean inputs such as token ids are not differentiable). Pass a float tensor, or "
            "differentiate with respect to a float representation (e.g. embeddings) via `output=`."
        )


def input_jacobians(
    model: nn.Module,
    x: torch.Tensor,
    output: OutputFn | None = None,
    method: Literal["batched", "vmap", "loop"] = "batched",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example Jacobians of the (2-D) model output with respect to the flattened input.

    Parameters
    ----------
    model : nn.Module
        The network; examples must not interact (eval mode: BatchNorm on running statistics).
    x : torch.Tensor
        Floating-point inputs, shape ``(n, *input_shape)``.
    output : callable, optional
        ``output(model, x) -> (n, c)`` tensor to differentiate instead of ``model(x)``.
    method : {"batched", "vmap", "loop"}
        ``"batched"``: one backward pass per output unit through the whole batch;
        ``"vmap"``: ``torch.func.vmap(torch.func.jacrev(...))`` over examples;
        ``"loop"``: ``torch.autograd.functional.jacobian`` per example (Brandão et al. 2023, 8.5; slow reference).

    Returns
    -------
    jacobians : torch.Tensor
        Shape ``(n, c, d)`` with ``d = prod(input_shape)``, dtype of ``x``.
    outputs : torch.Tensor
        The output ``(n, c)`` at ``x`` (detached).

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.point_jacobian import input_jacobians
    >>> model = torch.nn.Linear(3, 2, bias=False)
    >>> jacobians, outputs = input_jacobians(model, torch.randn(4, 3))
    >>> jacobians.shape, bool(torch.allclose(jacobians[0], model.weight))
    (torch.Size([4, 2, 3]), True)
    """
    _check_float_input(x)
    n = x.shape[0]
    d = int(np.prod(x.shape[1:])) if x.dim() > 1 else 1
    if method == "batched":
        from jacspec.kernels import _output_gradients

        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            out = _forward(model, xg, output)
            c = out.shape[1]
            # the c backward passes through the whole chunk, batched (one per output unit where an operation
            # has no batching rule); each example's rows are its own Jacobian (examples do not interact)
            (grad,) = _output_gradients(out, [xg])  # (c, n, *input_shape)
            jac = grad.movedim(0, 1).reshape(n, c, d)
        return jac, out.detach()
    if method == "vmap":
        from torch.func import jacrev, vmap

        def single(xi: torch.Tensor) -> torch.Tensor:
            return _forward(model, xi.unsqueeze(0), output)[0]

        with torch.enable_grad(), math_attention():  # fused attention kernels have no batching rule
            jac = vmap(jacrev(single))(x.detach())
        with torch.no_grad():
            out = _forward(model, x.detach(), output)
        return jac.reshape(n, out.shape[1], d), out
    if method == "loop":
        with torch.no_grad():
            out = _forward(model, x.detach(), output)
        jacs = []
        for k in range(n):
            jac_k = torch.autograd.functional.jacobian(
                lambda xi: _forward(model, xi.unsqueeze(0), output)[0], x[k].detach()
            )
            jacs.append(jac_k.reshape(out.shape[1], d))
        return torch.stack(jacs), out
    raise ValueError(f"`method` must be one of 'batched', 'vmap' or 'loop', but got {method!r}.")


def jacobian_singular_values(jacobians: torch.Tensor, method: SpectrumMethod = "auto") -> torch.Tensor:
    """Singular values of a batch of matrices, descending, in float64.

    Parameters
    ----------
    jacobians : torch.Tensor
        Shape ``(n, c, d)``.
    method : {"auto", "gram", "svd"}
        ``"gram"``: the smaller Gram matrix ``G = J Jᵀ`` (or ``JᵀJ`` when ``d < c``) in float64; for
        float64 Jacobians ``σ_i = ‖Jᵀ u_i‖`` with ``u_i`` the eigenvectors of ``G`` (equal to
        ``sqrt(λ_i(G))`` in exact arithmetic, and accurate for small σ), for float32 Jacobians
        ``sqrt(λ_i(G))`` from ``eigvalsh`` (products of float32 numbers are exact in float64, so this is
        as accurate as the float32 data); ``"svd"``: ``torch.linalg.svdvals`` in float64; ``"auto"``: ``"gram"``
        when ``max(c, d) ≥ 4·min(c, d)``, else ``"svd"``.

    Returns
    -------
    torch.Tensor
        Shape ``(n, min(c, d))``, float64, descending along the last axis. A matrix with a NaN or inf
        entry gets NaN singular values.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.point_jacobian import jacobian_singular_values
    >>> jacobian_singular_values(torch.diag(torch.tensor([1.0, 3.0]))[None])
    tensor([[3., 1.]], dtype=torch.float64)
    """
    if jacobians.dim() != 3:
        raise ValueError(f"`jacobians` must have shape (n, c, d), but got shape {tuple(jacobians.shape)}.")
    if method not in ("auto", "gram", "svd"):
        raise ValueError(f"`method` must be one of 'auto', 'gram' or 'svd', but got {method!r}.")
    n, c, d = jacobians.shape
    k = min(c, d)
    # float32 (or lower) Jacobians: their products are exact in float64, so sqrt(eigvalsh(G)) is already
    # as accurate as the data; float64 Jacobians get the ‖Jᵀ u_i‖ refinement for small σ
    refine = jacobians.dtype == torch.float64
    jac = jacobians.detach().to(torch.float64)
    # a NaN or inf entry makes the example's float64 sum non-finite: a cheap screen, confirmed entry by
    # entry only for the flagged examples (a huge but finite float64 Jacobian can overflow its sum)
    finite = torch.isfinite(jac.sum(dim=(1, 2)))
    if not bool(finite.all()):
        flagged = torch.nonzero(~finite).flatten()
        finite[flagged] = torch.isfinite(jac[flagged]).flatten(1).all(dim=1)
    if not bool(finite.all()):
        jac = torch.where(finite[:, None, None], jac, torch.zeros((), dtype=jac.dtype, device=jac.device))
    if method == "auto":
        method = "gram" if max(c, d) >= 4 * k else "svd"
    if method == "svd":
        # LAPACK is far faster on tall than on wide matrices (measured 80× for 10×784): use Jᵀ when c < d
        sigma = torch.linalg.svdvals(jac if c >= d else jac.transpose(1, 2))
    else:
        small = jac if c <= d else jac.transpose(1, 2)  # (n, k, m), k ≤ m
        gram = small @ small.transpose(1, 2)  # (n, k, k), float64
        if refine:
            _, vectors = torch.linalg.eigh(gram)
            sigma = torch.linalg.vector_norm(small.transpose(1, 2) @ vectors, dim=1)  # ‖Jᵀ u_i‖
        else:
            sigma = torch.linalg.eigvalsh(gram).clamp_min(0.0).sqrt()
        sigma = torch.sort(sigma, dim=1, descending=True).values
    sigma = sigma[:, :k]
    if not bool(finite.all()):
        sigma = torch.where(finite[:, None], sigma, torch.full((), math.nan, dtype=sigma.dtype, device=sigma.device))
    return sigma


def per_example_singular_values(model: nn.Module, x: torch.Tensor, output: OutputFn | None = None) -> torch.Tensor:
    """Brandão et al. 2023's method (sec. 8.5): ``torch.autograd.functional.jacobian`` + ``svdvals`` per example.

    A slow, obvious reference for :func:`point_jacobian_singular_values`.

    Returns
    -------
    torch.Tensor
        Shape ``(n, min(c, d))``, descending, dtype of ``x``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.point_jacobian import per_example_singular_values
    >>> model = torch.nn.Linear(2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.diag(torch.tensor([2.0, 0.5])))
    >>> per_example_singular_values(model, torch.randn(3, 2))[0]
    tensor([2.0000, 0.5000])
    """
    _check_float_input(x)
    values = []
    for k in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda xi: _forward(model, xi.unsqueeze(0), output)[0], x[k])
        values.append(torch.linalg.svdvals(jac.reshape(jac.shape[0], -1)))
    return torch.stack(values)


def point_jacobian_singular_values(
    model: nn.Module,
    x: torch.Tensor,
    output: OutputFn | None = None,
    jacobian: JacobianMethod = "auto",
    spectrum: SpectrumMethod = "auto",
    chunk_size: int | None = None,
    progress: bool = False,
    n_outputs: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values of the point Jacobian at every example, computed chunk by chunk.

    Parameters
    ----------
    model : nn.Module
        The network (call it in eval mode: examples must not interact).
    x : torch.Tensor
        Floating-point inputs ``(n, *input_shape)``.
    output : callable, optional
        ``output(model, x) -> (n, c)`` to differentiate instead of the logits ``model(x)``.
    jacobian : {"auto", "batched", "vmap", "loop"}
        How the Jacobians are obtained (see :func:`input_jacobians`); ``"auto"`` is ``"batched"``.
    spectrum : {"auto", "gram", "svd"}
        How singular values are obtained (see :func:`jacobian_singular_values`).
    chunk_size : int, optional
        Examples per chunk; by default chosen so that a chunk's float64 Jacobians take ≤ 64 MiB.
    progress : bool
        Show a tqdm progress bar over chunks.
    n_outputs : int, optional
        The number of outputs ``c`` when known (sizes the default chunk without a one-example forward
        pass); checked against the output, and the chunks are sized again if it was wrong.

    Returns
    -------
    singular_values : torch.Tensor
        ``(n, min(c, d))`` float64, descending; NaN rows for examples whose Jacobian is not finite.
    outputs : torch.Tensor
        The output ``(n, c)`` at ``x``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.point_jacobian import per_example_singular_values, point_jacobian_singular_values
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    >>> x = torch.randn(6, 5, dtype=torch.float64)
    >>> fast, _ = point_jacobian_singular_values(model, x)
    >>> bool(torch.allclose(fast, per_example_singular_values(model, x)))  # the paper's loop gives the same
    True
    """
    _check_float_input(x)
    if jacobian not in ("auto", "batched", "vmap", "loop"):
        raise ValueError(f"`jacobian` must be one of 'auto', 'batched', 'vmap' or 'loop', but got {jacobian!r}.")
    if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"`chunk_size` must be a positive integer or None, but got {chunk_size!r}.")
    method = "batched" if jacobian == "auto" else jacobian
    n = x.shape[0]
    d = int(np.prod(x.shape[1:])) if x.dim() > 1 else 1
    hinted = chunk_size is None and n_outputs is not None
    if chunk_size is None:
        if n_outputs is None:
            with torch.no_grad():
                n_outputs = _forward(model, x[:1], output).shape[1]
        chunk_size = max(1, min(n, (64 * 2**20) // max(1, 8 * n_outputs * d)))
    from tqdm.auto import tqdm

    sigmas, outs = [], []
    starts = range(0, n, chunk_size)
    for start in tqdm(starts, desc="point Jacobian", unit="chunk", disable=not progress, leave=False):
        chunk = x[start : start + chunk_size]
        jac, out = input_jacobians(model, chunk, output=output, method=method)
        if hinted and out.shape[1] != n_outputs:  # a wrong hint: size the chunks from the real c
            return point_jacobian_singular_values(model, x, output, jacobian, spectrum, None, progress)
        sigmas.append(jacobian_singular_values(jac, method=spectrum))
        outs.append(out)
        del jac
    return torch.cat(sigmas), torch.cat(outs)


class PointJacobian(Probe):
    r"""Singular values of the input–output Jacobian at every example (Brandão et al. 2023, 4.2–4.4).

    For each example ``x_k`` (flattened to ``d`` features) the probe computes the singular values of
    ``J_k = ∂f(x_k)/∂x ∈ R^{c×d}``, ``f`` the logits (or ``output(model, x)``), and the paper's
    complexity measure ``E[log σ]`` (Brandão et al. 2023, sec. 4.3, eq. 5), the mean of ``log σ`` over examples and
    components.

    Parameters
    ----------
    output : callable, optional
        ``output(model, x) -> (n, c)`` tensor to differentiate, e.g. a hidden layer or the
        probabilities ``lambda m, x: m(x).softmax(-1)``; default: the logits ``model(x)``.
    jacobian : {"auto", "batched", "vmap", "loop"}
        Jacobian algorithm: ``"batched"`` (default; ``c`` backward passes through the chunk),
        ``"vmap"`` (``torch.func.vmap(jacrev)``), ``"loop"`` (the paper's per-example method).
    spectrum : {"auto", "gram", "svd"}
        Singular values from the ``c×c`` Gram matrix in float64 (``"gram"``, the default when
        ``c ≪ d``) or ``torch.linalg.svdvals`` (``"svd"``).
    chunk_size : int, optional
        Examples per chunk (bounds memory); default: Jacobians of a chunk take ≤ 64 MiB in float64.
    fit_modes : bool
        Also split the log-spectrum into its modes and fit a lognormal to each
        (:func:`jacspec.fit.split_modes`, Brandão et al. 2023, 5.2 and 8.7), emitting the ``mode_*`` variables.
    progress : bool
        Show a progress bar over chunks.
    max_memory : int, float or str, optional
        Budget of the probe's largest buffers (bytes or a string such as ``"2GB"``); None (default): no check
        (the default chunks already bound the Jacobians at 64 MiB). Before any Jacobian is taken, the bytes
        of one chunk are estimated as ``chunk × (S + c·d·(b + 8) + 8c²)`` plus ``8n(min(c, d) + c + 4)`` for
        the per-example results, with ``S`` the bytes autograd saves for one example's backward pass
        (:func:`jacspec.memory.forward_bytes_per_example`) and ``b`` the input's bytes per entry. With
        ``chunk_size=None`` the chunk shrinks to fit the budget; a request that cannot fit (an explicit
        ``chunk_size``, or one example alone) raises :class:`jacspec.memory.MemoryBudgetError`, naming the
        ways out.
    on_unsupported : {"raise", "warn", "ignore"}
        Accepted by every probe for a uniform interface; here
        the Jacobian with respect to the input is taken through the whole model by autograd, so no module is
        unsupported (integer inputs raise TypeError: they have no derivative).

    Emits
    -----
    singular_values : (sample, component)
        σ of ``J_k``, descending; ``component`` has ``min(c, d)`` entries; NaN where ``J_k`` is not
        finite. Units: output units per input unit.
    log_singular_value_mean : (sample,)
        Mean of ``log σ`` over the components of each example (positive σ only).
    mean_log_singular_value : ()
        Mean of ``log σ`` over all samples and components, the paper's ``E[log σ]`` (nats); NaN when
        some Jacobian is not finite (a warning says how many), never averaged over the finite ones
        silently. Exactly zero singular values (rank-deficient ``J``) have ``log σ = -inf`` and are
        left out of the log means; ``n_zero_singular_values`` counts them.
    jacobian_frobenius_norm : (sample,)
        ``‖J_k‖_F = sqrt(Σ σ²)``.
    jacobian_finite : (sample,)
        1 where every entry of ``J_k`` is finite, else 0.
    n_nonfinite_jacobians, n_zero_singular_values : ()
        Counts.
    label, prediction, correct : (sample,)
        Only when ``y`` is given: the label, ``argmax model(x)``, and 1 where they agree.
    mode_mu, mode_sigma, mode_r2, mode_fraction, mode_count : (mode,)
        Only with ``fit_modes=True``: see :func:`jacspec.fit.split_modes`.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes import PointJacobian
    >>> model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> ds = PointJacobian().measure(model, torch.randn(5, 6))
    >>> ds["singular_values"].dims, ds["singular_values"].shape
    (('sample', 'component'), (5, 3))
    """

    name = "point_jacobian"
    needs_input = True
    needs_input_grad = True

    def __init__(
        self,
        output: OutputFn | None = None,
        jacobian: JacobianMethod = "auto",
        spectrum: SpectrumMethod = "auto",
        chunk_size: int | None = None,
        fit_modes: bool = False,
        progress: bool = False,
        on_unsupported: Literal["raise", "warn", "ignore"] = "raise",
        max_memory: int | float | str | None = None,
    ):
        if on_unsupported not in ("raise", "warn", "ignore"):
            raise ValueError(f"`on_unsupported` must be 'raise', 'warn' or 'ignore', but got {on_unsupported!r}.")
        self.on_unsupported = on_unsupported
        self.max_memory = budget_argument(max_memory)
        if output is not None and not callable(output):
            raise TypeError(
                f"`output` must be a callable (model, x) -> tensor of shape (n, c), or None; got {output!r}."
            )
        if jacobian not in ("auto", "batched", "vmap", "loop"):
            raise ValueError(f"`jacobian` must be one of 'auto', 'batched', 'vmap' or 'loop', but got {jacobian!r}.")
        if spectrum not in ("auto", "gram", "svd"):
            raise ValueError(f"`spectrum` must be one of 'auto', 'gram' or 'svd', but got {spectrum!r}.")
        if chunk_size is not None and (
            not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
        ):
            raise ValueError(f"`chunk_size` must be a positive integer or None, but got {chunk_size!r}.")
        self.output = output
        self.jacobian = jacobian
        self.spectrum = spectrum
        self.chunk_size = chunk_size
        self.fit_modes = bool(fit_modes)
        self.progress = bool(progress)
        self._outputs_seen: dict[tuple, int] = {}

    def _chunk_under_budget(self, model: nn.Module, x: torch.Tensor) -> int | None:
        """The chunk size that keeps the estimated peak under ``max_memory``; refuse when none can."""
        if self.max_memory is None:
            return self.chunk_size
        _check_float_input(x)
        budget = parse_memory(self.max_memory)
        n = x.shape[0]
        d = int(np.prod(x.shape[1:])) if x.dim() > 1 else 1
        saved, c = forward_bytes_per_example(model, x, self.output)
        per_example = saved + c * d * (x.element_size() + 8) + 8 * c * c
        results = 8 * n * (min(c, d) + c + 4)
        chunk = self.chunk_size or max(1, min(n, (64 * 2**20) // max(1, 8 * c * d)))
        if results + chunk * per_example <= budget:
            return chunk
        if self.chunk_size is None and (budget - results) // per_example >= 1:
            return int((budget - results) // per_example)
        smallest = chunk if self.chunk_size is not None else 1
        ways_out = ["fewer examples (pass x[:m])"]
        if self.chunk_size is not None:
            ways_out.insert(0, "a smaller `chunk_size=` (or chunk_size=None: the chunk is then fitted to the budget)")
        check_memory(
            results + smallest * per_example,
            self.max_memory,
            what=(
                f"PointJacobian on {n} examples ({d} input features, {c} outputs) in chunks of {smallest} "
                f"(each example: {saved} B of autograd graph and its {c}×{d} Jacobian)"
            ),
            ways_out=ways_out,
        )
        return smallest

    def _shares(self, x: torch.Tensor) -> bool:
        # the shared pass computes what the default options compute: c batched backward passes to x
        return (
            self.output is None
            and self.jacobian in ("auto", "batched")
            and self.chunk_size is None
            and self.max_memory is None
            and self.mode == "eval"
            and isinstance(x, torch.Tensor)
            and x.is_floating_point()
        )

    def share(self, shared: Any, model: nn.Module, x: torch.Tensor) -> None:
        if self._shares(x):
            d = int(np.prod(x.shape[1:])) if x.dim() > 1 else 1
            # wanted when one chunk of the default size holds the whole batch (what measure alone would do)
            shared.request_input_jacobians(when=lambda n, c: n <= (64 * 2**20) // max(1, 8 * c * d))

    def measure(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> xr.Dataset:
        from jacspec.engine.shared_pass import active_pass

        shared = active_pass(model, x) if self._shares(x) else None
        jacobians = None if shared is None else shared.input_jacobians()
        if jacobians is not None:  # this step's shared pass: the same c backward passes, run once for every probe
            sigma, out = jacobian_singular_values(jacobians, method=self.spectrum), shared.logits()
        else:
            key = (id(model), tuple(x.shape[1:]), x.dtype)  # c seen last time: saves a one-example forward
            sigma, out = point_jacobian_singular_values(
                model,
                x,
                output=self.output,
                jacobian=self.jacobian,
                spectrum=self.spectrum,
                chunk_size=self._chunk_under_budget(model, x),
                progress=self.progress,
                n_outputs=self._outputs_seen.get(key),
            )
            self._outputs_seen = {key: int(out.shape[1])}
        sigma_np = sigma.cpu().numpy()
        n, k = sigma_np.shape
        finite = np.isfinite(sigma_np).all(axis=1)
        n_nonfinite = int((~finite).sum())
        positive = sigma_np > 0
        n_zero = int((sigma_np[finite] == 0).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.where(positive, np.log(np.where(positive, sigma_np, 1.0)), np.nan)
        counts = positive.sum(axis=1)
        per_example = np.where(counts > 0, np.nansum(logs, axis=1) / np.maximum(counts, 1), np.nan)
        per_example[~finite] = np.nan
        if n_nonfinite:
            warnings.warn(
                f"PointJacobian: the Jacobian of {n_nonfinite} of {n} examples has NaN or inf entries; their "
                "singular values are NaN and `mean_log_singular_value` is NaN (see `jacobian_finite`).",
                RuntimeWarning,
                stacklevel=3,
            )
            mean_log = math.nan
        else:
            mean_log = float(logs[positive].mean()) if positive.any() else math.nan
        frobenius = np.sqrt((sigma_np**2).sum(axis=1))
        data_vars = {
            "singular_values": (
                ("sample", "component"),
                sigma_np,
                {"long_name": "singular values of the point Jacobian d output / d input", "units": "1"},
            ),
            "log_singular_value_mean": (
                "sample",
                per_example,
                {"long_name": "mean log singular value of the example's Jacobian", "units": "nat"},
            ),
            "mean_log_singular_value": (
                (),
                mean_log,
                {"long_name": "mean log singular value over samples and components, E[log sigma]", "units": "nat"},
            ),
            "jacobian_frobenius_norm": (
                "sample",
                frobenius,
                {"long_name": "Frobenius norm of the point Jacobian", "units": "1"},
            ),
            "jacobian_finite": (
                "sample",
                finite.astype(np.int8),
                {"long_name": "1 where every Jacobian entry is finite", "units": "1"},
            ),
            "n_nonfinite_jacobians": ((), n_nonfinite, {"long_name": "examples with a non-finite Jacobian"}),
            "n_zero_singular_values": ((), n_zero, {"long_name": "exactly zero singular values (left out of logs)"}),
        }
        if y is not None:
            with torch.no_grad():
                logits = out if self.output is None else model(x)
            label = y.detach().cpu().numpy().astype(np.int64)
            data_vars["label"] = ("sample", label, {"long_name": "class label"})
            if isinstance(logits, torch.Tensor) and logits.dim() == 2:
                prediction = logits.argmax(dim=1).cpu().numpy().astype(np.int64)
                data_vars["prediction"] = ("sample", prediction, {"long_name": "argmax of model(x)"})
                data_vars["correct"] = (
                    "sample",
                    (prediction == label).astype(np.int8),
                    {"long_name": "1 where the prediction equals the label", "units": "1"},
                )
        ds = xr.Dataset(
            data_vars,
            coords={
                "sample": ("sample", np.arange(n), {"long_name": "example index in x"}),
                "component": ("component", np.arange(k), {"long_name": "singular value rank (0 = largest)"}),
            },
            attrs={
                "n_outputs": int(out.shape[1]),
                "n_input_features": int(np.prod(x.shape[1:])) if x.dim() > 1 else 1,
                "output": "logits" if self.output is None else getattr(self.output, "__qualname__", repr(self.output)),
            },
        )
        if self.fit_modes:
            from jacspec import fit

            values = sigma_np[np.isfinite(sigma_np) & (sigma_np > 0)]
            split = fit.split_modes(values) if values.size >= fit.MIN_VALUES_SPLIT else None
            ds = fit.attach(ds, split)
        return ds
