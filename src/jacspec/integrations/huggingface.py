"""Hugging Face Transformers: a ``transformers.TrainerCallback`` that runs jacspec probes during
``Trainer.train``.

Importing this module imports ``transformers``; install it with ``pip install "jacspec[huggingface]"``
(the Trainer also needs ``accelerate``, which the extra installs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from jacspec.integrations import require
from jacspec.integrations._core import MonitorDriver, creates_monitor
from jacspec.monitor import Monitor
from jacspec.probes.base import Probe
from jacspec.schedules import ScheduleLike

_transformers = require("transformers", "huggingface", "jacspec.integrations.huggingface")

__all__ = ["JacspecCallback"]


class JacspecCallback(_transformers.TrainerCallback):
    """Probe the Trainer's model after optimizer steps, by ``state.global_step``, and write a run file.

    At ``on_train_begin`` a :class:`jacspec.Monitor` is created on the Trainer's model (the ``model``
    the Trainer passes to its callbacks): on every rank under an initialised ``torch.distributed`` process
    group (the ranks share the probed steps' collectives and rank 0 alone writes the run), else in the main
    process only (``state.is_world_process_zero``).
    At ``on_step_end`` (after each optimizer step, so once per step under gradient accumulation) it
    probes ``state.global_step`` if the schedule ``every`` selects it; each probed step is on disk before
    training resumes. ``on_train_end`` closes the monitor. Probing never changes training: the weights at
    the end are bit-identical to the same run without the callback.

    Parameters
    ----------
    probes : list of Probe
        Probe instances with distinct names. A Hugging Face model returns a ``ModelOutput``, not a logits
        tensor, so probes that call ``model(x)`` and expect logits do not apply to it as it is; probes of
        the weights alone (:class:`~jacspec.probes.SpectralNorm`) need no data and work on any model.
    data : mapping, Dataset or DataLoader, optional
        What probes that need input measure, as for :class:`jacspec.Monitor` (``{split: (x, y)}``, or a
        Dataset / DataLoader of ``(x, y)`` items from which a fixed, seeded probe batch is drawn once).
        Optional: probes that need no input run without it.
    every : int, "log", list of int or callable
        Which global steps are probed (see :class:`jacspec.Monitor`).
    path : str or Path, optional
        The run file (relative to the working directory, not to ``args.output_dir``); None keeps nothing
        on disk.
    probe_initial : bool
        Also probe the model as it is when training begins (step ``state.global_step``, 0 for a new run).
    **monitor_options
        Passed on to :class:`jacspec.Monitor`: ``overwrite``, ``resume``, ``progress``, ``callbacks``,
        ``on_error``, ``probe_examples``, ``probe_seed``.

    Attributes
    ----------
    monitor : jacspec.Monitor or None
        The monitor, once training has begun (on every rank under torch.distributed, else the main process).

    Notes
    -----
    A monitor callback that raises :class:`jacspec.StopTraining` sets ``control.should_training_stop``.
    Transformers has no exception hook: when training raises, the run file already holds every probed
    step (each is flushed at once) and the monitor needs no closing.

    Examples
    --------
    >>> from jacspec.probes import SpectralNorm
    >>> trainer = transformers.Trainer(model=model, args=args, train_dataset=train,
    ...     callbacks=[JacspecCallback([SpectralNorm()], every=50, path="run.nc")])  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self,
        probes: Sequence[Probe],
        data: Any = None,
        every: ScheduleLike = 100,
        path: str | os.PathLike | None = "run.nc",
        *,
        probe_initial: bool = False,
        **monitor_options: Any,
    ):
        self._driver = MonitorDriver(probes, data, every, path, probe_initial, monitor_options)

    @property
    def monitor(self) -> Monitor | None:
        """The :class:`jacspec.Monitor` this callback drives (None before training starts and on other ranks)."""
        return self._driver.monitor

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        """Create the monitor on the Trainer's ``model`` (main process only)."""
        if not creates_monitor(state.is_world_process_zero):
            return None
        if model is None:
            raise ValueError(
                "JacspecCallback.on_train_begin got no `model`; it must be called by a transformers.Trainer, "
                "which passes its model to every callback."
            )
        if self._driver.start(model, int(state.global_step)):
            control.should_training_stop = True
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Probe ``state.global_step`` if the schedule selects it."""
        if self._driver.step(int(state.global_step)):
            control.should_training_stop = True
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Close the monitor."""
        self._driver.close()
        return control

    def __repr__(self) -> str:
        d = self._driver
        return f"JacspecCallback(probes={[p.name for p in d.probes]}, every={d.every!r}, path={d.path!r})"
