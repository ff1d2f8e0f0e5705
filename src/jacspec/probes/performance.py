"""Loss and accuracy of a classifier on a batch: the curves every other probe is read against."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from jacspec._validation import check_positive_int
from jacspec.memory import budget_argument, check_memory, largest_activation_bytes
from jacspec.probes.base import Probe

__all__ = ["Performance"]


class Performance(Probe):
    """Mean cross-entropy and accuracy of ``model(x)`` (logits ``(n, c)``) against labels ``y``.

    Parameters
    ----------
    batch_size : int
        Examples per forward pass (without gradients).
    max_memory : int, float or str, optional
        Budget of the largest buffers (bytes or a string such as ``"2GB"``); None (default): no check. Before
        the first forward, ``2 · batch × A`` (two consecutive activations of a batch, ``A`` the largest module
        output of one example, :func:`jacspec.memory.largest_activation_bytes`) plus the ``(batch, c)``
        logits is checked against it; :class:`jacspec.memory.MemoryBudgetError` names the ways out.

    Emits
    -----
    loss : ()
        Mean cross-entropy, nats.
    accuracy : ()
        Fraction of examples whose arg-max logit is the label.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes import Performance
    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.eye(2)), model.bias.zero_()
    >>> ds = Performance().measure(model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    >>> float(ds["accuracy"])
    0.5
    """

    name = "performance"
    needs_labels = True

    def __init__(self, batch_size: int = 4096, max_memory: int | float | str | None = None):
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.max_memory = budget_argument(max_memory)

    def _shares(self, x: torch.Tensor) -> bool:
        return self.max_memory is None and self.mode == "eval" and x.shape[0] <= self.batch_size

    def share(self, shared: Any, model: nn.Module, x: torch.Tensor) -> None:
        if self._shares(x):
            shared.request_logits()

    def measure(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> xr.Dataset:
        if self.max_memory is not None:
            batch = min(self.batch_size, x.shape[0])
            activation, c = largest_activation_bytes(model, x)
            check_memory(
                batch * (2 * activation + 8 * c),
                self.max_memory,
                what=f"Performance's forward of {batch} examples (largest activation {activation} B per example)",
                ways_out=["a smaller `batch_size=`"],
            )
        from jacspec.engine.shared_pass import active_pass

        shared = active_pass(model, x) if self._shares(x) else None
        loss, correct = 0.0, 0
        with torch.no_grad():
            for start in range(0, x.shape[0], self.batch_size):
                # this step's shared pass holds the logits of the whole batch (one forward for every probe)
                logits = shared.logits() if shared is not None else model(x[start : start + self.batch_size])
                if logits.dim() != 2:
                    raise ValueError(
                        f"the model's output must be logits of shape (n, c), but got {tuple(logits.shape)}."
                    )
                target = y[start : start + self.batch_size]
                loss += float(F.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(dim=1) == target).sum())
        n = x.shape[0]
        return xr.Dataset(
            {
                "loss": ((), loss / n, {"long_name": "mean cross-entropy", "units": "nat"}),
                "accuracy": ((), correct / n, {"long_name": "accuracy", "units": "1"}),
            },
            attrs={"n_examples": n},
        )
