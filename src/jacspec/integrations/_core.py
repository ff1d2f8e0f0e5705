"""What the framework callbacks share: a Monitor created when training starts, stepped by the framework's
global step, closed when training ends."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from jacspec._validation import describe
from jacspec.monitor import Monitor, StopTraining, _check_probes
from jacspec.probes.base import Probe
from jacspec.schedules import ScheduleLike, as_schedule


def creates_monitor(is_main_process: bool) -> bool:
    """Whether this process creates the callback's Monitor.

    Under an initialised ``torch.distributed`` process group with several ranks, every rank does: the
    Monitor's probed steps are collectives (the replicas' checksum, the sharded probes) and its rank 0
    alone writes the run, so a Monitor on rank 0 only would wait for the others forever. Otherwise (one
    process, or several without a process group) only the framework's main process does, so that two
    processes never write one run file.
    """
    from jacspec.distributed import rank_and_world_size

    return is_main_process or rank_and_world_size()[1] > 1


class MonitorDriver:
    """Holds the options of a framework callback and the :class:`jacspec.Monitor` it drives."""

    def __init__(
        self,
        probes: Sequence[Probe],
        data: Any,
        every: ScheduleLike,
        path: str | os.PathLike | None,
        probe_initial: bool,
        monitor_options: dict[str, Any],
    ):
        if "model" in monitor_options:
            raise TypeError(
                "`model` is not an option of JacspecCallback: the callback probes the model the trainer trains."
            )
        if not isinstance(probe_initial, bool):
            raise TypeError(f"`probe_initial` must be True or False, but got {describe(probe_initial)}.")
        self.probes = _check_probes(probes)
        as_schedule(every)  # checked now, not when training starts
        if data is None:
            needing = [probe.name for probe in self.probes if probe.needs_input]
            if needing:
                raise ValueError(
                    f"probe(s) {needing} need input data, but `data` is None. Pass data={{'test': (x, y)}}, a "
                    "Dataset or a DataLoader (a fixed probe batch is drawn from it), or use probes that need no "
                    "input, such as SpectralNorm()."
                )
        self.data = data
        self.every = every
        self.path = path
        self.probe_initial = probe_initial
        self.monitor_options = dict(monitor_options)
        self.monitor: Monitor | None = None
        self._last_step: int | None = None

    def start(self, model: nn.Module, step: int) -> bool:
        """Create the Monitor on ``model`` (and probe ``step`` now when ``probe_initial``); True to stop."""
        self.close()
        self.monitor = Monitor(
            model, self.probes, data=self.data, every=self.every, path=self.path, **self.monitor_options
        )
        stop = self._step(step, force=True) if self.probe_initial else False
        self._last_step = step  # only steps after the start are optimizer steps
        return stop

    def step(self, step: int) -> bool:
        """Probe ``step`` if it is a new step the schedule selects; True when training should stop."""
        if self.monitor is None or (self._last_step is not None and step <= self._last_step):
            return False
        return self._step(step, force=False)

    def _step(self, step: int, force: bool) -> bool:
        assert self.monitor is not None
        self._last_step = step
        try:
            self.monitor.step(int(step), force=force)
        except StopTraining:
            return True
        return False

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()


def check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"`prefix` must be a str (e.g. 'jacspec', or '' for none), but got {describe(prefix)}.")
    return prefix.strip("/")


def scalar_values(prefix: str, probe: str, split: str | None, ds: Any) -> dict[str, float]:
    """``{"prefix/probe/split/variable": value}`` for every 0-d numeric variable of ``ds``.

    ``split`` is left out of the name for probes that need no data (split None), and ``prefix`` when it is
    empty. Booleans are logged as 0/1; strings and complex values are left out.
    """
    parts = [p for p in (prefix, probe, split) if p]
    values: dict[str, float] = {}
    for name, variable in ds.data_vars.items():
        if variable.ndim != 0 or variable.dtype.kind not in "biuf":
            continue
        values["/".join([*parts, str(name)])] = float(variable.values)
    return values


class ScalarLogger:
    """A monitor callback ``fn(step, split, probe_name, dataset)`` that hands the 0-d variables to ``sink``."""

    def __init__(self, sink: Any, prefix: str, label: str):
        self.sink = sink
        self.prefix = check_prefix(prefix)
        self.label = label
        self.__name__ = label

    def __call__(self, step: int, split: str | None, probe_name: str, dataset: Any) -> None:
        values = scalar_values(self.prefix, probe_name, split, dataset)
        if values:
            self.sink(step, values)

    def __repr__(self) -> str:
        return f"{self.label}(prefix={self.prefix!r})"
