"""Loss and accuracy of a classifier on a batch: the curves every other probe is read against."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from jacspec._validation import check_positive_int
from jacspec.probes.base import Probe

__all__ = ["Performance"]


class Performance(Probe):
    """Mean cross-entropy and accuracy of ``model(x)`` (logits ``(n, c)``) against labels ``y``.

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

    def __init__(self, batch_size: int = 4096):
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def measure(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> xr.Dataset:
        loss, correct = 0.0, 0
        with torch.no_grad():
            for start in range(0, x.shape[0], self.batch_size):
                logits = model(x[start : start + self.batch_size])
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
