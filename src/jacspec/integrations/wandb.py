"""Weights & Biases: a monitor callback that logs every 0-d result of every probe with ``run.log``.

``scalars(run)`` needs only an object with ``log(dict, step=...)`` (a ``wandb`` run); ``scalars()``
uses the active run, ``wandb.run``, which needs ``pip install "jacspec[wandb]"``.
"""

from __future__ import annotations

from typing import Any

from jacspec._validation import describe
from jacspec.integrations import require
from jacspec.integrations._core import ScalarLogger

__all__ = ["scalars"]


def scalars(run: Any = None, prefix: str = "jacspec") -> ScalarLogger:
    """A monitor callback logging every 0-d variable of every result to W&B at its step.

    Each result is one ``run.log({"prefix/probe/split/variable": value, ...}, step=step)`` call (the split
    is left out for probes that need no data), e.g. ``jacspec/performance/test/loss``; variables with
    dimensions stay in the run file only.

    Parameters
    ----------
    run : wandb run, optional
        The run to log to (what ``wandb.init()`` returns); by default the active run ``wandb.run``.
    prefix : str
        First part of every key ('' for none).

    Returns
    -------
    callable
        ``fn(step, split, probe_name, dataset)``, for ``monitor.add_callback`` or ``Monitor(callbacks=[...])``
        (and the framework callbacks' ``callbacks=``). Its ``run`` attribute is the run.

    Notes
    -----
    W&B keeps one step counter per run and ignores a ``step`` smaller than one it has already seen. Log
    your own metrics with ``step=`` the same optimizer step the monitor uses (``trainer.global_step`` in
    the framework callbacks), or log them without ``step`` only after this callback at each step.

    Examples
    --------
    >>> run = wandb.init(project="my-project")  # doctest: +SKIP
    >>> monitor.add_callback(scalars(run))  # doctest: +SKIP
    """
    if run is None:
        wandb = require("wandb", "wandb", "jacspec.integrations.wandb.scalars()")
        run = wandb.run
        if run is None:
            raise ValueError("`run` is None and no W&B run is active: call wandb.init(...) first, or pass the run.")
    if not callable(getattr(run, "log", None)):
        raise TypeError(f"`run` must be a W&B run with a log(dict, step=...) method, but got {describe(run)}.")

    def sink(step: int, values: dict[str, float]) -> None:
        run.log(values, step=step)

    logger = ScalarLogger(sink, prefix, "jacspec.integrations.wandb.scalars")
    logger.run = run
    return logger
