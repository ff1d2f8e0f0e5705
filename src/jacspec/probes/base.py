"""The probe protocol: a :class:`Probe` measures a model and returns an ``xarray.Dataset``.

A probe is a small stateful object (its configuration, perhaps a warm start) whose ``measure`` calls
plain functions that hold the maths. The base class makes every subclass, built in or written by a
user, *non-intrusive*: ``measure`` is wrapped so that it

* checks its arguments (a module with parameters, a tensor input, labels when ``needs_labels``),
* puts the model in the probe's ``mode`` (``"eval"`` by default) for the measurement,
* restores afterwards, even when the probe raises: each module's ``training`` flag, every parameter's
  ``requires_grad``, ``.grad`` (values and identity), the parameter values and buffers, forward and
  backward hooks added during the call, the grad-mode switch and the global torch, numpy and Python
  RNG states,
* checks that the result is an ``xarray.Dataset`` and adds provenance attributes (jacspec and torch
  versions, the probe's name and configuration as JSON).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import random
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import xarray as xr
from torch import nn

from jacspec._attrs import netcdf_safe, provenance, to_json
from jacspec._validation import check_input, check_labels, check_model, describe

__all__ = ["Probe", "preserve_model_state", "probe_generator"]

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
)

_local = threading.local()


def _hook_keys(model: nn.Module) -> list[tuple[nn.Module, str, set]]:
    saved = []
    for module in model.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if hooks is not None:
                saved.append((module, attr, set(hooks.keys())))
    return saved


def _global_hook_keys() -> list[tuple[dict, set]]:
    from torch.nn.modules import module as module_mod

    saved = []
    for attr in dir(module_mod):
        if attr.startswith("_global_") and attr.endswith("hooks"):
            hooks = getattr(module_mod, attr)
            if isinstance(hooks, dict):
                saved.append((hooks, set(hooks.keys())))
    return saved


class ModelState:
    """A snapshot of ``model`` and the global RNGs, put back by :meth:`restore` (see :func:`preserve_model_state`).

    Parameters
    ----------
    model : nn.Module
        The model to snapshot.
    values : bool
        Also copy parameter values, ``.grad`` and buffers (False: only flags, hooks, RNGs, grad mode and
        default dtype, the cheap part; the Monitor copies the values once per step, not once per probe).
    """

    def __init__(self, model: nn.Module, values: bool = True):
        self.training = [(module, module.training) for module in model.modules()]
        self.params = list(model.parameters())
        self.requires_grad = [p.requires_grad for p in self.params]
        self.values = [p.detach().clone() for p in self.params] if values else None
        self.grads = (
            [(p.grad, None if p.grad is None else p.grad.detach().clone()) for p in self.params] if values else None
        )
        self.buffers = [(b, b.detach().clone()) for b in model.buffers()] if values else None
        self.hooks = _hook_keys(model)
        self.global_hooks = _global_hook_keys()
        self.grad_enabled = torch.is_grad_enabled()
        self.default_dtype = torch.get_default_dtype()
        self.torch_rng = torch.get_rng_state()
        self.cuda_rng = (
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        )
        self.numpy_rng = np.random.get_state()
        self.python_rng = random.getstate()

    def restore(self) -> None:
        """Put everything in the snapshot back (values only if they were copied)."""
        for hook_dict, keys in self.global_hooks:
            for key in [k for k in hook_dict if k not in keys]:
                del hook_dict[key]
        for module, attr, keys in self.hooks:
            hook_dict = getattr(module, attr)
            for key in [k for k in hook_dict if k not in keys]:
                del hook_dict[key]
        with torch.no_grad():
            for k, (p, flag) in enumerate(zip(self.params, self.requires_grad)):
                if self.values is not None and not torch.equal(p, self.values[k]):
                    p.copy_(self.values[k])
                p.requires_grad_(flag)
            for p, (grad, saved) in zip(self.params, self.grads or []):
                if grad is None:
                    p.grad = None
                else:
                    if not torch.equal(grad, saved):
                        grad.copy_(saved)
                    p.grad = grad
            for buffer, saved in self.buffers or []:
                if not torch.equal(buffer, saved):
                    buffer.copy_(saved)
        for module, flag in self.training:
            module.training = flag
        torch.set_grad_enabled(self.grad_enabled)
        torch.set_default_dtype(self.default_dtype)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        np.random.set_state(self.numpy_rng)
        random.setstate(self.python_rng)


@contextlib.contextmanager
def step_snapshot(model: nn.Module) -> Iterator[ModelState]:
    """One snapshot of ``model`` for a whole Monitor step; restored on exit, also on error.

    Inside the block, the built-in probes measured in eval mode copy only the cheap part of the state
    (flags, hooks, RNGs) instead of every parameter, gradient and buffer. The Monitor calls
    :meth:`ModelState.restore` after a probe that raised, so the next probe starts from the same model.
    """
    state = ModelState(model)
    previous = getattr(_local, "step_model", None)
    _local.step_model = model
    try:
        yield state
    finally:
        _local.step_model = previous
        state.restore()


def _values_held_by_step(model: nn.Module, probe: Any) -> bool:
    return (
        getattr(_local, "step_model", None) is model
        and getattr(probe, "mode", "eval") == "eval"
        and type(probe).__module__.startswith("jacspec.")
    )


@contextlib.contextmanager
def preserve_model_state(model: nn.Module, mode: str | None = "eval", *, values: bool = True) -> Iterator[nn.Module]:
    """Context manager that leaves ``model`` and the global RNGs exactly as it found them.

    Parameters
    ----------
    model : nn.Module
        The model to protect.
    mode : {"eval", "train", None}
        Mode to put the model in inside the block (``None`` keeps the current mode).
    values : bool
        Copy parameter values, ``.grad`` and buffers too (default). False leaves them to an enclosing
        snapshot (the Monitor's :func:`step_snapshot`).

    Notes
    -----
    Restored on exit, also on error: module ``training`` flags, ``requires_grad``, parameter values,
    ``.grad`` (same tensor object, same values), buffers (e.g. BatchNorm running statistics), hooks
    added to any submodule or globally, ``torch.is_grad_enabled()``, the torch default dtype, and the
    torch (CPU and initialised CUDA devices), numpy and Python global RNG states.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.base import preserve_model_state
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)).train()
    >>> with preserve_model_state(model):
    ...     model.training
    False
    >>> model.training
    True
    """
    if mode not in ("eval", "train", None):
        raise ValueError(f"`mode` must be one of 'eval', 'train' or None, but got {mode!r}.")
    state = ModelState(model, values=values)
    try:
        if mode == "eval":
            model.eval()
        elif mode == "train":
            model.train()
        yield model
    finally:
        state.restore()


def probe_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A private ``torch.Generator`` for a probe's randomness (never the global RNG).

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.base import probe_generator
    >>> state = torch.get_rng_state()
    >>> _ = torch.randn(3, generator=probe_generator(0))
    >>> bool(torch.equal(state, torch.get_rng_state()))  # the global RNG is untouched
    True
    """
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


def _first_layer_expectation(model: nn.Module) -> str | None:
    """What the model's first layer with a readable input size expects, in words (None if none found)."""
    for name, module in model.named_modules():
        label = name or "(root)"
        if isinstance(module, nn.Linear):
            return f"its first layer {label!r} (Linear) expects inputs whose last dimension is {module.in_features}"
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            dims = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[type(module)]
            return (
                f"its first layer {label!r} ({type(module).__name__}) expects inputs of shape "
                f"(n, {module.in_channels}, {', '.join('*' * dims)})"
            )
        if isinstance(module, nn.Embedding):
            return f"its first layer {label!r} (Embedding) expects integer indices in [0, {module.num_embeddings})"
        if isinstance(module, (nn.RNNBase,)):
            return f"its first layer {label!r} ({type(module).__name__}) expects features of size {module.input_size}"
    return None


def model_input_error(model: nn.Module, x: torch.Tensor, err: BaseException) -> ValueError | None:
    """A clear ValueError when ``model`` itself cannot take ``x`` (the error ``err`` came from its forward).

    The model is called once more on the first two examples, without gradients; if that plain forward fails
    too, the failure is the input's, not the probe's, and the message names ``x``, its shape and what the
    model's first layer expects. Returns None when the plain forward works (the error is then re-raised as
    it was).
    """
    text = str(err).lower()
    if not any(word in text for word in ("shape", "size", "dimension", "expected", "channels", "mat1", "dtype")):
        return None
    try:
        with torch.no_grad():
            model(x[:2])
    except Exception as plain:  # noqa: BLE001 - any failure of the plain forward is the input's
        expected = _first_layer_expectation(model)
        return ValueError(
            f"`x` of shape {tuple(x.shape)} and dtype {x.dtype} cannot be fed to the model: its forward raised "
            f"{type(plain).__name__}: {str(plain).splitlines()[0] if str(plain) else ''}"
            + (f"; {expected}" if expected else "")
            + ". Pass `x` as the model takes it, with examples along the first dimension."
        )
    return None


def _guarded(measure):
    """Wrap a subclass's ``measure`` with argument checks, state restoration and provenance."""

    @functools.wraps(measure)
    def wrapper(self: Probe, model: nn.Module, x: Any = None, y: Any = None, **kwargs: Any) -> xr.Dataset:
        depth = getattr(_local, "depth", 0)
        if depth > 0:  # a probe calling another probe's measure: the outer call guards
            return measure(self, model, x, y, **kwargs)
        check_model(model, need_parameters=self.needs_parameters)
        if x is not None:
            x = check_input(x, model, need_float=self.needs_input_grad)
            if (x.is_floating_point() or x.is_complex()) and not bool(torch.isfinite(x).all()):
                bad = int((~torch.isfinite(x)).sum())
                raise ValueError(
                    f"`x` must be finite, but holds {bad} non-finite value(s) (NaN or inf) out of {x.numel()}; "
                    f"probe {self.name!r} needs finite inputs. Drop or repair those examples "
                    "(torch.isfinite(x).all(dim=...))."
                )
        elif self.needs_input:
            raise ValueError(
                f"Probe {self.name!r} needs an input batch: pass `x`, a tensor with examples along the "
                "first dimension (got None)."
            )
        if self.needs_labels:
            y = check_labels(y, None if x is None else x.shape[0], probe=self.name)
        elif y is not None:
            if not isinstance(y, torch.Tensor):
                raise TypeError(f"`y` must be a torch.Tensor or None, but got {describe(y)}.")
            if x is not None and y.shape[:1] != x.shape[:1]:
                raise ValueError(
                    f"`y` must have one entry per example of `x` ({x.shape[0]}), but got shape {tuple(y.shape)}."
                )
        if y is not None and x is not None:
            y = y.to(x.device)
        _local.depth = depth + 1
        try:
            values = not _values_held_by_step(model, self)  # the Monitor's step snapshot holds them
            with preserve_model_state(model, mode=getattr(self, "mode", "eval"), values=values):
                try:
                    result = measure(self, model, x, y, **kwargs)
                except RuntimeError as err:
                    input_error = None if x is None else model_input_error(model, x, err)
                    if input_error is not None:
                        raise input_error from err
                    raise
                except IndexError as err:
                    if y is None or x is None or "out of bounds" not in str(err):
                        raise
                    with torch.no_grad():
                        n_classes = model(x[:1]).shape[-1]
                    raise ValueError(
                        f"`y` holds labels in [{int(y.min())}, {int(y.max())}], but the model has {n_classes} "
                        f"outputs, so labels must lie in [0, {n_classes}). Check the labels or the output layer."
                    ) from err
        finally:
            _local.depth = depth
        if not isinstance(result, xr.Dataset):
            raise TypeError(
                f"{type(self).__name__}.measure must return an xarray.Dataset, but returned {describe(result)}."
            )
        attrs = dict(provenance())
        attrs["probe"] = self.name
        attrs["probe_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        attrs["probe_config"] = to_json(self.config())
        attrs.update(result.attrs)
        result.attrs = netcdf_safe(attrs)
        return result

    wrapper._jacspec_guarded = True  # type: ignore[attr-defined]
    return wrapper


if TYPE_CHECKING:
    from jacspec.engine.shared_pass import SharedPass


class Probe:
    """Base class of every probe.

    Subclasses set :attr:`name` and implement ``measure(model, x=None, y=None) -> xarray.Dataset``.
    The base class wraps ``measure`` so that it checks its arguments, runs in :attr:`mode` and leaves
    the model, its gradients, hooks and the global RNG states untouched (see
    :func:`preserve_model_state`), and adds provenance attributes to the result.

    Attributes
    ----------
    name : str
        Group name of the probe's results in a run file (snake_case).
    needs_input : bool
        ``measure`` needs an input batch ``x`` (False for weight-only probes such as SpectralNorm).
    needs_labels : bool
        ``measure`` needs integer class labels ``y``.
    needs_input_grad : bool
        ``x`` must be floating point (a derivative with respect to the input is taken).
    needs_parameters : bool
        The model must have parameters.
    mode : {"eval", "train"}
        Mode the model is put in for the measurement (restored afterwards).

    Examples
    --------
    >>> import xarray as xr
    >>> from jacspec.probes import Probe
    >>> class WeightNorm(Probe):
    ...     name = "weight_norm"
    ...     needs_input = False
    ...     def measure(self, model, x=None, y=None):
    ...         norms = [float(p.norm()) for p in model.parameters()]
    ...         return xr.Dataset({"weight_norm": ("parameter", norms)})
    """

    name: ClassVar[str] = "probe"
    needs_input: ClassVar[bool] = True
    needs_labels: ClassVar[bool] = False
    needs_input_grad: ClassVar[bool] = False
    needs_parameters: ClassVar[bool] = True
    mode: str = "eval"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        measure = cls.__dict__.get("measure")
        if measure is not None and not getattr(measure, "_jacspec_guarded", False):
            cls.measure = _guarded(measure)  # type: ignore[method-assign]

    def measure(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> xr.Dataset:
        """Measure ``model`` (on ``x``, with labels ``y`` where needed) and return a Dataset."""
        raise NotImplementedError(f"{type(self).__name__} must implement measure(model, x=None, y=None).")

    def config(self) -> dict[str, Any]:
        """The probe's configuration: the ``__init__`` arguments, read back from attributes."""
        config: dict[str, Any] = {}
        try:
            signature = inspect.signature(type(self).__init__)
        except (TypeError, ValueError):  # pragma: no cover
            return config
        for pname, param in signature.parameters.items():
            if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if hasattr(self, pname):
                config[pname] = getattr(self, pname)
            elif hasattr(self, "_" + pname):
                config[pname] = getattr(self, "_" + pname)
        return config

    def reset(self) -> None:
        """Forget state carried between calls (warm starts, accumulators). Default: nothing."""

    def share(self, shared: SharedPass, model: nn.Module, x: torch.Tensor) -> None:
        """Declare what this probe will take from the step's shared pass on ``(model, x)``. Default: nothing.

        The :class:`jacspec.Monitor` calls it before a step, once per split, and the probe's ``measure``
        then finds the pass with :func:`jacspec.engine.shared_pass.active_pass` (see that module). A probe
        that declares nothing (the default, and every user-written probe) measures on its own.
        """

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
