"""Tangent-kernel probes: spectrum, effective rank, trace ratios and label alignment of the empirical NTK.

Baratin 2021 (Baratin, PhD thesis), chapter 4: the multiclass tangent kernel ``K = Φ Φᵀ`` on a batch of
``n`` examples is an ``(n·c) × (n·c)`` matrix (B.1.4, eq. 22); its spectrum becomes strongly anisotropic
early in training (effective rank, eq. 5; trace ratios, eq. 6) and it aligns with the class labels
(CKA with ``Y Yᵀ``, eq. 7), layer by layer (``K = Σ_ℓ K^ℓ``). Section 4.4.2 proposes the complexity
measure ``C = Σ_t ‖δw_t‖₂ ‖Φ_t‖_F`` (eq. 18), accumulated by :class:`TangentComplexity`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from torch import nn

from jacspec._validation import check_labels
from jacspec.distributed import products_sharded
from jacspec.engine.parameters import owner_of, trainable_parameters
from jacspec.kernels import (
    alignment,
    center_features,
    centered_kernel_alignment,
    effective_rank,
    label_vector,
    layerwise_tangent_kernels,
    tangent_kernel_diagonal,
    trace_ratios,
)
from jacspec.matrix_free import STRUCTURED_FACTOR_BYTES
from jacspec.memory import (
    DEFAULT_MAX_MEMORY,
    budget_argument,
    check_memory,
    forward_bytes_per_example,
    parse_memory,
)
from jacspec.probes.base import Probe

__all__ = ["DEFAULT_TRACE_KS", "TangentComplexity", "TangentKernel", "complexity_measure", "kernel_eigenvalues"]

DEFAULT_TRACE_KS = (1, 2, 5, 10, 20, 40, 80, 160)
_FLOAT64_EIGEN_LIMIT = 6000  # kernels up to this size are diagonalised in float64
_AUTO_DENSE_LIMIT = 4000  # method="auto": dense up to this n·c (its eigendecomposition takes seconds), then lanczos


def kernel_eigenvalues(kernel: torch.Tensor) -> np.ndarray:
    """Eigenvalues of a symmetric kernel, descending, as float64 (float64 decomposition up to 6000 rows).

    The decomposition runs on torch's threads (``torch.set_num_threads``): measured on the 2-core machine,
    a 1000 × 1000 float64 ``eigvalsh`` takes 65 ms on 2 threads and 111 ms on one (float32: 40 and 54 ms).
    On a machine whose cores are oversubscribed, a multi-threaded LAPACK call can be much slower; set
    ``torch.set_num_threads(1)`` there.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.tangent_kernel import kernel_eigenvalues
    >>> kernel_eigenvalues(torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
    array([3., 1.])
    """
    k = kernel.detach()
    if k.shape[0] <= _FLOAT64_EIGEN_LIMIT:
        k = k.double()
    k = (k + k.T) / 2
    values = torch.linalg.eigvalsh(k)
    return values.cpu().numpy().astype(np.float64)[::-1].copy()


def _n_layers(model: nn.Module) -> int:
    """Modules owning a trainable parameter: the number of layer kernels the dense method forms."""
    return max(1, len({owner_of(name) for name in trainable_parameters(model)}))


def _finite_or_nan(
    fn: Callable[..., Any], kernel: torch.Tensor, size: int | None, *args: Any, finite: bool = False
) -> Any:
    """``fn(kernel, *args)``, or NaN (``size`` NaNs for a spectrum) when the kernel has a NaN or inf entry.

    A non-finite kernel never reaches an eigendecomposition (LinAlgError) or a ratio (a silent NaN).
    ``finite=True`` skips the scan for a kernel known to be finite (a layer kernel of a finite total: in
    IEEE arithmetic a sum with a NaN or inf term is never finite).
    """
    if finite or bool(torch.isfinite(kernel).all()):
        return fn(kernel, *args)
    return np.full(size, np.nan) if size is not None else float("nan")


def _check_ks(trace_ks: Sequence[int]) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in trace_ks)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`trace_ks` must be a sequence of positive integers, but got {trace_ks!r}.") from err
    if not ks or any(k < 1 for k in ks) or any(int(k) != k for k in trace_ks):
        raise ValueError(f"`trace_ks` must be a non-empty sequence of positive integers, but got {trace_ks!r}.")
    return tuple(sorted(set(ks)))


def _attrs(long_name: str, units: str = "1") -> dict[str, str]:
    return {"long_name": long_name, "units": units}


class TangentKernel(Probe):
    """Spectrum and label alignment of the multiclass empirical tangent kernel, in total and per layer.

    On a batch of ``n`` examples with ``c`` outputs the probe forms the layer-wise kernels ``K^ℓ`` with
    :func:`jacspec.kernels.layerwise_tangent_kernels` (never the full ``n·c × P`` Jacobian) and
    ``K = Σ_ℓ K^ℓ``, rows ordered sample-major (``i·c + a``), then

    * eigenvalues ``λ_1 ≥ … ≥ λ_r`` of ``K`` (``r = n·c``; float64 decomposition),
    * effective rank ``exp(H(μ))``, ``μ_j = λ_j / Σ λ`` (Baratin 2021, eq. 5),
    * trace ratios ``T_k = Σ_{j<k} λ_j / Σ_j λ_j`` (eq. 6) and eigenvalue ratios ``λ_k / λ_1``,
    * ``CKA(K, Y Yᵀ) = Tr[K_c K_Y,c] / (‖K_c‖_F ‖K_Y,c‖_F)``, ``K_c = C K C``, ``C = I − 11ᵀ/r`` (eq. 7),
      with ``Y`` the concatenated one-hot labels, and the uncentered alignment of Fig. B.6,
    * per layer: trace, CKA, uncentered alignment, effective rank and largest eigenvalue of ``K^ℓ``.

    Parameters
    ----------
    layers : sequence of str, optional
        Module names whose own parameters define the kernel (default: every module with trainable
        parameters).
    center_features : bool
        Use centered tangent features ``Φ(x) − E_x Φ(x)`` (mean over the batch, per class). Default True,
        as every result of the thesis' chapter 4 (its early drop of the effective rank and rise of the CKA
        with the labels are seen on centered features); ``False``: the uncentered ``K = Φ Φᵀ`` (its Fig. B.6),
        the default of jacspec 0.1.
    trace_ks : sequence of int
        The ``k`` of the trace ratios and eigenvalue ratios; those larger than ``n·c`` are dropped.
    cka : bool, optional
        ``None`` (default): label alignment when ``y`` is given; ``True``: require ``y``; ``False``: skip.
    layer_statistics : bool
        Eigen-decompose every layer kernel for ``layer_effective_rank`` / ``layer_max_eigenvalue``
        (one extra decomposition per layer; default False since 0.2: opt in). Traces and CKA per layer
        need no decomposition and are always emitted.
    return_kernel : bool
        Add the kernel itself as ``kernel`` ``(kernel_row, kernel_column)``.
    max_examples : int, optional
        Use only the first ``max_examples`` examples of ``x`` (e.g. 100 as in the thesis when a
        Monitor passes a whole split).
    output : callable, optional
        ``output(model, x) -> (n, c)`` logits; default ``model(x)``.
    on_unsupported : {"raise", "warn", "ignore"}
        Parameters whose tangent features cannot be computed (see :mod:`jacspec.kernels`).
    method : {"auto", "dense", "lanczos"}
        ``"dense"``: form the ``(n·c)²`` kernels and diagonalise them (every variable below). ``"lanczos"``:
        matrix-free (:mod:`jacspec.matrix_free`): the kernel is never formed; only products ``K v = J(Jᵀv)``
        are used, for the top ``top_k`` eigenvalues (thick-restart block Lanczos), the exact trace and
        per-layer traces, the effective rank by stochastic Lanczos quadrature (16 probes; ``effective_rank_se``
        its standard error) and ``cka_labels`` (``cka_labels_se``); per-layer CKA, alignments, medians and
        the kernel itself are dense-only. ``"auto"`` (default): dense when ``n·c ≤ 4000`` and the kernels fit
        in ``max_memory``, else lanczos.
    top_k : int
        Eigenvalues computed by the lanczos method (at most ``n·c``).
    max_memory : int, float or str, optional
        Budget of the probe's largest buffers, bytes or a string such as ``"2GB"`` (default 2 GiB); a request
        above it is refused before anything is allocated, naming the ways out.
    memory_budget_gb : float, optional
        Deprecated (0.1): the budget in GiB; use ``max_memory``.
    mode : {"eval", "train"}
        Mode of the model during the measurement (BatchNorm in train mode is refused).
    implementation : {"auto", "structured", "functional"}
        Per-layer hooks (``"structured"``), exact per-example Jacobians through ``torch.func``
        (``"functional"``: any model, tied weights, Hugging Face transformers, LSTM/GRU) or the first
        when it is known to be exact (``"auto"``, default; see :mod:`jacspec.kernels` for when which).

    Notes
    -----
    Emitted variables (``units`` is ``"1"`` for ratios, otherwise the squared unit of the output
    per squared parameter unit, written ``"output**2"``):

    ``eigenvalues`` ``(eigen,)``, ``effective_rank`` ``()``, ``trace_ratio`` ``(k,)``,
    ``eigenvalue_ratio`` ``(k,)``, ``max_eigenvalue``, ``mean_eigenvalue``, ``median_eigenvalue``,
    ``trace`` ``()``; with labels ``cka_labels``, ``alignment_labels`` ``()``; per layer
    ``layer_trace``, ``layer_cka_labels``, ``layer_alignment_labels``, ``layer_effective_rank``,
    ``layer_max_eigenvalue`` ``(layer,)``; ``kernel`` ``(kernel_row, kernel_column)`` on request.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes import TangentKernel
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    >>> ds = TangentKernel().measure(model, torch.randn(10, 4), torch.randint(0, 3, (10,)))
    >>> ds["eigenvalues"].sizes["eigen"], list(ds["layer"].values)
    (30, ['0', '2'])
    >>> 1 <= float(ds["effective_rank"]) <= 30 and 0 <= float(ds["cka_labels"]) <= 1
    True
    """

    name = "tangent_kernel"

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        center_features: bool = True,
        trace_ks: Sequence[int] = DEFAULT_TRACE_KS,
        cka: bool | None = None,
        layer_statistics: bool = False,
        return_kernel: bool = False,
        max_examples: int | None = None,
        output: Callable[[nn.Module, Any], torch.Tensor] | None = None,
        on_unsupported: Literal["raise", "warn", "ignore"] = "raise",
        memory_budget_gb: float | None = None,
        mode: Literal["eval", "train"] = "eval",
        implementation: Literal["auto", "structured", "functional"] = "auto",
        method: Literal["auto", "dense", "lanczos"] = "auto",
        top_k: int = 100,
        max_memory: int | float | str | None = None,
    ):
        if method not in ("auto", "dense", "lanczos"):
            raise ValueError(f"`method` must be 'auto', 'dense' or 'lanczos', but got {method!r}.")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"`top_k` must be a positive integer (eigenvalues to compute), but got {top_k!r}.")
        if method == "lanczos" and (return_kernel or layers is not None):
            option = "return_kernel=True" if return_kernel else "layers="
            raise ValueError(
                f"TangentKernel(method='lanczos') never forms the kernel, so {option} is not available; use "
                "method='dense' (and max_examples= to keep the kernel small)."
            )
        if memory_budget_gb is not None and max_memory is not None:
            raise ValueError(
                f"Pass the memory budget once: `max_memory`={max_memory!r} or the deprecated `memory_budget_gb`="
                f"{memory_budget_gb!r}, not both."
            )
        if memory_budget_gb is not None:
            warnings.warn(
                "TangentKernel(memory_budget_gb=...) is deprecated; use max_memory= (bytes or a string such as "
                f"'{memory_budget_gb:g}GiB').",
                DeprecationWarning,
                stacklevel=2,
            )
        self.method = method
        self.top_k = top_k
        if implementation not in ("auto", "structured", "functional"):
            raise ValueError(
                f"`implementation` must be 'auto', 'structured' or 'functional', but got {implementation!r}."
            )
        self.implementation = implementation
        if on_unsupported not in ("raise", "warn", "ignore"):
            raise ValueError(f"`on_unsupported` must be 'raise', 'warn' or 'ignore', but got {on_unsupported!r}.")
        if mode not in ("eval", "train"):
            raise ValueError(f"`mode` must be 'eval' or 'train', but got {mode!r}.")
        if cka not in (None, True, False):
            raise ValueError(f"`cka` must be None, True or False, but got {cka!r}.")
        if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
            raise ValueError(f"`max_examples` must be a positive integer or None, but got {max_examples!r}.")
        if memory_budget_gb is not None and (
            isinstance(memory_budget_gb, bool)
            or not isinstance(memory_budget_gb, (int, float))
            or memory_budget_gb <= 0
        ):
            raise ValueError(f"`memory_budget_gb` must be a positive number, but got {memory_budget_gb!r}.")
        budget = (
            int(memory_budget_gb * 2**30)
            if memory_budget_gb is not None
            else (DEFAULT_MAX_MEMORY if max_memory is None else parse_memory(max_memory))
        )
        self.max_memory = max_memory if memory_budget_gb is None else budget
        self.layers = None if layers is None else ([layers] if isinstance(layers, str) else list(layers))
        self.center_features = bool(center_features)
        self.trace_ks = _check_ks(trace_ks)
        self.cka = cka
        self.layer_statistics = bool(layer_statistics)
        self.return_kernel = bool(return_kernel)
        self.max_examples = max_examples
        self.output = output
        self.on_unsupported = on_unsupported
        self.memory_budget_gb = budget / 2**30  # what the kernel functions take
        self.mode = mode
        self._seen: dict[tuple, dict[str, Any]] = {}

    def measure(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> xr.Dataset:
        if self.cka is True and y is None:
            raise ValueError(
                "`y` (integer class labels of shape (n,)) is required by TangentKernel(cka=True), but got None."
            )
        if self.max_examples is not None and self.max_examples < x.shape[0]:
            x = x[: self.max_examples]
            y = None if y is None else y[: self.max_examples]
        from jacspec.engine.shared_pass import active_pass

        shared = active_pass(model, x) if self._shares(x) else None
        # what the last call on this model and input shape learnt: c, and whether "auto" had to take the
        # functional engine (always exact, so reusing that choice is safe; it saves the hooked forward pass)
        key = (id(model), tuple(x.shape[1:]), x.dtype)
        seen = self._seen.get(key, {})
        # one example's forward sizes every budget before anything large (or this step's shared pass)
        if shared is not None:
            c = shared.n_outputs()
        else:
            c = seen["c"] if "c" in seen else self._n_outputs(model, x)
        if self._choose_method(model, x.shape[0], c) == "lanczos":
            return self._measure_lanczos(model, x, y, c)
        self._check_dense_memory(model, x.shape[0], c)
        report: dict[str, Any] = {}
        reuse = self.implementation == "auto" and "functional_because" in seen and shared is None
        kernels = layerwise_tangent_kernels(
            model,
            x,
            layers=self.layers,
            output=self.output,
            on_unsupported=self.on_unsupported,
            memory_budget_gb=self.memory_budget_gb,
            implementation="functional" if reuse else self.implementation,
            report=report,
        )
        if reuse:
            report["functional_because"] = seen["functional_because"]
        n = x.shape[0]
        first = next(iter(kernels.values()))
        if first.shape[0] != n * c and "c" in seen:  # the model changed its outputs: forget what was seen
            self._seen.clear()
        c = first.shape[0] // n
        self._seen = {key: {"c": c}}
        if "functional_because" in report:
            self._seen[key]["functional_because"] = report["functional_because"]
        if self.center_features:
            kernels = {name: center_features(k, n, c) for name, k in kernels.items()}
        total = sum(kernels.values())
        nonfinite = int((~torch.isfinite(total)).sum())
        finite = nonfinite == 0  # then every layer kernel is finite too (a sum with a NaN/inf term is not)
        if nonfinite:
            self._warn_nonfinite(nonfinite, total.numel())
        eigenvalues = _finite_or_nan(kernel_eigenvalues, total, total.shape[0], finite=finite)
        r = eigenvalues.size
        ks = [k for k in self.trace_ks if k <= r]
        data: dict[str, Any] = {
            "eigenvalues": ("eigen", eigenvalues, _attrs("eigenvalues of the tangent kernel, descending", "output**2")),
            "effective_rank": ((), effective_rank(eigenvalues), _attrs("effective rank exp(H(mu)) (eq. 5)")),
            "trace_ratio": ("k", trace_ratios(eigenvalues, ks), _attrs("share of the trace in the top k eigenvalues")),
            "eigenvalue_ratio": (
                "k",
                eigenvalues[np.asarray(ks) - 1] / eigenvalues[0],
                _attrs("k-th over largest eigenvalue"),
            ),
            "max_eigenvalue": ((), eigenvalues[0], _attrs("largest eigenvalue", "output**2")),
            "mean_eigenvalue": ((), eigenvalues.mean(), _attrs("mean eigenvalue", "output**2")),
            "median_eigenvalue": ((), float(np.median(eigenvalues)), _attrs("median eigenvalue", "output**2")),
            "trace": ((), float(torch.trace(total).double()), _attrs("trace of the tangent kernel", "output**2")),
            "nonfinite_count": (
                (),
                nonfinite,
                _attrs("NaN or inf entries of the kernel (then every statistic is NaN)"),
            ),
        }
        names = list(kernels)
        data["layer_trace"] = (
            "layer",
            np.array([float(torch.trace(k).double()) for k in kernels.values()]),
            _attrs("trace of the layer-wise tangent kernel", "output**2"),
        )
        if self.layer_statistics:
            spectra = [_finite_or_nan(kernel_eigenvalues, k, k.shape[0], finite=finite) for k in kernels.values()]
            data["layer_effective_rank"] = (
                "layer",
                np.array([effective_rank(s) for s in spectra]),
                _attrs("effective rank of the layer-wise kernel"),
            )
            data["layer_max_eigenvalue"] = (
                "layer",
                np.array([s[0] for s in spectra]),
                _attrs("largest eigenvalue of the layer-wise kernel", "output**2"),
            )
        use_labels = y is not None and self.cka is not False
        if use_labels:
            y = check_labels(y, n, n_classes=c, probe=self.name)
            labels = label_vector(y, c).to(total.device)
            data["cka_labels"] = (
                (),
                _finite_or_nan(centered_kernel_alignment, total, None, labels, finite=finite),
                _attrs("CKA(K, YY^T) (eq. 7)"),
            )
            data["alignment_labels"] = (
                (),
                _finite_or_nan(alignment, total, None, labels, finite=finite),
                _attrs("uncentered alignment with YY^T"),
            )
            data["layer_cka_labels"] = (
                "layer",
                np.array(
                    [
                        _finite_or_nan(centered_kernel_alignment, k, None, labels, finite=finite)
                        for k in kernels.values()
                    ]
                ),
                _attrs("CKA of the layer-wise kernel with YY^T"),
            )
            data["layer_alignment_labels"] = (
                "layer",
                np.array([_finite_or_nan(alignment, k, None, labels, finite=finite) for k in kernels.values()]),
                _attrs("uncentered alignment of the layer-wise kernel with YY^T"),
            )
        coords: dict[str, Any] = {
            "eigen": ("eigen", np.arange(1, r + 1), {"long_name": "eigenvalue rank (1 = largest)"}),
            "k": ("k", np.asarray(ks, dtype=np.int64), {"long_name": "number of top eigenvalues"}),
            "layer": ("layer", np.asarray(names, dtype=object), {"long_name": "module name"}),
        }
        if self.return_kernel:
            data["kernel"] = (
                ("kernel_row", "kernel_column"),
                total.detach().double().cpu().numpy(),
                _attrs("tangent kernel, sample-major rows (i*c + a)", "output**2"),
            )
            sample = np.repeat(np.arange(n), c)
            klass = np.tile(np.arange(c), n)
            coords["row_sample"] = ("kernel_row", sample, {"long_name": "example index"})
            coords["row_class"] = ("kernel_row", klass, {"long_name": "output index"})
            coords["column_sample"] = ("kernel_column", sample, {"long_name": "example index"})
            coords["column_class"] = ("kernel_column", klass, {"long_name": "output index"})
        ds = xr.Dataset(data, coords=coords)
        ds.attrs.update(self._size_attrs(n, c, "dense"))
        ds.attrs.update(
            {
                "implementation": report["implementation"],
                "engine_method": report["method"],
                "parameters_used": report["parameters_used"],
                "parameters_skipped": report["parameters_skipped"],
            }
        )
        return ds

    def _warn_nonfinite(self, count: int, size: int) -> None:
        if getattr(self, "_warned_nonfinite", False):
            return  # once per probe: a diverged run would repeat it at every probed step
        self._warned_nonfinite = True
        warnings.warn(
            f"TangentKernel: {count} of {size} kernel entries are NaN or inf (non-finite weights, inputs or "
            "outputs: has training diverged?); this step's statistics are NaN and `nonfinite_count` says how many "
            "entries were bad. Further steps with the same problem are not reported again.",
            RuntimeWarning,
            stacklevel=4,
        )

    # -- the matrix-free path ----------------------------------------------------------------------

    def _shares(self, x: torch.Tensor) -> bool:
        return (
            self.output is None
            and self.mode == "eval"
            and self.method in ("auto", "dense")
            and self.implementation in ("auto", "structured")
            and (self.max_examples is None or self.max_examples >= x.shape[0])
        )

    def share(self, shared: Any, model: nn.Module, x: torch.Tensor) -> None:
        if self._shares(x):
            from jacspec.kernels import parametrised_modules

            def dense(n: int, c: int) -> bool:  # the factors are wanted only on the dense path
                return c >= 1 and self._choose_method(model, n, c) == "dense"

            modules = parametrised_modules(model, self.layers)
            shared.request_layer_factors(modules, self.on_unsupported, self.implementation == "auto", when=dense)

    def _n_outputs(self, model: nn.Module, x: torch.Tensor) -> int:
        was_training = model.training
        model.eval()  # one example through BatchNorm; the measurement's own mode checks come later
        try:
            with torch.no_grad():
                out = model(x[:1]) if self.output is None else self.output(model, x[:1])
        finally:
            model.train(was_training)
        return int(out.reshape(1, -1).shape[1]) if out.dim() == 2 and out.shape[0] == 1 else -1

    def _size_attrs(self, n: int, c: int, method: str) -> dict[str, Any]:
        return {
            "n_examples": n,
            "n_classes": c,
            "center_features": int(self.center_features),
            "kernel_size": n * c,
            "method": method,
        }

    def _check_budget(self, needed: int, what: str, ways_out: list[str]) -> None:
        shown = repr(self.max_memory) if self.max_memory is not None else "None (2 GiB)"
        check_memory(needed, int(self.memory_budget_gb * 2**30), what=what, ways_out=ways_out, shown=shown)

    def _choose_method(self, model: nn.Module, n: int, c: int) -> str:
        if self.method != "auto":
            return self.method
        if c < 1:
            return "dense"  # an output that is not (n, c): the dense path's checks explain it
        r = n * c
        dense_bytes = 8 * r * r * (_n_layers(model) + 3)  # the layer kernels, their sum and the eigendecomposition
        return "dense" if r <= _AUTO_DENSE_LIMIT and dense_bytes <= self.memory_budget_gb * 2**30 else "lanczos"

    def _check_dense_memory(self, model: nn.Module, n: int, c: int) -> None:
        if c < 1:
            return  # the kernel functions explain a badly shaped output
        r = n * c
        params = list(trainable_parameters(model).values())
        itemsize = params[0].element_size() if params else 4
        n_layers = _n_layers(model)
        self._check_budget(
            itemsize * r * r * n_layers,
            what=f"TangentKernel's {n_layers} layer kernel(s) of ({r}, {r}) (n·c = {n}·{c})",
            ways_out=["max_examples=", "method='lanczos' (matrix-free)", "fewer layers="],
        )

    def _measure_lanczos(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, c: int) -> xr.Dataset:
        from jacspec.matrix_free import MatrixFreeStatistics, matrix_free_statistics

        n = x.shape[0]
        r = n * c
        top_k = min(self.top_k, r) if self.method == "auto" else self.top_k
        if top_k > r:
            raise ValueError(
                f"`top_k`={self.top_k} is larger than the kernel's size n·c = {n}·{c} = {r}; pass top_k <= {r} "
                "(or method='dense', which computes all of them)."
            )
        block = min(r, top_k + max(c, 8))  # block_lanczos_top's block size
        basis_bytes = 8 * r * 4 * block  # the Lanczos basis (a few blocks of n·c × (top_k + c) float64 vectors)
        self._check_budget(
            basis_bytes,
            what=f"TangentKernel(method='lanczos')'s Krylov basis for n·c = {r} and top_k = {top_k}",
            ways_out=["a smaller top_k", "max_examples="],
        )
        use_labels = y is not None and self.cka is not False
        if use_labels:
            y = check_labels(y, n, n_classes=c, probe=self.name)
        with torch.no_grad():
            outputs = model(x) if self.output is None else self.output(model, x)
        nonfinite = int((~torch.isfinite(outputs)).sum())
        if nonfinite:  # Lanczos on a NaN operator would end in a LinAlgError: NaN statistics instead
            self._warn_nonfinite(nonfinite, outputs.numel())
            layers = list(dict.fromkeys(owner_of(name) for name in trainable_parameters(model)))
            stats = MatrixFreeStatistics(
                np.full(top_k, np.nan),
                math.nan,
                {m: math.nan for m in layers},
                math.nan,
                math.nan,
                math.nan if use_labels else None,
                math.nan if use_labels else None,
                0,
            )
        else:
            stats = matrix_free_statistics(
                model,
                x,
                y if use_labels else None,
                top_k=top_k,
                output=self.output,
                center_features=self.center_features,
                probes=16,
                steps=25,
                tol=1e-6,
                seed=0,
                # the structured products' cache only in what the budget leaves after the basis
                max_factor_bytes=min(STRUCTURED_FACTOR_BYTES, int(self.memory_budget_gb * 2**30) - basis_bytes),
                distributed=products_sharded(),  # under a Monitor on several ranks: rows sharded
            )
        eigenvalues = np.asarray(stats.eigenvalues, dtype=np.float64)
        k = eigenvalues.size
        ks = [kk for kk in self.trace_ks if kk <= k]
        trace = float(stats.trace)
        names = list(stats.layer_trace)
        data: dict[str, Any] = {
            "eigenvalues": (
                "eigen",
                eigenvalues,
                _attrs("top eigenvalues of the tangent kernel, descending", "output**2"),
            ),
            "effective_rank": ((), stats.effective_rank, _attrs("effective rank exp(H(mu)) (eq. 5), SLQ estimate")),
            "effective_rank_se": ((), stats.effective_rank_se, _attrs("standard error of the effective rank")),
            "trace_ratio": (
                "k",
                np.array([eigenvalues[:kk].sum() / trace for kk in ks]),
                _attrs("share of the trace in the top k eigenvalues"),
            ),
            "eigenvalue_ratio": (
                "k",
                eigenvalues[np.asarray(ks, dtype=int) - 1] / eigenvalues[0],
                _attrs("k-th over largest eigenvalue"),
            ),
            "max_eigenvalue": ((), eigenvalues[0], _attrs("largest eigenvalue", "output**2")),
            "mean_eigenvalue": ((), trace / r, _attrs("mean eigenvalue", "output**2")),
            "trace": ((), trace, _attrs("trace of the tangent kernel", "output**2")),
            "nonfinite_count": ((), nonfinite, _attrs("NaN or inf outputs (then every statistic is NaN)")),
            "layer_trace": (
                "layer",
                np.array([stats.layer_trace[m] for m in names]),
                _attrs("trace of the layer-wise tangent kernel", "output**2"),
            ),
        }
        if use_labels:
            data["cka_labels"] = ((), stats.cka_labels, _attrs("CKA(K, YY^T) (eq. 7)"))
            data["cka_labels_se"] = ((), stats.cka_labels_se, _attrs("standard error of CKA(K, YY^T)"))
        coords = {
            "eigen": ("eigen", np.arange(1, k + 1), {"long_name": "eigenvalue rank (1 = largest)"}),
            "k": ("k", np.asarray(ks, dtype=np.int64), {"long_name": "number of top eigenvalues"}),
            "layer": ("layer", np.asarray(names, dtype=object), {"long_name": "module name"}),
        }
        ds = xr.Dataset(data, coords=coords)
        ds.attrs.update({**self._size_attrs(n, c, "lanczos"), "kernel_products": int(stats.products)})
        return ds


def complexity_measure(update_norms: Sequence[float], feature_norms: Sequence[float]) -> float:
    """``C = Σ_t ‖δw_t‖₂ ‖Φ_t‖_F`` (Baratin 2021, eq. 18), ``‖Φ_t‖_F = √Tr K_t`` (footnote 12).

    Examples
    --------
    >>> from jacspec.probes.tangent_kernel import complexity_measure
    >>> complexity_measure(update_norms=[0.1, 0.2], feature_norms=[10.0, 5.0])  # 0.1·10 + 0.2·5
    2.0
    """
    u = np.asarray(update_norms, dtype=np.float64)
    f = np.asarray(feature_norms, dtype=np.float64)
    if u.shape != f.shape:
        raise ValueError(f"`update_norms` and `feature_norms` must have the same shape, got {u.shape} and {f.shape}.")
    return float((u * f).sum())


class TangentComplexity(Probe):
    """Running complexity measure ``C = Σ_t ‖δw_t‖₂ ‖Φ_t‖_F`` of a training run (Baratin 2021, eq. 18).

    Each call computes ``‖Φ_t‖_F = √Tr K_t`` on the batch (only the kernel diagonal, cheap) and the norm
    of the parameter change since the previous call *on the same batch*, ``‖δw‖ = ‖w_t − w_{t'}‖₂``,
    over the parameters of ``layers`` (default: all trainable parameters). The sum uses the left point
    of each interval: ``C += ‖w_t − w_{t'}‖₂ ‖Φ_{t'}‖_F``. Probed after every optimizer step this is
    exactly eq. 18 with the SGD updates ``δw_t``; probed every ``k`` steps, ``‖w_t − w_{t−k}‖`` replaces
    the sum of the ``k`` update norms, a lower bound (triangle inequality), so compare runs probed on
    the same schedule. State is kept per model and per batch (fingerprint of ``x``: shape, sum and sum
    of squares), so one probe can follow the train and test splits of a Monitor; :meth:`reset` clears it.

    Emits ``complexity`` (accumulated C), ``update_norm`` (‖δw‖ since the last call, 0 on the first),
    ``feature_norm`` (‖Φ_t‖_F) and ``trace`` (Tr K_t), all ``()``, and ``n_calls`` as an attribute.

    Parameters
    ----------
    layers : sequence of str, optional
        Module names whose parameters count (default: every trainable parameter).
    output : callable, optional
        ``output(model, x) -> (n, c)`` in place of the logits ``model(x)``.
    on_unsupported : {"raise", "warn", "ignore"}
        A module the kernel diagonal cannot read: see :class:`TangentKernel`.
    max_memory : int, float or str, optional
        Budget of the largest buffers (bytes or a string such as ``"2GB"``); None (default): no check. Before
        the diagonal is computed, ``n c S + 16 P`` (``S`` the bytes autograd saves for one example's backward
        pass, :func:`jacspec.memory.forward_bytes_per_example`, ``c`` outputs, ``P`` parameters: the weights'
        float64 copies) is checked; :class:`jacspec.memory.MemoryBudgetError` names the ways out.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.tangent_kernel import TangentComplexity
    >>> model, x = torch.nn.Linear(3, 2), torch.ones(4, 3)
    >>> probe = TangentComplexity()
    >>> float(probe.measure(model, x)["complexity"])
    0.0
    >>> with torch.no_grad():
    ...     model.bias += 1.0  # ‖δw‖ = √2, ‖Φ‖_F = √(4·2·(3 + 1)) = √32
    >>> round(float(probe.measure(model, x)["complexity"]), 6)
    8.0
    """

    name = "tangent_complexity"

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        output: Callable[[nn.Module, Any], torch.Tensor] | None = None,
        on_unsupported: Literal["raise", "warn", "ignore"] = "raise",
        max_memory: int | float | str | None = None,
    ):
        if on_unsupported not in ("raise", "warn", "ignore"):
            raise ValueError(f"`on_unsupported` must be 'raise', 'warn' or 'ignore', but got {on_unsupported!r}.")
        self.max_memory = budget_argument(max_memory)
        self.layers = None if layers is None else ([layers] if isinstance(layers, str) else list(layers))
        self.output = output
        self.on_unsupported = on_unsupported
        self._state: dict[tuple, dict[str, Any]] = {}

    def reset(self) -> None:
        """Forget the previous parameters and the accumulated complexity."""
        self._state.clear()

    def share(self, shared: Any, model: nn.Module, x: torch.Tensor) -> None:
        if self.output is None and self.max_memory is None and self.mode == "eval":
            from jacspec.kernels import parametrised_modules

            shared.request_layer_factors(parametrised_modules(model, self.layers), self.on_unsupported, True)

    def measure(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> xr.Dataset:
        from jacspec.kernels import parametrised_modules

        if self.max_memory is not None:
            saved, c = forward_bytes_per_example(model, x, self.output)
            n_weights = sum(p.numel() for p in model.parameters() if p.requires_grad)
            check_memory(
                x.shape[0] * c * saved + 16 * n_weights,
                self.max_memory,
                what=f"TangentComplexity's kernel diagonal on {x.shape[0]} examples ({c} outputs)",
                ways_out=["fewer examples (pass x[:m])"],
            )
        diagonals = tangent_kernel_diagonal(  # from this step's shared pass when there is one
            model, x, layers=self.layers, output=self.output, on_unsupported=self.on_unsupported
        )
        trace = float(sum(float(d.double().sum()) for d in diagonals.values()))
        feature_norm = float(np.sqrt(max(trace, 0.0)))
        modules = parametrised_modules(model, self.layers)
        # each Parameter object once (a tied weight is one set of numbers however many modules use it)
        weights = torch.cat(
            [p.detach().reshape(-1).double().cpu() for p in trainable_parameters(model, list(modules)).values()]
        )
        xd = x.detach().double()
        key = (id(model), tuple(x.shape), float(xd.sum()), float((xd**2).sum()))
        state = self._state.get(key)
        if state is None or state["weights"].shape != weights.shape:
            state = {"weights": weights, "feature_norm": feature_norm, "complexity": 0.0, "n_calls": 0}
            update_norm = 0.0
        else:
            update_norm = float(torch.linalg.vector_norm(weights - state["weights"]))
            state["complexity"] += update_norm * state["feature_norm"]
            state["weights"], state["feature_norm"] = weights, feature_norm
        state["n_calls"] += 1
        self._state[key] = state
        return xr.Dataset(
            {
                "complexity": ((), state["complexity"], _attrs("complexity sum_t |dw_t| |Phi_t|_F (eq. 18)", "output")),
                "update_norm": ((), update_norm, _attrs("parameter change since the previous call", "parameter")),
                "feature_norm": ((), feature_norm, _attrs("Frobenius norm of the tangent features", "output")),
                "trace": ((), trace, _attrs("trace of the tangent kernel", "output**2")),
            },
            attrs={"n_calls": state["n_calls"], "n_examples": int(x.shape[0])},
        )
