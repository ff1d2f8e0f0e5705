"""PyTorch Lightning: a ``lightning.pytorch.Callback`` that runs jacspec probes during ``Trainer.fit``.

Importing this module imports ``lightning``; install it with ``pip install "jacspec[lightning]"``.
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

_pl = require("lightning.pytorch", "lightning", "jacspec.integrations.lightning")

__all__ = ["JacspecCallback"]


class JacspecCallback(_pl.Callback):
    """Probe the LightningModule after optimizer steps, by ``trainer.global_step``, and write a run file.

    At ``on_fit_start`` a :class:`jacspec.Monitor` is created on the LightningModule: on every rank under an
    initialised ``torch.distributed`` process group (DDP: the ranks share the probed steps' collectives and
    rank 0 alone writes the run, see the Monitor guide), else on the global rank zero process only. After
    each training batch whose optimizer step
    advanced ``trainer.global_step`` (so once per optimizer step under gradient accumulation), the monitor
    probes that step if the schedule ``every`` selects it; each probed step is on disk before training
    resumes. The monitor is closed at ``on_fit_end`` and when training raises. Probing never changes
    training: the weights at the end are bit-identical to the same run without the callback.

    Parameters
    ----------
    probes : list of Probe
        Probe instances with distinct names.
    data : mapping, Dataset or DataLoader, optional
        What the probes measure, as for :class:`jacspec.Monitor` (``{split: (x, y)}``, or a Dataset /
        DataLoader from which a fixed, seeded probe batch is drawn once). Only probes that need no input
        (e.g. :class:`~jacspec.probes.SpectralNorm`) run without it.
    every : int, "log", list of int or callable
        Which global steps are probed (see :class:`jacspec.Monitor`).
    path : str or Path, optional
        The run file (relative to the working directory); None keeps nothing on disk.
    probe_initial : bool
        Also probe the model as it is when fitting starts (step ``trainer.global_step``, 0 for a new run).
    **monitor_options
        Passed on to :class:`jacspec.Monitor`: ``overwrite``, ``resume``, ``progress``, ``callbacks``,
        ``on_error``, ``probe_examples``, ``probe_seed``.

    Attributes
    ----------
    monitor : jacspec.Monitor or None
        The monitor, once fitting has started (on every rank under torch.distributed, else on rank zero).

    Notes
    -----
    A monitor callback that raises :class:`jacspec.StopTraining` sets ``trainer.should_stop``.

    Examples
    --------
    >>> from jacspec.probes import Performance, SpectralNorm
    >>> callback = JacspecCallback([SpectralNorm(), Performance()], data={"test": (x_test, y_test)},
    ...                            every=100, path="run.nc")  # doctest: +SKIP
    >>> lightning.Trainer(callbacks=[callback]).fit(module, train_loader)  # doctest: +SKIP
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
        super().__init__()
        self._driver = MonitorDriver(probes, data, every, path, probe_initial, monitor_options)

    @property
    def monitor(self) -> Monitor | None:
        """The :class:`jacspec.Monitor` this callback drives (None before training starts and on other ranks)."""
        return self._driver.monitor

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Create the monitor on ``pl_module`` (every rank under torch.distributed, else rank zero only)."""
        if creates_monitor(trainer.is_global_zero) and self._driver.start(pl_module, int(trainer.global_step)):
            trainer.should_stop = True

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Probe ``trainer.global_step`` when an optimizer step advanced it and the schedule selects it."""
        if self._driver.step(int(trainer.global_step)):
            trainer.should_stop = True

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        """Close the monitor."""
        self._driver.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Close the monitor (every step probed so far is already on disk)."""
        self._driver.close()

    def __repr__(self) -> str:
        d = self._driver
        return f"JacspecCallback(probes={[p.name for p in d.probes]}, every={d.every!r}, path={d.path!r})"
