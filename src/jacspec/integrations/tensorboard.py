"""TensorBoard: a monitor callback that logs every 0-d result of every probe as a scalar.

``scalars(writer)`` needs only an object with ``add_scalar`` (``torch.utils.tensorboard.SummaryWriter``,
``tensorboardX.SummaryWriter``, Lightning's ``logger.experiment``); ``scalars("runs/tb")`` creates a
``torch.utils.tensorboard.SummaryWriter``, which needs ``pip install "jacspec[tensorboard]"``.
"""

from __future__ import annotations

import os
from typing import Any

from jacspec._validation import describe
from jacspec.integrations import require
from jacspec.integrations._core import ScalarLogger

__all__ = ["scalars"]


def scalars(writer: Any, prefix: str = "jacspec", *, flush: bool = True) -> ScalarLogger:
    """A monitor callback logging every 0-d variable of every result to TensorBoard at its step.

    Each scalar is tagged ``prefix/probe/split/variable`` (``prefix/probe/variable`` for probes that need
    no data, which have no split), e.g. ``jacspec/performance/test/loss`` or
    ``jacspec/tangent_kernel/train/effective_rank``; variables with dimensions (spectra, per-layer values)
    stay in the run file only.

    Parameters
    ----------
    writer : SummaryWriter-like, str or Path
        An object with ``add_scalar(tag, value, global_step)``, or a log directory for a new
        ``torch.utils.tensorboard.SummaryWriter``.
    prefix : str
        First part of every tag ('' for none).
    flush : bool
        Flush the writer after each result, so the values are on disk when the step is.

    Returns
    -------
    callable
        ``fn(step, split, probe_name, dataset)``, for ``monitor.add_callback`` or ``Monitor(callbacks=[...])``
        (and the framework callbacks' ``callbacks=``). Its ``writer`` attribute is the writer.

    Examples
    --------
    >>> from torch.utils.tensorboard import SummaryWriter  # doctest: +SKIP
    >>> monitor.add_callback(scalars(SummaryWriter("runs/tb")))  # doctest: +SKIP
    """
    if isinstance(writer, (str, os.PathLike)):
        require("tensorboard", "tensorboard", "jacspec.integrations.tensorboard.scalars(log_dir)")
        summary = require("torch.utils.tensorboard", "tensorboard", "jacspec.integrations.tensorboard.scalars")
        writer = summary.SummaryWriter(log_dir=os.fspath(writer))
    if not callable(getattr(writer, "add_scalar", None)):
        raise TypeError(
            "`writer` must have an add_scalar(tag, value, global_step) method (a torch.utils.tensorboard."
            f"SummaryWriter) or be a log directory, but got {describe(writer)}."
        )
    if not isinstance(flush, bool):
        raise TypeError(f"`flush` must be True or False, but got {describe(flush)}.")

    def sink(step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            writer.add_scalar(tag, value, global_step=step)
        if flush and callable(getattr(writer, "flush", None)):
            writer.flush()

    logger = ScalarLogger(sink, prefix, "jacspec.integrations.tensorboard.scalars")
    logger.writer = writer
    return logger
