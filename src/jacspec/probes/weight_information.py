"""Information in the weights, I(w;D) = −½ Σ log α_i, closed form (Laplace) or variational, per layer.

Achille & Soatto 2018 (Achille & Soatto), section 4: Claim 1, Remark 4.3, Proposition 5; section 6.1 for the
random-label experiment. The maths is in :mod:`jacspec.information`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import xarray as xr
from torch import nn

from jacspec import information as info
from jacspec._validation import check_labels, check_positive_int, describe
from jacspec.distributed import products_sharded, sharded_hessian_diagonal
from jacspec.engine.parameters import owner_of, parameter_record
from jacspec.memory import budget_argument, check_memory, forward_bytes_per_example
from jacspec.probes.base import Probe, probe_generator

__all__ = ["WeightInformation", "parameter_layers"]

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def parameter_layers(model: nn.Module) -> dict[str, str]:
    """``{full parameter name: name of the module that owns it}`` in ``named_parameters()`` order.

    A parameter owned directly by the root module is attributed to ``"(root)"``; a tied Parameter
    appears once, under the module of its first name (as in ``named_parameters()``).

    Examples
    --------
    >>> import torch
    >>> parameter_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    {'0.weight': '0', '0.bias': '0'}
    """
    return {name: owner_of(name) for name, _ in model.named_parameters()}


class WeightInformation(Probe):
    """Information in the weights I(w;D) = −½ Σ_i log α_i (Achille & Soatto 2018, Claim 1), in total and per layer.

    The posterior is w = ε ⊙ ŵ, ε_i ~ logN(−α_i/2, α_i), centred at the model's current weights ŵ.
    α is obtained by one of two methods:

    ``method="laplace"`` (Proposition 5)
        α_i = β / (2 ŵ_i² H_ii), the minimiser of the second-order IB Lagrangian
        H_0 + Σ_i α_i ŵ_i² H_ii − (β/2) Σ_i log α_i, where H_ii is the diagonal of the Hessian of the
        **summed** loss over the given examples (``hessian="exact"``, ``"hutchinson"`` or ``"ggn"``).
        Also emits the flat-minimum bound of Proposition 5,
        I ≤ ½ K [log ‖ŵ‖² + log tr H − log(K² β/2)] (``nuclear_norm_bound``).
    ``method="variational"``
        log α minimising L = E_ε[Σ_n loss_n] + β·I(w;D) by the reparametrisation trick (local
        reparametrisation for Linear/Conv layers), ``n_steps`` Adam steps, on a frozen copy of the model.

    log α is clipped to ``log_alpha_range`` (default ``(-32, 2)``: above 2 a weight's posterior
    standard deviation exceeds 40 |ŵ_i|, pure noise, and zero-curvature weights would otherwise give
    α = ∞ under the improper prior; below −32, √α is finer than float32's relative precision); the number
    of clipped values is emitted. The additive constant C of Claim 1 is set to 0 (Remark 4.3): compare
    values between models of the same architecture, not in absolute terms.

    Parameters
    ----------
    beta : float
        The IB Lagrange multiplier β > 0 (L = H_{p,q}(y|x,w) + β I(w;D), eq. (3)). Changing β shifts the
        Laplace value by −½ K log β.
    method : {"laplace", "variational"}
        Closed form at the Laplace optimum, or the variational fit.
    hessian : {"exact", "hutchinson", "ggn"}
        Hessian diagonal for ``"laplace"`` (see :func:`jacspec.information.hessian_diagonal`).
        ``"exact"`` is exact for every architecture: ``nn.Linear`` layers (called once, 2-D input) by
        their layer-wise form (``out`` Hessian-vector products each), every other parameter by one
        Hessian-vector product per entry (refused above ``max_exact_parameters`` such entries).
        ``"ggn"``, the Gauss–Newton diagonal, is non-negative and equals the exact diagonal for ReLU
        networks; ``"hutchinson"`` is unbiased but noisy (entries may be negative, then clipped).
    loss : callable, optional
        ``loss(output, target) -> scalar`` summed over examples; default: summed cross-entropy with
        integer labels. With a custom loss ``y`` may be any tensor with one row per example.
    n_probes : int
        Rademacher probes for ``hessian="hutchinson"``.
    max_exact_parameters : int
        Largest number of parameters outside ``nn.Linear`` layers accepted by ``hessian="exact"``.
    n_steps, n_samples, lr, init_log_alpha : int, int, float, float
        Variational fit: Adam steps, draws of ε per step, initial learning rate (decays linearly to 0),
        starting log α.
    local_reparametrization : bool
        Variational fit: sample Linear/Conv outputs rather than their weights.
    log_alpha_range : (float, float)
        Clipping range of log α.
    include_frozen : bool
        Include parameters with ``requires_grad=False`` (by default they are skipped and listed in the
        ``skipped_parameters`` attribute, comma-separated).
    keep_log_alpha : bool
        Also emit every log α (``log_alpha``, dim ``parameter``).
    chunk_size : int
        Vectors (or examples, for GGN) per vectorised batch.
    seed : int
        Seed of the probe's generator (Hutchinson probes, variational noise); every call restarts it,
        so a call is a deterministic function of the model and data.
    progress : bool
        Show tqdm progress bars.
    max_memory : int, float or str, optional
        Budget of the largest buffers (bytes or a string such as ``"2GB"``); None (default): no check. Before
        the first derivative, with ``S`` the bytes autograd saves for one example's backward pass
        (:func:`jacspec.memory.forward_bytes_per_example`), ``P`` the parameters measured, ``b`` their bytes
        per entry, ``n`` examples, ``c`` outputs and ``v`` = ``chunk_size`` vectors (or examples) at once,
        the estimate is ``v (3nS + 3Pb) + 16P`` (``"exact"``, ``"hutchinson"``: Hessian-vector products of
        the whole batch, vectorised), ``v (cPb + cS) + 8nc² + 16P`` (``"ggn"``: per-example
        vector–Jacobian products) and ``2 n_samples · nS + 48P`` (``"variational"``: the sampled forward and
        backward passes, Adam's states); :class:`jacspec.memory.MemoryBudgetError` names the ways out.
    on_unsupported : {"raise", "warn", "ignore"}
        Accepted by every probe. Nothing is unsupported here: the Hessian and GGN diagonals are those of
        the total loss with respect to each Parameter object (a tied Parameter, or one a parent module
        reads, is differentiated as a whole, every use counted; attention runs on the math SDPA backend
        so that forward-over-reverse products work), so no parameter is ever skipped for its module.
        Parameters used and skipped (frozen) are recorded in the attributes ``parameters_used`` and
        ``parameters_skipped`` (JSON).

    Emits
    -----
    weight_information : ()
        I(w;D) = −½ Σ log α_i over the included parameters, nats.
    weight_information_per_sample : ()
        I(w;D) / N with N the number of examples given (section 6.1 states results per sample), nats.
    layer_weight_information : (layer,)
        −½ Σ log α_i over each module's own parameters (sums to ``weight_information``), nats.
    log_alpha_quantiles : (layer, quantile)
        Quantiles 0, 5, 25, 50, 75, 95, 100 % of each layer's clipped log α.
    layer_n_parameters, layer_n_clipped : (layer,)
        Parameters per layer and how many of their log α were clipped.
    n_clipped : ()
        Total number of clipped log α.
    hessian_trace, nuclear_norm_bound : ()
        (``laplace``) Σ H_ii and Proposition 5's upper bound, nats (NaN when Σ H_ii ≤ 0).
    lagrangian, expected_loss, information_term, lagrangian_history : (), (), (), (fit_step,)
        (``variational``) the final L, its two terms E[Σ loss] and β·I, and L per optimisation step.
    log_alpha : (parameter,)
        (``keep_log_alpha=True``) every clipped log α, with coords ``parameter_name`` and
        ``parameter_layer``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes import WeightInformation
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    >>> x, y = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,))
    >>> ds = WeightInformation(beta=1e-3).measure(model, x, y)
    >>> ds["layer_weight_information"].dims
    ('layer',)
    >>> bool(abs(ds["layer_weight_information"].sum() - ds["weight_information"]) < 1e-9)
    True
    """

    name = "weight_information"
    needs_labels = True

    def __init__(
        self,
        beta: float = 1e-3,
        method: Literal["laplace", "variational"] = "laplace",
        hessian: Literal["exact", "hutchinson", "ggn"] = "exact",
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        n_probes: int = 100,
        max_exact_parameters: int = 20_000,
        n_steps: int = 300,
        n_samples: int = 1,
        lr: float = 0.05,
        init_log_alpha: float = -6.0,
        local_reparametrization: bool = True,
        log_alpha_range: Sequence[float] = info.DEFAULT_LOG_ALPHA_RANGE,
        include_frozen: bool = False,
        keep_log_alpha: bool = False,
        chunk_size: int = 64,
        seed: int = 0,
        progress: bool = False,
        on_unsupported: Literal["raise", "warn", "ignore"] = "raise",
        max_memory: int | float | str | None = None,
    ):
        if on_unsupported not in ("raise", "warn", "ignore"):
            raise ValueError(f"`on_unsupported` must be 'raise', 'warn' or 'ignore', but got {on_unsupported!r}.")
        self.on_unsupported = on_unsupported
        self.max_memory = budget_argument(max_memory)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
            raise ValueError(f"`beta` must be a finite number > 0 (the IB Lagrange multiplier), but got {beta!r}.")
        if method not in ("laplace", "variational"):
            raise ValueError(f"`method` must be 'laplace' or 'variational', but got {method!r}.")
        if hessian not in ("exact", "hutchinson", "ggn"):
            raise ValueError(f"`hessian` must be one of 'exact', 'hutchinson' or 'ggn', but got {hessian!r}.")
        if loss is not None and not callable(loss):
            raise TypeError(
                f"`loss` must be a callable loss(output, target) -> scalar or None, but got {describe(loss)}."
            )
        for arg, value in (
            ("n_probes", n_probes),
            ("max_exact_parameters", max_exact_parameters),
            ("n_steps", n_steps),
            ("n_samples", n_samples),
            ("chunk_size", chunk_size),
        ):
            check_positive_int(value, arg)
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"`lr` must be a number > 0, but got {lr!r}.")
        bounds = tuple(float(v) for v in log_alpha_range)
        if len(bounds) != 2 or not bounds[0] < bounds[1] or not all(math.isfinite(v) for v in bounds):
            raise ValueError(
                f"`log_alpha_range` must be two finite numbers (low, high), low < high, but got {log_alpha_range!r}."
            )
        if not bounds[0] <= init_log_alpha <= bounds[1]:
            raise ValueError(f"`init_log_alpha` must lie in `log_alpha_range` {bounds}, but got {init_log_alpha!r}.")
        self.beta = float(beta)
        self.method = method
        self.hessian = hessian
        self.loss = loss
        self.n_probes = n_probes
        self.max_exact_parameters = max_exact_parameters
        self.n_steps = n_steps
        self.n_samples = n_samples
        self.lr = float(lr)
        self.init_log_alpha = float(init_log_alpha)
        self.local_reparametrization = bool(local_reparametrization)
        self.log_alpha_range = bounds
        self.include_frozen = bool(include_frozen)
        self.keep_log_alpha = bool(keep_log_alpha)
        self.chunk_size = chunk_size
        self.seed = seed
        self.progress = bool(progress)
        # with a custom loss the targets need not be class labels: the base class's label check is off
        self.needs_labels = loss is None

    def _check_memory(self, model: nn.Module, x: torch.Tensor, n_weights: int, itemsize: int) -> None:
        """Refuse, before the first derivative, a measurement whose estimated buffers exceed ``max_memory``."""
        saved, c = forward_bytes_per_example(model, x)
        n, p = int(x.shape[0]), n_weights
        if self.method == "variational":
            needed = 2 * self.n_samples * n * saved + 48 * p
            what = f"the variational fit ({self.n_samples} sample(s) of {n} examples, {p} parameters)"
            ways_out = ["fewer examples (pass x[:m])", "a smaller `n_samples=`"]
        elif self.hessian == "ggn":
            needed = self.chunk_size * (c * p * itemsize + c * saved) + 8 * n * c * c + 16 * p
            what = f"the GGN diagonal ({self.chunk_size} examples at once, {c} outputs, {p} parameters)"
            ways_out = ["a smaller `chunk_size=`"]
        else:
            vectors = self.chunk_size if self.hessian == "exact" else min(self.chunk_size, self.n_probes)
            needed = vectors * (3 * n * saved + 3 * p * itemsize) + 16 * p
            what = (
                f"the {self.hessian} Hessian diagonal ({vectors} Hessian-vector products of {n} examples at once, "
                f"{p} parameters)"
            )
            ways_out = ["a smaller `chunk_size=`", "fewer examples (pass x[:m])", 'hessian="ggn"']
        check_memory(needed, self.max_memory, what=f"WeightInformation's {what}", ways_out=ways_out)

    def measure(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> xr.Dataset:
        loss = info.cross_entropy_sum if self.loss is None else self.loss
        if y is None:
            raise ValueError(
                "WeightInformation needs targets `y` (labels missing): pass the labels of `x`, one per example "
                "(got None)."
            )
        if self.loss is None:
            y = check_labels(y, x.shape[0], probe=self.name)
        elif not isinstance(y, torch.Tensor) or y.shape[:1] != x.shape[:1]:
            raise ValueError(
                f"`y` must be a tensor with one row per example of `x` ({x.shape[0]}), but got {describe(y)}."
            )
        n_examples = int(x.shape[0])
        named = dict(model.named_parameters())
        skipped = [] if self.include_frozen else [name for name, p in named.items() if not p.requires_grad]
        params = {name: p for name, p in named.items() if name not in skipped}
        if not params:
            raise ValueError(
                f"`model` has no parameter that requires gradients (all of {sorted(named)} are frozen); pass "
                "include_frozen=True to measure them anyway."
            )
        if not all(p.is_floating_point() for p in params.values()):
            raise TypeError("WeightInformation needs floating-point parameters.")
        n_weights = sum(p.numel() for p in params.values())
        if self.max_memory is not None:
            self._check_memory(model, x, n_weights, next(iter(params.values())).element_size())
        with torch.no_grad():
            loss_at_mean = loss(model(x), y)
        if not isinstance(loss_at_mean, torch.Tensor) or loss_at_mean.numel() != 1:
            raise ValueError(
                f"`loss` must return a scalar tensor (the summed loss), but returned {describe(loss_at_mean)}."
            )
        if not torch.isfinite(loss_at_mean).all():
            raise ValueError(
                f"The loss at the model's weights ŵ is not finite ({float(loss_at_mean)}); I(w;D) is defined around "
                "a finite loss. Check the model's outputs and the targets."
            )
        device = next(iter(params.values())).device
        generator = probe_generator(self.seed, device=device)
        attrs: dict = {
            "method": self.method,
            "beta": self.beta,
            "n_examples": n_examples,
            "log_alpha_min": self.log_alpha_range[0],
            "log_alpha_max": self.log_alpha_range[1],
            "skipped_parameters": ", ".join(skipped),
            **parameter_record(model, list(params), dict.fromkeys(skipped, "frozen")),
            "constant_C": 0.0,
        }
        extra: dict[str, tuple] = {}
        if self.method == "laplace":
            attrs["hessian"] = self.hessian
            options = {
                "method": self.hessian,
                "n_probes": self.n_probes,
                "chunk_size": self.chunk_size,
                "max_exact_parameters": self.max_exact_parameters,
            }
            if products_sharded():  # under a Monitor on several ranks: each rank differentiates its rows
                diagonal = sharded_hessian_diagonal(model, x, y, params, generator=generator, **options)
            else:
                with torch.enable_grad():
                    diagonal = info.hessian_diagonal(
                        model, x, y, params, loss=loss, generator=generator, progress=self.progress, **options
                    )
            raw = {name: info.laplace_log_alpha(params[name], diagonal[name], self.beta) for name in params}
            trace = float(sum(d.sum() for d in diagonal.values()))
            sq_norm = float(sum((p.detach() ** 2).sum() for p in params.values()))
            extra["hessian_trace"] = ((), trace, {"long_name": "sum of the Hessian diagonal of the summed loss"})
            extra["nuclear_norm_bound"] = (
                (),
                info.nuclear_norm_bound(sq_norm, trace, n_weights, self.beta),
                {"long_name": "Proposition 5 upper bound on I(w;D) (unclipped)", "units": "nats"},
            )
        else:
            with torch.enable_grad():
                fit = info.fit_variational_log_alpha(
                    model,
                    x,
                    y,
                    params,
                    self.beta,
                    loss=loss,
                    n_steps=self.n_steps,
                    n_samples=self.n_samples,
                    lr=self.lr,
                    init_log_alpha=self.init_log_alpha,
                    log_alpha_range=self.log_alpha_range,
                    local_reparametrization=self.local_reparametrization,
                    generator=generator,
                    progress=self.progress,
                )
            raw = fit["log_alpha"]
            attrs["n_skipped_fit_steps"] = fit["n_skipped_steps"]
            extra["lagrangian"] = (
                (),
                fit["lagrangian"],
                {"long_name": "IB Lagrangian E[sum loss] + beta I(w;D)", "units": "nats"},
            )
            extra["expected_loss"] = (
                (),
                fit["expected_loss"],
                {"long_name": "expected summed loss under the posterior", "units": "nats"},
            )
            extra["information_term"] = (
                (),
                self.beta * fit["information"],
                {"long_name": "beta I(w;D)", "units": "nats"},
            )
            extra["lagrangian_history"] = (
                ("fit_step",),
                np.asarray(fit["history"], dtype=np.float64),
                {"long_name": "IB Lagrangian estimate at each optimisation step", "units": "nats"},
            )
        return self._dataset(model, params, raw, n_examples, extra, attrs)

    def _dataset(self, model, params, raw_log_alpha, n_examples, extra, attrs) -> xr.Dataset:
        owners = parameter_layers(model)
        layers: list[str] = []
        for name in params:
            if owners[name] not in layers:
                layers.append(owners[name])
        per_layer: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
        clipped_per_layer = dict.fromkeys(layers, 0)
        flat_values, flat_names, flat_layers = [], [], []
        for name in params:
            clipped, count = info.clip_log_alpha(raw_log_alpha[name], self.log_alpha_range)
            values = clipped.detach().reshape(-1).to("cpu", torch.float64)
            per_layer[owners[name]].append(values)
            clipped_per_layer[owners[name]] += count
            if self.keep_log_alpha:
                flat_values.append(values.numpy())
                flat_names += [name] * values.numel()
                flat_layers += [owners[name]] * values.numel()
        layer_info = np.array([float(-0.5 * torch.cat(per_layer[layer]).sum()) for layer in layers])
        # numpy: torch.quantile refuses inputs above 2**24 elements
        quantiles = np.stack([np.quantile(torch.cat(per_layer[layer]).numpy(), QUANTILES) for layer in layers])
        total = float(layer_info.sum())
        data = {
            "weight_information": (
                (),
                total,
                {"long_name": "information in the weights -1/2 sum log alpha", "units": "nats"},
            ),
            "weight_information_per_sample": (
                (),
                total / n_examples,
                {"long_name": "information in the weights per training example", "units": "nats"},
            ),
            "layer_weight_information": (
                ("layer",),
                layer_info,
                {"long_name": "information in the layer's weights -1/2 sum log alpha", "units": "nats"},
            ),
            "log_alpha_quantiles": (
                ("layer", "quantile"),
                quantiles,
                {"long_name": "quantiles of the clipped log alpha of the layer's weights", "units": "1"},
            ),
            "layer_n_parameters": (
                ("layer",),
                np.array([sum(v.numel() for v in per_layer[layer]) for layer in layers], dtype=np.int64),
                {"long_name": "number of parameters", "units": "1"},
            ),
            "layer_n_clipped": (
                ("layer",),
                np.array([clipped_per_layer[layer] for layer in layers], dtype=np.int64),
                {"long_name": "number of log alpha clipped to log_alpha_range", "units": "1"},
            ),
            "n_clipped": (
                (),
                np.int64(sum(clipped_per_layer.values())),
                {"long_name": "number of log alpha clipped to log_alpha_range", "units": "1"},
            ),
        }
        data.update(extra)
        coords = {
            "layer": ("layer", np.asarray(layers, dtype=object), {"long_name": "module name"}),
            "quantile": ("quantile", np.asarray(QUANTILES, dtype=np.float64), {"long_name": "quantile level"}),
        }
        if self.keep_log_alpha:
            data["log_alpha"] = (
                ("parameter",),
                np.concatenate(flat_values),
                {"long_name": "log alpha, log-variance of the multiplicative log-normal noise", "units": "1"},
            )
            coords["parameter_name"] = (
                "parameter",
                np.asarray(flat_names, dtype=object),
                {"long_name": "parameter tensor"},
            )
            coords["parameter_layer"] = (
                "parameter",
                np.asarray(flat_layers, dtype=object),
                {"long_name": "module name"},
            )
        return xr.Dataset(data, coords=coords, attrs=attrs)
