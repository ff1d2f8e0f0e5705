"""Argument checks shared by probes, estimators and the monitor.

Every error names the argument, states the rule and shows the value given, and says the fix where
there is one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = [
    "check_positive_int",
    "check_model",
    "check_input",
    "check_labels",
    "model_device",
    "model_dtype",
    "describe",
]


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__}"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {getattr(value, 'dtype', '?')}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def check_positive_int(value: Any, argument: str) -> int:
    """Check that ``value`` is a positive integer (``bool`` is not; numpy integers are) and return it."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{argument}` must be a positive integer, but got {value!r}.")
    return int(value)


def check_model(model: Any, *, argument: str = "model", need_parameters: bool = True) -> nn.Module:
    """Check that ``model`` is an ``nn.Module`` (with parameters when ``need_parameters``)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`{argument}` must be a torch.nn.Module, but got {describe(model)}.")
    if need_parameters and next(model.parameters(), None) is None:
        raise ValueError(
            f"`{argument}` must have at least one parameter, but {type(model).__name__} has none "
            "(model.parameters() is empty)."
        )
    return model


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU when it has neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """Floating dtype of the model's first floating parameter, or ``None``."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def check_input(
    x: Any,
    model: nn.Module | None = None,
    *,
    argument: str = "x",
    need_float: bool = False,
    min_dim: int = 1,
) -> torch.Tensor:
    """Check a probe input and move it to the model's device.

    Parameters
    ----------
    x : torch.Tensor
        The input batch, first dimension = examples.
    model : nn.Module, optional
        When given, a floating ``x`` must have the model's floating dtype.
    need_float : bool
        Require a floating-point ``x`` (a Jacobian with respect to the input needs one).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"`{argument}` must be a torch.Tensor with examples along the first dimension, but got "
            f"{describe(x)}. Convert it with torch.as_tensor(...)."
        )
    if x.dim() < min_dim:
        raise ValueError(
            f"`{argument}` must have at least {min_dim} dimension(s) (examples first), but got shape {tuple(x.shape)}."
        )
    if x.shape[0] == 0:
        raise ValueError(f"`{argument}` must hold at least one example, but got shape {tuple(x.shape)}.")
    if need_float and not x.is_floating_point():
        raise TypeError(
            f"`{argument}` must be floating point: no Jacobian exists with respect to an input of dtype "
            f"{x.dtype}. Pass a float tensor (e.g. x.float()); for token ids, differentiate with respect to "
            "their embeddings (output=lambda model, z: model(inputs_embeds=z).logits on embedded inputs). "
            "Probes that take no derivative with respect to x (TangentKernel, WeightInformation, "
            "SpectralNorm, Performance) accept integer inputs."
        )
    if model is not None:
        dtype = model_dtype(model)
        if x.is_floating_point() and dtype is not None and x.dtype != dtype:
            raise TypeError(
                f"`{argument}` has dtype {x.dtype} but the model's parameters are {dtype}; convert one "
                f"of them (x.to({dtype}) or model.to({x.dtype}))."
            )
        x = x.to(model_device(model))
    return x


def check_labels(
    y: Any,
    n: int | None = None,
    *,
    argument: str = "y",
    n_classes: int | None = None,
    probe: str | None = None,
) -> torch.Tensor:
    """Check integer class labels of shape ``(n,)``."""
    who = f" by probe {probe!r}" if probe else ""
    if y is None:
        raise ValueError(f"`{argument}` (integer class labels of shape (n,)) is required{who}, but got None.")
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"`{argument}` must be a torch.Tensor of integer class labels, but got {describe(y)}.")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"`{argument}` must hold integer class labels, but got dtype {y.dtype}.")
    if y.dim() != 1:
        raise ValueError(f"`{argument}` must have shape (n,), but got shape {tuple(y.shape)}.")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"`{argument}` must have one label per example ({n}), but got {y.shape[0]}.")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(
            f"`{argument}` must hold class labels >= 0, but got a minimum of {int(y.min())}; "
            "map the labels to 0 … n_classes − 1."
        )
    if n_classes is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(
            f"`{argument}` must hold labels in [0, {n_classes}), but got values in [{int(y.min())}, {int(y.max())}]."
        )
    return y
