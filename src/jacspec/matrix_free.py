r"""Matrix-free statistics of the multiclass empirical tangent kernel, for ``n·c`` in the hundreds of thousands.

The tangent kernel of a network ``f_w`` on ``n`` examples with ``c`` outputs is ``K = J Jᵀ``, an
``(n·c) × (n·c)`` matrix with ``J[(i, a), p] = ∂f_a(x_i)/∂w_p`` (Baratin, "Some Phenomenological
Investigations in Deep Learning", PhD thesis, Université de Montréal, 2021, appendix B.1.4, eq. 22).
Its statistics need only kernel–vector products ``K v = J (Jᵀ v)``: one vector–Jacobian product
(a backward pass with output cotangents ``v``) and one Jacobian–vector product (forward-mode AD) over
the ``n`` examples, a chunk at a time; the matrix is never formed. Memory is ``O(n·c·b)`` for a block
of ``b`` vectors plus the network's own activations for one chunk.

What is computed, and how exactly:

* the top ``k`` eigenvalues (and eigenvectors) by thick-restart block Lanczos with full
  reorthogonalisation (block size ``b ≥ k + c``, so that the near-``c``-fold multiplicities of
  multiclass kernels are resolved; converged when every residual ``‖K y − θ y‖ ≤ tol · θ_1``);
* the trace, exactly, from per-example Jacobians (``Tr K = Σ_{i,a} ‖∂f_a(x_i)/∂w‖²``), also per layer;
* the effective rank ``exp(H(μ))`` (thesis, eq. 5) from ``Tr K`` and ``Tr(K log K)``: the top-``k``
  part exactly, the rest by stochastic Lanczos quadrature (Ubaru, Chen and Saad, "Fast Estimation of
  tr(f(A)) via Stochastic Lanczos Quadrature", SIAM J. Matrix Anal. Appl. 38(4), 2017) on the deflated
  operator, with the standard error over probe vectors;
* ``CKA(K, Y Yᵀ)`` (thesis, eq. 7): the numerator ``(CY)ᵀ K (CY)`` exactly (``Y Yᵀ`` has rank one for
  the concatenated one-hot label vector), ``‖CKC‖_F²`` as the exact top-``k`` part plus a Hutchinson
  estimate on the deflated remainder (the Hutch++ idea of Meyer, Musco, Musco and Woodruff, SOSA 2021),
  with its standard error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from jacspec.distributed import collective_, command
from jacspec.distributed import row_block as _row_block
from jacspec.engine.attention import with_math_attention
from jacspec.engine.jacobian import _Wrapped  # forward(x) = output(model, x)
from jacspec.engine.parameters import owner_of

__all__ = [
    "TangentKernelOperator",
    "block_lanczos_top",
    "slq_trace",
    "MatrixFreeStatistics",
    "matrix_free_statistics",
    "answer_operator_command",
    "LanczosConvergenceWarning",
]

OutputFn = Callable[[nn.Module, Any], torch.Tensor]

#: Largest size of the cached per-layer factors of the structured (Linear-only) kernel–vector products;
#: above it the products run through autograd, whose memory does not grow with n.
STRUCTURED_FACTOR_BYTES = 2**30


class TangentKernelOperator:
    """The tangent kernel ``K = J Jᵀ`` of ``model`` on ``x`` as a linear operator (never formed).

    Parameters
    ----------
    model : nn.Module
        The network; its trainable parameters (``named_parameters()``, so a tied Parameter counts once
        with the contributions of all its uses) define ``J``.
    x : torch.Tensor
        ``n`` inputs along the first dimension.
    output : callable, optional
        ``output(model, x) -> (n, c)``; default ``model(x)``.
    center_features : bool
        Use the centered tangent features ``Φ(x) − E_x Φ(x)`` (mean over the examples, per output):
        ``K_c = (H ⊗ I_c) K (H ⊗ I_c)``, ``H = I − 11ᵀ/n``.
    chunk_size : int
        Examples per forward/backward pass.
    structured : bool
        For networks whose parametrised modules are all ``nn.Linear`` (no tied or parent-read
        parameters), cache each layer's input ``u_i`` and output gradients ``g_ia`` once (``n·(c·o + d)``
        numbers per layer, at most :data:`STRUCTURED_FACTOR_BYTES`) and compute products as batched GEMMs
        (``J^ℓ[(i, a)] = g_ia ⊗ u_i``); otherwise, or with ``False``, every product runs a backward and a
        forward-mode pass. Both give the same products (to rounding).
    max_factor_bytes : int, optional
        Largest size of that cache (with its transient copy); default :data:`STRUCTURED_FACTOR_BYTES`.
        Above it the autograd products run. ``TangentKernel`` passes what its ``max_memory`` leaves.
    distributed : bool
        Split the examples across the ranks of the initialised ``torch.distributed`` process group: rank ``r``
        of ``W`` holds the rows ``[r*n//W, (r+1)*n//W)`` of ``J`` (their factors, their backward and
        forward passes); ``Jᵀ V`` is summed over the ranks with ``all_reduce`` and the rows of ``J U`` and
        of the traces are reduced onto rank 0. Rank 0 drives: it builds the operator and calls its methods,
        and each call first broadcasts a command to the other ranks, which answer in
        :func:`jacspec.distributed.serve` (every rank must hold the same model and ``x``). Results are rank 0's.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from jacspec.matrix_free import TangentKernelOperator
    >>> model = torch.nn.Linear(4, 3)  # K = (X Xᵀ + 1) ⊗ I_3
    >>> x = torch.randn(5, 4, dtype=torch.float64); model.double()  # doctest: +ELLIPSIS
    Linear(...)
    >>> op = TangentKernelOperator(model, x, center_features=False)
    >>> K = np.kron((x @ x.T + 1).numpy(), np.eye(3))
    >>> v = np.random.default_rng(0).standard_normal((15, 2))
    >>> bool(np.allclose(op.matmat(v), K @ v))
    True
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        output: OutputFn | None = None,
        *,
        center_features: bool = True,
        chunk_size: int = 1024,
        structured: bool = True,
        max_factor_bytes: int | None = None,
        distributed: bool = False,
    ):
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        if self.world > 1 and self.rank == 0:
            command(
                {
                    "cmd": "operator",
                    "n": int(x.shape[0]),
                    "center_features": bool(center_features),
                    "chunk_size": int(chunk_size),
                    "structured": bool(structured),
                    "max_factor_bytes": max_factor_bytes,
                }
            )
        self.model = model
        self.max_factor_bytes = STRUCTURED_FACTOR_BYTES if max_factor_bytes is None else int(max_factor_bytes)
        self.x = x
        self.wrapped = _Wrapped(model, output)
        self.output = output
        self.params = {f"model.{k}": p for k, p in model.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError(
                f"`model` ({type(model).__name__}) has no parameter with requires_grad=True: the tangent kernel "
                "is empty. Unfreeze the parameters that define it."
            )
        self.layer_of = {k: owner_of(k[len("model.") :]) for k in self.params}
        self.center = bool(center_features)
        self.chunk_size = max(1, int(chunk_size))
        with torch.no_grad():
            first = self.wrapped(x[:1])
        if first.dim() != 2 or first.shape[0] != 1:
            raise ValueError(
                f"`output` must give a tensor of shape (n, c), but gave {tuple(first.shape)} for one example."
            )
        self.n = int(x.shape[0])
        self.rows = range(self.n)[_row_block(self.n, self.rank, self.world)]  # the examples this rank holds
        self.c = int(first.shape[1])
        self.dtype = first.dtype
        self.shape = (self.n * self.c, self.n * self.c)
        self.n_products = 0
        self._forward_mode = True
        # Linear-only networks: products from cached per-layer factors (no autograd per product)
        self._layer_factors = self._structured_factors() if structured else None

    def _structured_factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
        """This rank's factors (below), kept only when every rank could build its own."""
        factors = self._own_structured_factors()
        if self.world > 1:
            ok = collective_(dist.all_reduce, torch.tensor([0 if factors is None else 1]), op=dist.ReduceOp.MIN)
            if not int(ok):
                return None
        return factors

    @with_math_attention
    def _own_structured_factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
        """Per-layer ``(g, u)`` with ``J^ℓ[(i, a)] = g_ia ⊗ u_i`` when every parametrised module is an ``nn.Linear``.

        ``u_i`` is the layer's bias-augmented input (n, d) and ``g_ia = ∂f_a(x_i)/∂(layer output)`` (n, c, o),
        from one forward pass and ``c`` backward passes (:func:`jacspec.kernels._collect`). Then
        ``Jᵀ V = Σ_ℓ Σ_{i,a} V_ia g_ia ⊗ u_i`` and ``(J U)_ia = Σ_ℓ g_iaᵀ U_ℓ u_i`` are batched GEMMs
        (about ``4·n·P`` flops per vector, the arithmetic floor of a vector–Jacobian plus a Jacobian–vector
        product). ``None`` (autograd products) for any other module, tied or parent-read parameters, or
        factors (with their transient copy) above :data:`STRUCTURED_FACTOR_BYTES`.
        """
        from jacspec.kernels import _collect, _NeedsFunctional, _OuterFactors, parametrised_modules

        names = parametrised_modules(self.model)
        if not names or any(type(m) is not nn.Linear for m in names.values()):
            return None
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        width = sum(m.out_features * self.c + m.in_features + 1 for m in names.values())
        if 2 * self.n * width * itemsize > self.max_factor_bytes:
            return None
        wanted = {id(p) for p in self.params.values()}
        cached: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        step = max(1, min(self.n, 2048))  # one chunk's backward passes hold c copies of its activations
        r0, r1 = self.rows.start, self.rows.stop
        for start in range(r0, r1, step):
            stop = min(start + step, r1)
            info: dict[str, Any] = {}
            try:
                factors, m, c = _collect(self.model, self.x[start:stop], names, self.output, "raise", True, info)
            except _NeedsFunctional:
                return None
            if info.get("used_ids") != wanted or (m, c) != (stop - start, self.c):
                return None
            if not all(isinstance(f, _OuterFactors) and f.positions == 1 for f in factors.values()):
                return None
            for name, f in factors.items():
                g, u = f.g[:, :, 0, :], f.u[:, 0, :]
                if name not in cached:
                    cached[name] = (
                        torch.empty((r1 - r0, *g.shape[1:]), dtype=g.dtype, device=g.device),
                        torch.empty((r1 - r0, u.shape[1]), dtype=u.dtype, device=u.device),
                    )
                cached[name][0][start - r0 : stop - r0] = g
                cached[name][1][start - r0 : stop - r0] = u
            del factors
        return cached

    def _structured_matmat(self, v: torch.Tensor) -> torch.Tensor:
        """``J (Jᵀ V)`` for ``V`` (n, c, b) from the cached layer factors, a chunk of examples at a time."""
        assert self._layer_factors is not None
        out = torch.zeros_like(v)
        b = v.shape[2]
        r0 = self.rows.start
        for g, u in self._layer_factors.values():
            m = torch.zeros((b, g.shape[2], u.shape[1]), dtype=v.dtype, device=v.device)
            for start, stop in self._chunks():
                gv = torch.bmm(v[start:stop].transpose(1, 2), g[start - r0 : stop - r0])  # (m, b, o)
                m += torch.matmul(gv.permute(1, 2, 0), u[start - r0 : stop - r0])  # (b, o, d): Jᵀ V, this layer
            self._all_reduce(m)  # Jᵀ V sums over every rank's examples
            for start, stop in self._chunks():
                w = torch.matmul(u[start - r0 : stop - r0], m.transpose(1, 2))  # (b, m, o)
                out[start:stop] += torch.bmm(g[start - r0 : stop - r0], w.permute(1, 2, 0))  # (m, c, b)
        return out

    # -- products --------------------------------------------------------------------------------
    def _chunks(self):
        for start in range(self.rows.start, self.rows.stop, self.chunk_size):
            yield start, min(start + self.chunk_size, self.rows.stop)

    def _all_reduce(self, tensor: torch.Tensor) -> None:
        if self.world > 1:
            collective_(dist.all_reduce, tensor)

    def _reduce(self, tensor: torch.Tensor) -> None:  # the sum onto rank 0
        if self.world > 1:
            collective_(dist.reduce, tensor, dst=0)

    def _center(self, v: torch.Tensor) -> torch.Tensor:  # v: (n, c, b)
        return v - v.mean(dim=0, keepdim=True) if self.center else v

    @with_math_attention
    def _vjp(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """``Jᵀ V`` for ``V`` of shape (n, c, b): one (b, *p.shape) tensor per parameter."""
        b = v.shape[2]
        names = list(self.params)
        tensors = [self.params[k] for k in names]
        out = {k: torch.zeros((b, *p.shape), dtype=p.dtype, device=p.device) for k, p in self.params.items()}
        for start, stop in self._chunks():
            with torch.enable_grad():
                f = self.wrapped(self.x[start:stop])
                cot = v[start:stop].permute(2, 0, 1).to(f.dtype)  # (b, m, c)
                try:
                    grads = torch.autograd.grad(f, tensors, grad_outputs=cot, is_grads_batched=True, allow_unused=True)
                except RuntimeError:
                    cols = [
                        torch.autograd.grad(f, tensors, grad_outputs=cot[j], retain_graph=j < b - 1, allow_unused=True)
                        for j in range(b)
                    ]
                    grads = [
                        None if cols[0][i] is None else torch.stack([col[i] for col in cols])
                        for i in range(len(tensors))
                    ]
            for k, g in zip(names, grads):
                if g is not None:
                    out[k] += g
        for tensor in out.values():
            self._all_reduce(tensor)
        return out

    @with_math_attention
    def _jvp(self, u: dict[str, torch.Tensor], b: int) -> torch.Tensor:
        """``J U`` for tangents ``U`` (b, *p.shape) per parameter: shape (n, c, b)."""
        from torch.func import functional_call, jvp, vmap

        result = torch.zeros(self.n, self.c, b, dtype=self.dtype, device=self.x.device)
        primals = {k: p.detach() for k, p in self.params.items()}
        for start, stop in self._chunks():
            xc = self.x[start:stop]
            if self._forward_mode:
                try:

                    def one(t: dict[str, torch.Tensor], xc: torch.Tensor = xc) -> torch.Tensor:
                        return jvp(lambda p: functional_call(self.wrapped, p, (xc,)), (primals,), (t,))[1]

                    with torch.no_grad():
                        result[start:stop] = vmap(one)(u).permute(1, 2, 0)
                    continue
                except (NotImplementedError, RuntimeError):
                    self._forward_mode = False  # forward-mode AD or vmap unsupported here: reverse-over-reverse
            with torch.enable_grad():
                f = self.wrapped(xc)
                w = torch.zeros_like(f, requires_grad=True)
                names = list(self.params)
                g = torch.autograd.grad(
                    f, [self.params[k] for k in names], grad_outputs=w, create_graph=True, allow_unused=True
                )
                for j in range(b):
                    terms = [(gi * u[k][j]).sum() for gi, k in zip(g, names) if gi is not None]
                    (ju,) = torch.autograd.grad(sum(terms), w, retain_graph=j < b - 1)
                    result[start:stop, :, j] = ju.detach()
        return result

    def matmat(self, v: np.ndarray) -> np.ndarray:
        """``K V`` for ``V`` of shape ``(n·c, b)`` (or ``(n·c,)``), float64 in and out."""
        vector = v.ndim == 1
        vv = torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(self.n, self.c, -1)).contiguous()
        if self.world > 1 and self.rank == 0:
            command({"cmd": "matmat", "shape": tuple(vv.shape)})
            collective_(dist.broadcast, vv, src=0)
        out = self._matmat_rows(vv).reshape(self.n * self.c, -1).cpu().numpy()
        return out[:, 0] if vector else out

    def _matmat_rows(self, vv: torch.Tensor) -> torch.Tensor:
        """``K V`` for ``V`` (n, c, b) float64 from this rank's rows, summed onto rank 0 (complete there)."""
        b = vv.shape[2]
        vv = self._center(vv).to(device=self.x.device, dtype=self.dtype)  # the model's device and dtype
        out = self._structured_matmat(vv) if self._layer_factors is not None else self._jvp(self._vjp(vv), b)
        out = out.double()
        self._reduce(out)
        self.n_products += b
        return self._center(out)

    # -- exact traces ----------------------------------------------------------------------------
    def layer_traces(self) -> dict[str, float]:
        """``Tr K^ℓ`` per owning module, exactly, from per-example Jacobians (a chunk at a time).

        With centered features, ``Tr K_c^ℓ = Σ_{i,a} ‖φ_ia‖² − (1/n) Σ_a ‖Σ_i φ_ia‖²``.
        """
        if self.world > 1 and self.rank == 0:
            command({"cmd": "layer_traces"})
        squares, sums = self._structured_sums() if self._layer_factors is not None else self._autograd_sums()
        traces: dict[str, float] = {}
        for k in squares:
            self._reduce(squares[k])
            self._reduce(sums[k])
            value = float(squares[k]) - (float((sums[k] ** 2).sum()) / self.n if self.center else 0.0)
            layer = self.layer_of.get(k, k)
            traces[layer] = traces.get(layer, 0.0) + value
        return traces

    @with_math_attention
    def _autograd_sums(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per parameter, this rank's ``Σ_{i,a} ‖φ_ia‖²`` and (centered) ``Σ_i φ_ia``, from per-example Jacobians."""
        from torch.func import functional_call, jacrev, vmap

        primals = {k: p.detach() for k, p in self.params.items()}
        squares = {k: torch.zeros((), dtype=torch.float64, device=p.device) for k, p in self.params.items()}
        sums = {
            k: torch.zeros((self.c, *p.shape) if self.center else (), dtype=torch.float64, device=p.device)
            for k, p in self.params.items()
        }

        def single(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
            return functional_call(self.wrapped, p, (xi.unsqueeze(0),)).squeeze(0)

        # a chunk's Jacobians (m, c, P) in the model's dtype plus their float64 copies: about 12·m·c·P bytes;
        # keep that near 256 MiB whatever the model's size (the result does not depend on the chunk)
        n_params = sum(p.numel() for p in self.params.values())
        chunk = max(1, min(self.chunk_size, 64, 2**28 // max(1, 12 * self.c * n_params)))
        for start in range(self.rows.start, self.rows.stop, chunk):
            xc = self.x[start : min(start + chunk, self.rows.stop)]
            try:
                with torch.no_grad():
                    jac = vmap(jacrev(single), in_dims=(None, 0))(primals, xc)  # {k: (m, c, *shape)}
            except (NotImplementedError, RuntimeError):
                jac = self._jacobian_loop(xc)
            for k in list(jac):
                j = jac.pop(k).double()  # one parameter's float64 copy at a time
                squares[k] += (j**2).sum()
                if self.center:
                    sums[k] += j.sum(dim=0)
                del j
        return squares, sums

    def _structured_sums(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per layer, ``Σ_{i,a} ‖g_ia‖² ‖u_i‖²`` and (centered) ``Σ_i g_ia ⊗ u_i`` over this rank's examples."""
        assert self._layer_factors is not None
        squares: dict[str, torch.Tensor] = {}
        sums: dict[str, torch.Tensor] = {}
        r0 = self.rows.start
        for name, (g, u) in self._layer_factors.items():
            squares[name] = torch.zeros((), dtype=torch.float64, device=g.device)
            shape = (self.c, g.shape[2], u.shape[1]) if self.center else ()
            sums[name] = torch.zeros(shape, dtype=torch.float64, device=g.device)
            for start, stop in self._chunks():  # float64 a chunk at a time
                g64, u64 = g[start - r0 : stop - r0].double(), u[start - r0 : stop - r0].double()
                squares[name] += ((g64**2).sum(-1) * (u64**2).sum(-1)[:, None]).sum()
                if self.center:
                    sums[name] += torch.einsum("iao,id->aod", g64, u64)
        return squares, sums

    def _jacobian_loop(self, xc: torch.Tensor) -> dict[str, torch.Tensor]:
        names = list(self.params)
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in names}
        for i in range(xc.shape[0]):
            with torch.enable_grad():
                f = self.wrapped(xc[i : i + 1])[0]
                per_class = [
                    torch.autograd.grad(
                        f[a], [self.params[k] for k in names], retain_graph=a < self.c - 1, allow_unused=True
                    )
                    for a in range(self.c)
                ]
            for idx, k in enumerate(names):
                rows[k].append(
                    torch.stack([torch.zeros_like(self.params[k]) if g[idx] is None else g[idx] for g in per_class])
                )
        return {k: torch.stack(v) for k, v in rows.items()}


def answer_operator_command(
    message: dict[str, Any], state: dict[str, Any], model: nn.Module, x: torch.Tensor, output: OutputFn | None
) -> bool:
    """Answer one of rank 0's operator commands on this rank's rows; False when ``message`` is not one.

    ``state`` keeps this rank's :class:`TangentKernelOperator` between commands.

    Examples
    --------
    >>> import torch
    >>> from jacspec.matrix_free import answer_operator_command
    >>> answer_operator_command({"cmd": "something else"}, {}, torch.nn.Linear(2, 2), torch.ones(1, 2), None)
    False
    """
    kind = message["cmd"]
    if kind == "operator":
        state["operator"] = TangentKernelOperator(
            model,
            x[: message["n"]],
            output,
            center_features=message["center_features"],
            chunk_size=message["chunk_size"],
            structured=message["structured"],
            max_factor_bytes=message["max_factor_bytes"],
            distributed=True,
        )
    elif kind == "matmat":
        v = collective_(dist.broadcast, torch.empty(message["shape"], dtype=torch.float64), src=0)
        state["operator"]._matmat_rows(v)
    elif kind == "layer_traces":
        state["operator"].layer_traces()
    else:
        return False
    return True


def block_lanczos_top(
    matmat: Callable[[np.ndarray], np.ndarray],
    size: int,
    k: int,
    *,
    block_size: int | None = None,
    steps: int = 4,
    tol: float = 1e-6,
    max_restarts: int = 30,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Top ``k`` eigenpairs of a symmetric positive semi-definite operator by thick-restart block Lanczos.

    Each cycle builds the block Krylov basis ``[X, A X, …, A^steps X]`` with full reorthogonalisation,
    takes the Rayleigh–Ritz pairs on it and restarts from the top ``block_size`` Ritz vectors; it stops
    when the residuals of the top ``k`` satisfy ``‖A y − θ y‖ ≤ tol · θ_1``.

    Returns
    -------
    eigenvalues : ndarray (k,)
        Descending.
    eigenvectors : ndarray (size, k)
    products : int
        Number of operator–vector products used.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.matrix_free import block_lanczos_top
    >>> A = np.diag(np.arange(100, 0, -1.0))
    >>> values, vectors, _ = block_lanczos_top(lambda v: A @ v, 100, 5)
    >>> np.round(values, 6).tolist()
    [100.0, 99.0, 98.0, 97.0, 96.0]
    """
    k = min(k, size)
    b = min(size, block_size if block_size is not None else k + 8)
    b = max(b, k)
    rng = np.random.default_rng(seed)
    x, _ = np.linalg.qr(rng.standard_normal((size, b)))
    ax = matmat(x)
    products = b
    theta = np.zeros(k)
    y = x[:, :k]
    for _ in range(max_restarts):
        basis = [x]
        images = [ax]
        for _ in range(steps):
            w = images[-1].copy()
            for _ in range(2):  # full reorthogonalisation, twice is enough
                for q in basis:
                    w -= q @ (q.T @ w)
            q, r = np.linalg.qr(w)
            keep = np.abs(np.diag(r)) > 1e-10 * max(1.0, np.abs(r).max())
            q = q[:, keep]
            if q.shape[1] == 0 or sum(v.shape[1] for v in basis) + q.shape[1] > size:
                break
            basis.append(q)
            images.append(matmat(q))
            products += q.shape[1]
        # Rayleigh–Ritz block by block: the basis is never concatenated (it is the largest allocation)
        offsets = np.cumsum([0] + [q.shape[1] for q in basis])
        t = np.empty((offsets[-1], offsets[-1]))
        for i, q in enumerate(basis):
            for j, image in enumerate(images):
                t[offsets[i] : offsets[i + 1], offsets[j] : offsets[j + 1]] = q.T @ image
        t = (t + t.T) / 2
        values, vecs = np.linalg.eigh(t)
        order = np.argsort(values)[::-1]
        values, vecs = values[order], vecs[:, order]
        ritz = sum(q @ vecs[offsets[i] : offsets[i + 1], :b] for i, q in enumerate(basis))
        aritz = sum(image @ vecs[offsets[i] : offsets[i + 1], :b] for i, image in enumerate(images))
        del basis, images
        theta = values[:k]
        y = ritz[:, :k]
        residual = np.linalg.norm(aritz[:, :k] - y * theta, axis=0)
        if np.all(residual <= tol * max(abs(values[0]), np.finfo(float).tiny)):
            break
        x, ax = ritz, aritz  # thick restart: the top b Ritz vectors and their images
    else:
        scale = max(abs(float(theta[0])) if k else 0.0, np.finfo(float).tiny)
        worst = int(np.argmax(residual))
        warnings.warn(
            f"block Lanczos did not converge in max_restarts={max_restarts} restarts of {steps} steps: the "
            f"largest relative residual ‖K y − θ y‖ / θ_1 is {float(residual[worst]) / scale:.3g} (eigenvalue "
            f"{worst + 1} of {k}), above tol={tol:g}; the relative residuals are "
            f"{np.round(residual / scale, 8).tolist()}. The eigenvalues returned are the current Ritz values, "
            "accurate to about that residual: allow more restarts or steps, ask for fewer eigenvalues, or use the "
            "dense method where the kernel fits in memory.",
            LanczosConvergenceWarning,
            stacklevel=2,
        )
    return theta, y, products


class LanczosConvergenceWarning(RuntimeWarning):
    """Block Lanczos stopped at ``max_restarts`` before every residual met ``tol`` (the message gives them).

    Examples
    --------
    >>> from jacspec.matrix_free import LanczosConvergenceWarning
    >>> issubclass(LanczosConvergenceWarning, RuntimeWarning)
    True
    """


def slq_trace(
    matmat: Callable[[np.ndarray], np.ndarray],
    size: int,
    f: Callable[[np.ndarray], np.ndarray],
    *,
    deflate: np.ndarray | None = None,
    probes: int = 8,
    steps: int = 25,
    seed: int = 0,
) -> tuple[float, float]:
    """Stochastic Lanczos quadrature estimate of ``Tr f(A)`` on the complement of ``deflate``.

    Rademacher probes ``z`` (projected off the columns of ``deflate`` when given) run ``steps`` Lanczos
    steps each, all probes in one block product per step, with full reorthogonalisation; each gives
    ``‖z‖² Σ_j τ_j² f(θ_j)`` from the tridiagonal's eigenpairs. Returns the mean and its standard error
    over the probes (Ubaru, Chen and Saad, SIAM J. Matrix Anal. Appl. 38(4), 2017).

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.matrix_free import slq_trace
    >>> A = np.diag(np.linspace(1, 2, 50))
    >>> est, se = slq_trace(lambda v: A @ v, 50, np.log, probes=30)
    >>> bool(abs(est - np.log(np.linspace(1, 2, 50)).sum()) < 4 * se + 1e-8)
    True
    """
    rng = np.random.default_rng(seed)
    z = rng.choice([-1.0, 1.0], size=(size, probes))

    def project(v: np.ndarray) -> np.ndarray:
        if deflate is None or deflate.shape[1] == 0:
            return v
        return v - deflate @ (deflate.T @ v)

    z = project(z)
    norms2 = (z**2).sum(axis=0)
    q = z / np.sqrt(norms2)
    basis = [q]
    alphas, betas = [], []
    previous = np.zeros_like(q)
    beta = np.zeros(probes)
    steps = min(steps, size)
    for _ in range(steps):
        w = project(matmat(project(q)))
        alpha = (q * w).sum(axis=0)
        w = w - q * alpha - previous * beta
        for v in basis:  # full reorthogonalisation, per probe
            w -= v * (v * w).sum(axis=0)
        alphas.append(alpha)
        beta = np.linalg.norm(w, axis=0)
        if np.all(beta < 1e-12):
            break
        betas.append(beta)
        previous, q = q, w / np.where(beta > 0, beta, 1.0)
        basis.append(q)
    m = len(alphas)
    estimates = np.empty(probes)
    for p in range(probes):
        t = np.diag([a[p] for a in alphas])
        for j in range(m - 1):
            t[j, j + 1] = t[j + 1, j] = betas[j][p]
        theta, vecs = np.linalg.eigh(t)
        estimates[p] = norms2[p] * float((vecs[0] ** 2 * f(np.clip(theta, 0.0, None))).sum())
    return float(estimates.mean()), float(estimates.std(ddof=1) / math.sqrt(probes)) if probes > 1 else math.nan


def _xlogx(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    out = np.zeros_like(v)
    positive = v > 0
    out[positive] = v[positive] * np.log(v[positive])
    return out


@dataclass
class MatrixFreeStatistics:
    """What :func:`matrix_free_statistics` returns (see there).

    Examples
    --------
    >>> import torch
    >>> from jacspec.matrix_free import matrix_free_statistics
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> stats = matrix_free_statistics(model, torch.randn(10, 4), top_k=3)
    >>> stats.eigenvalues.shape, sorted(stats.layer_trace) == ["0", "2"], stats.products > 0
    ((3,), True, True)
    """

    eigenvalues: np.ndarray
    trace: float
    layer_trace: dict[str, float]
    effective_rank: float
    effective_rank_se: float
    cka_labels: float | None
    cka_labels_se: float | None
    products: int


def matrix_free_statistics(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    top_k: int = 100,
    output: OutputFn | None = None,
    center_features: bool = True,
    chunk_size: int = 1024,
    probes: int = 8,
    steps: int = 25,
    tol: float = 1e-6,
    seed: int = 0,
    max_factor_bytes: int | None = None,
    distributed: bool = False,
) -> MatrixFreeStatistics:
    r"""Top eigenvalues, exact traces, effective rank and label CKA of the tangent kernel, matrix-free.

    ``Tr K`` and the per-layer traces are exact. The effective rank is ``exp(log T − S/T)`` with
    ``T = Tr K`` and ``S = Tr(K log K) = Σ_{j≤k} λ_j log λ_j + SLQ`` on the deflated remainder; its
    standard error follows from that of the SLQ term by the delta method. ``CKA(K, Y Yᵀ) =
    (CY)ᵀ K (CY) / (‖CKC‖_F ‖CY‖²)``, ``C = I − 11ᵀ/r`` (thesis, eq. 7), with ``‖CKC‖_F² = ‖(CKC) Q‖_F²``
    (exact, ``Q`` the top-``k`` eigenvectors) plus a Hutchinson estimate of the deflated remainder.

    Parameters
    ----------
    model, x, output, center_features, chunk_size
        As for :class:`TangentKernelOperator`; ``y``: integer labels for the label CKA (or None).
    top_k : int
        Eigenvalues computed by :func:`block_lanczos_top` (deflated from the SLQ and Hutchinson estimates).
    probes, steps, tol, seed
        SLQ / Hutchinson probe vectors, Lanczos steps per probe, the Lanczos residual tolerance, the seed.
    max_factor_bytes, distributed
        As for :class:`TangentKernelOperator` (the structured products' cache size; rows sharded across the
        ranks of the process group, rank 0 driving and the others in :func:`jacspec.distributed.serve`).

    Examples
    --------
    >>> import torch
    >>> from jacspec.matrix_free import matrix_free_statistics
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    >>> stats = matrix_free_statistics(model, torch.randn(20, 4), torch.randint(0, 3, (20,)), top_k=5)
    >>> stats.eigenvalues.shape, 1 <= stats.effective_rank <= 60
    ((5,), True)
    """
    op = TangentKernelOperator(
        model,
        x,
        output,
        center_features=center_features,
        chunk_size=chunk_size,
        max_factor_bytes=max_factor_bytes,
        distributed=distributed,
    )
    r = op.shape[0]
    k = min(top_k, r)
    eigenvalues, vectors, _ = block_lanczos_top(
        op.matmat, r, k, block_size=min(r, k + max(op.c, 8)), tol=tol, seed=seed
    )
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    layer_trace = op.layer_traces()
    trace = float(sum(layer_trace.values()))
    rest = trace - float(eigenvalues.sum())
    if k == r or rest <= 1e-12 * max(trace, 1e-300):
        s_rest, s_se = 0.0, 0.0
    else:
        s_rest, s_se = slq_trace(op.matmat, r, _xlogx, deflate=vectors, probes=probes, steps=steps, seed=seed + 1)
    s = float(_xlogx(eigenvalues).sum()) + s_rest
    if trace > 0:
        erank = float(np.exp(np.log(trace) - s / trace))
        erank_se = erank * s_se / trace
    else:
        erank, erank_se = math.nan, math.nan
    cka = cka_se = None
    if y is not None:
        labels = np.zeros((op.n, op.c))
        labels[np.arange(op.n), np.asarray(y.cpu(), dtype=np.int64)] = 1.0
        cy = labels.reshape(-1) - labels.mean()
        kcy = op.matmat(cy)
        numerator = float(cy @ (kcy - kcy.mean()))

        def ckc(v: np.ndarray) -> np.ndarray:
            v = v - v.mean(axis=0, keepdims=True)
            out = op.matmat(v)
            return out - out.mean(axis=0, keepdims=True)

        top = ckc(vectors)
        frob_top = float((top**2).sum())
        if k == r:
            frob_rest, frob_se = 0.0, 0.0
        else:
            rng = np.random.default_rng(seed + 2)
            z = rng.choice([-1.0, 1.0], size=(r, probes))
            z = z - vectors @ (vectors.T @ z)
            samples = (ckc(z) ** 2).sum(axis=0)
            frob_rest = float(samples.mean())
            frob_se = float(samples.std(ddof=1) / math.sqrt(probes)) if probes > 1 else math.nan
        frob2 = frob_top + frob_rest
        denom = math.sqrt(max(frob2, 0.0)) * float(cy @ cy)
        cka = numerator / denom if denom > 0 else math.nan
        cka_se = abs(cka) * 0.5 * frob_se / frob2 if frob2 > 0 else math.nan
    return MatrixFreeStatistics(eigenvalues, trace, layer_trace, erank, erank_se, cka, cka_se, op.n_products)
