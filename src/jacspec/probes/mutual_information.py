"""Mutual information between two quantities of a network (input, labels, output, any module's activations).

Baratin 2021 (Baratin), chapter 5: MINE (Donsker–Varadhan bound with bias-corrected gradients, lines
1279–1332), MINE-f (eq. 8) and the k-nearest-neighbour estimator of Kraskov et al. (lines 1379–1390);
the information-bottleneck use, I(X;T) and I(T;Y) per layer T over training (lines 1506–1534), is
plotted by :func:`jacspec.plot.plot_information_plane`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from torch import nn

from jacspec.estimators import METHODS, as_samples, mutual_information
from jacspec.estimators.mine import StatisticsNetwork, mine
from jacspec.memory import budget_argument, check_memory
from jacspec.probes.base import Probe

__all__ = ["MutualInformation", "SPECIAL_ENDPOINTS", "capture"]

#: Endpoints that are not module names.
SPECIAL_ENDPOINTS = ("input", "label", "output")


def _module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def capture(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` once and return ``{"output": ..., module name: activation}``, each flattened to (n, -1).

    Activations are the outputs of the named modules (the first tensor when a module returns a tuple),
    captured by forward hooks that are removed in ``finally``, even when the forward pass raises.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.mutual_information import capture
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> {name: tuple(value.shape) for name, value in capture(model, torch.randn(5, 3), ["1"]).items()}
    {'1': (5, 4), 'output': (5, 2)}
    """
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)):
                output = next(o for o in output if isinstance(o, torch.Tensor))
            captured[name] = output.detach()

        return hook

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        with torch.no_grad():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    if isinstance(output, (tuple, list)):
        output = next(o for o in output if isinstance(o, torch.Tensor))
    captured["output"] = output.detach()
    missing = [name for name in names if name not in captured]
    if missing:
        raise ValueError(
            f"Module(s) {missing} did not run during model(x), so their activations could not be captured; "
            "choose modules that the forward pass calls."
        )
    n = x.shape[0]
    for name, value in captured.items():
        if value.dim() == 0 or value.shape[0] != n:
            cls = type(modules[name]).__name__ if name in modules else type(model).__name__
            raise ValueError(
                f"The output of module {name!r} ({cls}) has shape {tuple(value.shape)}, not one row per example "
                f"(n = {n} along dim 0), so its activations cannot be paired with the inputs. Choose a module "
                "whose output has examples first (e.g. an RNN with batch_first=True, or a wrapper module that "
                "transposes its output)."
            )
    return {name: value.reshape(value.shape[0], -1) for name, value in captured.items()}


class MutualInformation(Probe):
    r"""Mutual information I(A; B) in nats between two quantities of a network on a batch.

    Each endpoint of ``between`` is ``"input"`` (the batch ``x``), ``"label"`` (``y`` as one-hot
    vectors), ``"output"`` (``model(x)``) or a module name from ``model.named_modules()`` (that
    module's output activations, captured with forward hooks). Every endpoint is flattened to
    ``(n, features)`` and the pair is passed to :func:`jacspec.estimators.mutual_information`:

    * ``"mine"``: sup_θ E_P[T_θ] − log E_{P_A⊗P_B}[e^{T_θ}] (Donsker–Varadhan, Baratin 2021 eq. 11) with the
      bias-corrected gradient of Algorithm 1;
    * ``"mine_f"``: sup_θ E_P[T_θ] − E_{P_A⊗P_B}[e^{T_θ−1}] (eq. 8);
    * ``"ksg"``: Kraskov et al.'s estimator 1 (k = 3, max-norm). With ``"label"`` its input is
      discrete (ties are broken by the estimator's small noise), which biases it: prefer MINE there.

    Parameters
    ----------
    between : pair of str, or sequence of pairs
        The quantities, e.g. ``("input", "2")``; a list of pairs, e.g.
        ``[("input", "1"), ("1", "label"), ("input", "3"), ("3", "label")]`` for an information plane,
        measures all of them from one forward pass.
    method : {"mine", "mine_f", "ksg"}
        Estimator.
    options : dict, optional
        Estimator options (``iterations``, ``batch_size``, ``hidden``, ``learning_rate``, ``k``, ...).
    warm_start : bool
        Keep each pair's statistics network between calls and continue training it (MINE only): in a
        Monitor, each probed step starts from the previous step's network.
    warm_start_iterations : int, optional
        Training iterations of a warm-started call (default: the same as a cold call); must not exceed
        the cold ``iterations``. The history keeps the cold length, NaN-padded.
    seed : int
        Seed of the estimator's private generators.
    max_memory : int, float or str, optional
        Budget of the largest buffers (bytes or a string such as ``"2GB"``); None (default): no check. Before
        the activations of the batch are captured, ``3 · 8 · n · Σ d`` (each endpoint's ``d`` features per
        example, found from one example: the captured values, their float64 samples and the estimator's
        working copy) is checked against it; :class:`jacspec.memory.MemoryBudgetError` names the ways out.
    on_unsupported : {"raise", "warn", "ignore"}
        Accepted by every probe for a uniform interface; here
        activations are read by forward hooks on the named modules, whatever their class; a module whose
        output is not a tensor with examples along dim 0 raises ValueError naming it.

    Emits
    -----
    mutual_information : () or (pair,)
        Estimate in nats (``(pair,)`` when ``between`` is a list of pairs; coordinates ``pair``
        ``"a;b"``, ``first``, ``second``).
    mutual_information_history : (iteration,) or (pair, iteration)
        MINE/MINE-f: the minibatch bound at each training iteration, nats (NaN where not run).

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes import MutualInformation
    >>> g = torch.Generator().manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> x = torch.randn(500, 2, generator=g)
    >>> ds = MutualInformation(between=("input", "1"), method="ksg").measure(model, x)
    >>> ds["mutual_information"].attrs["units"]
    'nats'
    """

    name = "mutual_information"
    needs_input = True

    def __init__(
        self,
        between: tuple[str, str] | Sequence[tuple[str, str]] = ("input", "output"),
        method: str = "mine",
        options: dict[str, Any] | None = None,
        warm_start: bool = False,
        warm_start_iterations: int | None = None,
        seed: int = 0,
        on_unsupported: Literal["raise", "warn", "ignore"] = "raise",
        max_memory: int | float | str | None = None,
    ):
        if on_unsupported not in ("raise", "warn", "ignore"):
            raise ValueError(f"`on_unsupported` must be 'raise', 'warn' or 'ignore', but got {on_unsupported!r}.")
        self.on_unsupported = on_unsupported
        self.max_memory = budget_argument(max_memory)
        self._pairs, self._single = _parse_between(between)
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}, but got {method!r}.")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"`options` must be a dict of estimator options or None, but got {options!r}.")
        options = dict(options or {})
        if "seed" in options or "network" in options:
            raise ValueError("`options` may not contain 'seed' or 'network': pass `seed=` and `warm_start=` instead.")
        iterations = options.get("iterations", 3000)
        if warm_start_iterations is not None and (
            not isinstance(warm_start_iterations, int) or not 1 <= warm_start_iterations <= iterations
        ):
            raise ValueError(
                f"`warm_start_iterations` must be an integer in [1, iterations={iterations}], but got "
                f"{warm_start_iterations!r}."
            )
        self.between = between
        self.method = method
        self.options = options
        self.warm_start = bool(warm_start)
        self.warm_start_iterations = warm_start_iterations
        self.seed = seed
        self._networks: dict[tuple, StatisticsNetwork] = {}

    @property
    def needs_labels(self) -> bool:  # type: ignore[override]
        return any("label" in pair for pair in self._pairs)

    def reset(self) -> None:
        """Forget the warm-start statistics networks."""
        self._networks.clear()

    def measure(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> xr.Dataset:
        endpoints = {name for pair in self._pairs for name in pair}
        modules = [name for name in endpoints if name not in SPECIAL_ENDPOINTS]
        valid = _module_names(model)
        unknown = sorted(name for name in modules if name not in valid)
        if unknown:
            raise ValueError(
                f"`between` names module(s) {unknown} that do not exist in the model; valid endpoints are "
                f"{list(SPECIAL_ENDPOINTS)} and the module names {valid}."
            )
        if self.max_memory is not None:
            one = capture(model, x[:1], modules)
            one["input"] = x[:1].reshape(1, -1)
            features = {name: one[name].shape[1] for name in endpoints if name in one}
            if "label" in endpoints:
                features["label"] = int(y.max()) + 1
            total = sum(features.values())
            check_memory(
                3 * 8 * x.shape[0] * total,
                self.max_memory,
                what=(
                    f"MutualInformation's samples of {x.shape[0]} examples "
                    f"({', '.join(f'{name!r}: {d}' for name, d in sorted(features.items()))} features)"
                ),
                ways_out=["fewer examples (pass x[:m])", "endpoints with fewer features (a narrower layer)"],
            )
        values = capture(model, x, modules)
        values["input"] = x.reshape(x.shape[0], -1)
        if "label" in endpoints:
            values["label"] = nn.functional.one_hot(y.long(), int(y.max()) + 1)
        cold_iterations = self.options.get("iterations", 3000)
        estimates, histories = [], []
        for first, second in self._pairs:
            a = as_samples(values[first], _argument(first))
            b = as_samples(values[second], _argument(second))
            if self.method == "ksg":
                ds = mutual_information(a, b, method="ksg", seed=self.seed, **self.options)
                estimates.append(float(ds["mutual_information"]))
                continue
            options = dict(self.options)
            key = (first, second, a.shape[1], b.shape[1])
            if self.warm_start and key in self._networks:
                options["network"] = self._networks[key]
                if self.warm_start_iterations is not None:
                    options["iterations"] = self.warm_start_iterations
            result = mine(a, b, objective="dv" if self.method == "mine" else "f", seed=self.seed, **options)
            if self.warm_start:
                self._networks[key] = result.network
            estimates.append(result.mutual_information)
            history = np.full(cold_iterations, np.nan)
            run = result.history[:cold_iterations]
            history[: run.size] = run
            histories.append(history)
        units = {"units": "nats"}
        long_name = f"mutual information estimated by {self.method}"
        variables: dict[str, Any] = {}
        coords: dict[str, Any] = {}
        if self._single:
            variables["mutual_information"] = ((), np.float64(estimates[0]), {"long_name": long_name, **units})
            if histories:
                variables["mutual_information_history"] = (
                    "iteration",
                    histories[0],
                    {"long_name": "minibatch bound during training", **units},
                )
        else:
            variables["mutual_information"] = ("pair", np.asarray(estimates), {"long_name": long_name, **units})
            if histories:
                variables["mutual_information_history"] = (
                    ("pair", "iteration"),
                    np.stack(histories),
                    {"long_name": "minibatch bound during training", **units},
                )
            coords["pair"] = ("pair", np.asarray([f"{a};{b}" for a, b in self._pairs], dtype=object))
            coords["first"] = ("pair", np.asarray([a for a, _ in self._pairs], dtype=object))
            coords["second"] = ("pair", np.asarray([b for _, b in self._pairs], dtype=object))
        if histories:
            coords["iteration"] = ("iteration", np.arange(cold_iterations))
        attrs: dict[str, Any] = {"method": self.method, "n_samples": int(x.shape[0])}
        if self._single:
            attrs["first"], attrs["second"] = self._pairs[0]
        return xr.Dataset(variables, coords=coords, attrs=attrs)


def _argument(endpoint: str) -> str:
    """How an endpoint is named in error messages."""
    return {"input": "x", "label": "y", "output": "model(x)"}.get(endpoint, f"activations of module {endpoint!r}")


def _parse_between(between: Any) -> tuple[list[tuple[str, str]], bool]:
    def is_pair(value: Any) -> bool:
        return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, str) for v in value)

    if is_pair(between):
        pairs, single = [tuple(between)], True
    elif isinstance(between, (tuple, list)) and between and all(is_pair(p) for p in between):
        pairs, single = [tuple(p) for p in between], False
    else:
        raise ValueError(
            "`between` must be a pair of endpoint names such as ('input', '2') or a non-empty list of such "
            f"pairs; each endpoint is 'input', 'label', 'output' or a module name; but got {between!r}."
        )
    for a, b in pairs:
        if a == b:
            raise ValueError(f"`between` pairs need two different endpoints, but got ({a!r}, {b!r}).")
    return pairs, single
