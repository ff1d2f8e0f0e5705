"""The callback side: run probes on a schedule during training and append them to a run file."""

from __future__ import annotations

import os
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import xarray as xr
from torch import nn
from torch.utils.data import DataLoader, Dataset

from jacspec._attrs import to_json
from jacspec._probe_batch import resolve_data
from jacspec._validation import check_model, describe, model_dtype
from jacspec.distributed import check_same_model, measure_rows, rank_and_world_size, serve_rows, unwrap_model
from jacspec.engine.shared_pass import SharedPass, sharing
from jacspec.probes.base import ModelState, Probe, step_snapshot
from jacspec.schedules import ScheduleLike, as_schedule
from jacspec.store import RunStore

__all__ = [
    "Monitor",
    "StopTraining",
    "CallbackError",
    "ProbeErrorWarning",
    "StepOrderWarning",
    "MonitorClosedError",
    "ProbeFailure",
]

_ON_ERROR = ("warn", "raise", "skip")

Callback = Callable[[int, "str | None", str, xr.Dataset], Any]


class StopTraining(Exception):
    """Raise from a monitor callback to stop training: it propagates out of ``monitor.step`` (and so
    out of ``optimizer.step()`` when the monitor is attached) after the step has been written.

    Examples
    --------
    >>> from jacspec.monitor import StopTraining
    >>> def stop_when_diverged(step, results):
    ...     if step > 1000:
    ...         raise StopTraining(f"stopped at step {step}")
    """


class CallbackError(RuntimeWarning):
    """Warning category for a callback that raised (the run file is intact).

    Examples
    --------
    >>> import torch
    >>> import jacspec
    >>> from jacspec.monitor import CallbackError
    >>> from jacspec.probes import SpectralNorm
    >>> import warnings
    >>> monitor = jacspec.Monitor(torch.nn.Linear(2, 2), [SpectralNorm()], every=1, path=None)
    >>> _ = monitor.add_callback(lambda step, split, probe, ds: 1 / 0)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = monitor.step(0)  # the callback's ZeroDivisionError becomes a warning: training goes on
    >>> caught[0].category.__name__, type(monitor.callback_errors[0][2]).__name__
    ('CallbackError', 'ZeroDivisionError')
    """


class ProbeErrorWarning(RuntimeWarning):
    """Warning category for a probe that raised inside a Monitor with ``on_error="warn"``: the failure is
    recorded in ``monitor.errors`` and in the run's ``errors`` group, and training goes on.

    Examples
    --------
    >>> import warnings
    >>> import torch
    >>> import jacspec
    >>> from jacspec.monitor import ProbeErrorWarning
    >>> from jacspec.probes import TangentKernel
    >>> monitor = jacspec.Monitor(torch.nn.Linear(2, 3), [TangentKernel(layers=["nope"])],
    ...                           data={"train": (torch.randn(4, 2), None)}, every=1, progress=False)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = monitor.step(0)  # the probe raises; the step is recorded and training goes on
    >>> caught[0].category is ProbeErrorWarning
    True
    """


class StepOrderWarning(UserWarning):
    """Warning category for a step number that is not after the last probed step: that step is not probed.

    Examples
    --------
    >>> import warnings
    >>> from jacspec.monitor import StepOrderWarning
    >>> issubclass(StepOrderWarning, UserWarning)
    True
    """


class MonitorClosedError(RuntimeError, ValueError):
    """Raised when a closed :class:`Monitor` is stepped or attached again. Create a new Monitor (with
    ``resume=True`` to continue the same run file).

    Examples
    --------
    >>> import torch
    >>> import jacspec
    >>> from jacspec.monitor import MonitorClosedError
    >>> from jacspec.probes import SpectralNorm
    >>> monitor = jacspec.Monitor(torch.nn.Linear(2, 2), [SpectralNorm()], every=1, path=None)
    >>> monitor.close()
    >>> try:
    ...     monitor.step(1)
    ... except MonitorClosedError:
    ...     print("closed")
    closed
    """


class ProbeFailure(NamedTuple):
    """One probe failure recorded by a Monitor (``monitor.errors``).

    Attributes: ``step``, ``probe`` (its name), ``split`` (None for probes without data), ``error_type``
    (the exception's class name), ``message`` (its text), ``exception`` (the exception object).

    Examples
    --------
    >>> import torch
    >>> import jacspec
    >>> from jacspec.probes import TangentKernel
    >>> monitor = jacspec.Monitor(torch.nn.Linear(2, 3), [TangentKernel(layers=["nope"])],
    ...                           data={"train": (torch.randn(4, 2), None)}, every=1, on_error="skip")
    >>> _ = monitor.step(0)
    >>> failure = monitor.errors[0]
    >>> failure.step, failure.probe, failure.split, failure.error_type
    (0, 'tangent_kernel', 'train', 'ValueError')
    """

    step: int
    probe: str
    split: str | None
    error_type: str
    message: str
    exception: BaseException


def _check_probes(probes: Any) -> list[Probe]:
    if isinstance(probes, Probe):
        probes = [probes]
    if isinstance(probes, type) and issubclass(probes, Probe):
        probes = [probes]
    if not isinstance(probes, Sequence) or isinstance(probes, str):
        raise TypeError(f"`probes` must be a list of Probe instances, but got {describe(probes)}.")
    if len(probes) == 0:
        raise ValueError("`probes` must hold at least one probe, but got an empty list.")
    for i, probe in enumerate(probes):
        if isinstance(probe, type):
            raise TypeError(
                f"`probes[{i}]` is the class {probe.__name__}, but Monitor expects probe instances. "
                f"Instantiate it: {probe.__name__}()."
            )
        if not isinstance(probe, Probe):
            raise TypeError(f"`probes[{i}]` must be a jacspec.probes.Probe instance, but got {describe(probe)}.")
    names = [probe.name for probe in probes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"`probes` must have distinct names (they name the groups of the run file), but {duplicates} "
            "appear more than once. Give one a different name: probe.name = 'other_name'."
        )
    return list(probes)


def _check_data(data: Any, model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise TypeError(
            f"`data` must be a mapping of split names to (x, y) pairs, e.g. {{'train': (x, y)}}, or a torch "
            f"Dataset or DataLoader, but got {describe(data)}."
        )
    checked = {}
    for split, pair in data.items():
        if not isinstance(split, str) or not split:
            raise TypeError(f"`data` keys must be non-empty split names (str), but got {split!r}.")
        if isinstance(pair, torch.Tensor) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"`data[{split!r}]` must be a pair (x, y) (y may be None), but got {describe(pair)}.")
        x, y = pair
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"`data[{split!r}][0]` (x) must be a torch.Tensor, but got {describe(x)}.")
        if y is not None and not isinstance(y, torch.Tensor):
            raise TypeError(f"`data[{split!r}][1]` (y) must be a torch.Tensor or None, but got {describe(y)}.")
        dtype = model_dtype(model)
        if x.is_floating_point() and dtype is not None and x.dtype != dtype:
            raise TypeError(
                f"`data[{split!r}][0]` (x) has dtype {x.dtype} but the model's parameters are {dtype}; convert "
                f"one of them (x.to({dtype}) or model.to({x.dtype}))."
            )
        if y is not None and y.shape[0] != x.shape[0]:
            raise ValueError(f"`data[{split!r}]`: x has {x.shape[0]} examples but y has {y.shape[0]}; they must match.")
        checked[split] = (x, y)
    return checked


def _errors_dataset(jobs: list[tuple[Probe, str | None]], failures: list[ProbeFailure]) -> xr.Dataset:
    """One step's row of the run's ``errors`` group: ``failed`` (job) = 1 where that probe/split raised."""
    import numpy as np

    labels = [probe.name if split is None else f"{probe.name}/{split}" for probe, split in jobs]
    failed = {f.probe if f.split is None else f"{f.probe}/{f.split}" for f in failures}
    values = np.array([1 if label in failed else 0 for label in labels], dtype=np.int8)
    return xr.Dataset(
        {"failed": (("job",), values, {"long_name": "probe raised at this step (1) or not (0)", "units": "1"})},
        coords={"job": ("job", labels, {"long_name": "probe name / split"})},
        attrs={"messages": to_json([f"{f.probe}/{f.split}: {f.message}" for f in failures])},
    )


class Monitor:
    """Run probes on a model during training and append every result to a netCDF run file.

    Parameters
    ----------
    model : nn.Module
        The model being trained.
    probes : list of Probe
        Probe instances with distinct ``name`` s.
    data : mapping, Dataset or DataLoader, optional
        ``{split name: (x, y)}`` batches the probes measure (``y`` may be None for probes that need no
        labels). Probes that need no input (``needs_input = False``) run once per step without a split.
        A split may also be a ``torch.utils.data.Dataset`` or ``DataLoader`` whose items are ``(x, y)``,
        and a Dataset or DataLoader alone is the split ``"train"``: a fixed probe batch of
        ``probe_examples`` examples is drawn from it once, here, with a private generator seeded by
        ``probe_seed`` (a DataLoader is read through its ``dataset``: its iterator, sampler and the global
        RNG state are untouched; a custom ``collate_fn`` is applied to the drawn items).
    every : int, "log", list of int or callable
        Which steps are probed: every n steps (steps divisible by n, including 0), log-spaced steps
        (:class:`jacspec.schedules.LogSpaced`), an explicit list, or a predicate ``step -> bool``.
    path : str or Path, optional
        Run file to write (its directory must exist). ``None`` keeps nothing on disk. While the monitor
        is open the steps go to the folder ``<path>.live/`` (one small file per probe and step, each
        append costing only that step); :meth:`close` leaves ``path`` as one netCDF4 file. A second
        Monitor on the same path raises :class:`jacspec.store.RunLockedError`.
    resume : bool
        Continue an existing run, closed or killed (never closed); steps not after its last step are
        skipped.
    overwrite : bool
        Replace an existing run file. Without ``resume`` or ``overwrite`` an existing file is an error.
    progress : bool
        Show a tqdm progress bar when a probed step takes more than a second.
    callbacks : list of callables, optional
        Functions ``fn(step, split, probe_name, dataset)`` called after each step is written (see
        :meth:`add_callback`).
    probe_examples : int
        Number of examples drawn from a Dataset or DataLoader in ``data`` (all of them when it holds
        fewer; an ``IterableDataset`` gives its first ``probe_examples``). Default 256.
    probe_seed : int
        Seed of the draw from a Dataset or DataLoader. Default 0.
    on_error : {"warn", "raise", "skip"}
        What a probe that raises does to training. ``"warn"`` (default): a :class:`ProbeErrorWarning`,
        the failure is kept in ``monitor.errors`` and in the run's ``errors`` group (one row per step with
        a failure, ``failed`` = 1 for each failed probe/split job), the other probes' results are written,
        and training goes on. ``"skip"``: the same without the warning. ``"raise"``: the exception
        propagates out of :meth:`step` (and so out of ``optimizer.step()``); earlier steps stay on disk.
        ``KeyboardInterrupt`` and :class:`StopTraining` always propagate.

    Examples
    --------
    >>> monitor = jacspec.Monitor(model, [SpectralNorm()], every=100, path="run.nc")  # doctest: +SKIP
    >>> handle = monitor.attach(optimizer)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        probes: Sequence[Probe],
        data: Mapping[str, Any] | Dataset | DataLoader | None = None,
        every: ScheduleLike = 100,
        path: str | os.PathLike | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        callbacks: Sequence[Callback] = (),
        on_error: str = "warn",
        probe_examples: int = 256,
        probe_seed: int = 0,
    ):
        if on_error not in _ON_ERROR:
            raise ValueError(
                f"`on_error` must be one of {_ON_ERROR}, but got {on_error!r}. Use 'warn' (record and go on), "
                "'skip' (record silently) or 'raise' (stop training)."
            )
        self.on_error = on_error
        self.errors: list[ProbeFailure] = []
        self._closed = False
        self._last_probed: int | None = None
        self._shared_forward_passes: dict[str, int] = {}  # per split, at the last probed step
        self._shared_outputs: dict[str, int] = {}  # c per split, the next step's shared-pass hint
        self.rank, self.world_size = rank_and_world_size()
        self.model = check_model(unwrap_model(model))  # DDP's inner module: probing runs none of its hooks
        self.probes = _check_probes(probes)
        self.data = _check_data(resolve_data(data, probe_examples, probe_seed), model)
        self.schedule = as_schedule(every)
        for probe in self.probes:
            if probe.needs_input and not self.data:
                raise ValueError(
                    f"probe {probe.name!r} needs input data, but `data` is empty. Pass data={{'train': (x, y), ...}}."
                )
            if probe.needs_input and probe.needs_labels:
                missing = [split for split, (_, y) in self.data.items() if y is None]
                if missing:
                    raise ValueError(
                        f"probe {probe.name!r} needs labels, but `data` has y=None for split(s) {missing}."
                    )
        self.progress = progress
        self._callbacks: list[Callback] = []
        for fn in callbacks:
            self.add_callback(fn)
        self.callback_errors: list[tuple[int, str, BaseException]] = []
        self._handles: list[Any] = []
        self._counter = 0
        self.last_results: dict[str, dict[str | None, xr.Dataset]] = {}
        self.store: RunStore | None = None
        self._stored_last_step: int | None = None
        if path is not None and self.rank == 0:  # under torch.distributed, rank 0 alone writes the run
            config = {
                "probes": [probe.name for probe in self.probes],
                "probe_configs": {probe.name: probe.config() for probe in self.probes},
                "splits": list(self.data),
                "every": repr(self.schedule),
                "model_class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            }
            self.store = RunStore(path, resume=resume, overwrite=overwrite, attrs={"monitor_config": to_json(config)})
            self._stored_last_step = self.store.last_step
        if self.world_size > 1:  # every rank skips the steps rank 0's (resumed) run already holds
            shared = [self._stored_last_step]
            torch.distributed.broadcast_object_list(shared, src=0)
            self._stored_last_step = shared[0]
        if self._stored_last_step is not None:
            self._counter = self._stored_last_step

    # -- registration -------------------------------------------------------------------------------

    def add_callback(self, fn: Callback) -> Callback:
        """Register ``fn(step, split, probe_name, dataset)``, called after each probed step is on disk.

        ``split`` is None for probes that need no data. A callback that raises :class:`StopTraining`
        stops training (the exception propagates out of :meth:`step`); any other exception is reported
        as a :class:`CallbackError` warning and kept in ``monitor.callback_errors``; the run goes on and
        the run file is intact. Returns ``fn``, so it can be used as a decorator.
        """
        if not callable(fn):
            raise TypeError(f"`fn` must be callable as fn(step, split, probe_name, dataset), but got {describe(fn)}.")
        self._callbacks.append(fn)
        return fn

    def attach(self, optimizer: torch.optim.Optimizer, *, probe_initial: bool = False):
        """Probe after each ``optimizer.step()`` that the schedule selects.

        Steps are counted from 1 (the first ``optimizer.step()``) — or after the last stored step when
        resuming. ``probe_initial=True`` probes the current model at once as step 0 (or the current
        count). Returns a handle whose ``.remove()`` detaches the monitor.
        """
        self._check_open("attach")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"`optimizer` must be a torch.optim.Optimizer, but got {describe(optimizer)}.")
        if probe_initial:
            self.step(self._counter, force=True)

        def hook(opt, args, kwargs):
            self._counter += 1
            self.step(self._counter)

        handle = optimizer.register_step_post_hook(hook)
        self._handles.append(handle)
        return handle

    # -- probing ------------------------------------------------------------------------------------

    def should_probe(self, step: int) -> bool:
        """Whether the schedule selects ``step`` (and it is after the last stored step)."""
        last = self.store.last_step if self.store is not None else self._stored_last_step
        if last is not None and step <= last:
            return False
        return bool(self.schedule(step))

    def step(self, step: int | None = None, *, force: bool = False) -> dict[str, dict[str | None, xr.Dataset]] | None:
        """Probe the model at ``step`` if the schedule selects it (always with ``force=True``).

        Parameters
        ----------
        step : int, optional
            The training step; by default one more than the last step seen.
        force : bool
            Probe even if the schedule does not select this step (never a step already stored).

        Returns
        -------
        dict or None
            ``{probe name: {split or None: Dataset}}`` when the step was probed, else None. Under
            ``torch.distributed`` rank 0 returns the results and writes; the other ranks measure their rows of
            the sharded probes (:mod:`jacspec.distributed`) and get an empty dict (every rank must call
            ``step`` at the same steps: the replicas' weights are compared, a collective call).
        """
        self._check_open("step")
        if step is None:
            step = self._counter + 1
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError(f"`step` must be an int, but got {describe(step)}.")
        if self._last_probed is not None and step <= self._last_probed:
            warnings.warn(
                f"`step` {step} is not after the last probed step {self._last_probed}; it is not probed "
                "(steps must increase). Pass increasing step numbers, e.g. the global training step.",
                StepOrderWarning,
                stacklevel=2,
            )
            return None
        self._counter = max(self._counter, step)
        last = self.store.last_step if self.store is not None else self._stored_last_step
        selected = self.should_probe(step) or (force and (last is None or step > last))
        if not selected:
            return None
        return self._probe(step)

    def _jobs(self) -> list[tuple[Probe, str | None]]:
        jobs: list[tuple[Probe, str | None]] = []
        for probe in self.probes:
            if probe.needs_input or (self.data and getattr(probe, "per_split", False)):
                jobs += [(probe, split) for split in self.data]
            else:
                jobs.append((probe, None))
        return jobs

    def _probe(self, step: int) -> dict[str, dict[str | None, xr.Dataset]]:
        from tqdm.auto import tqdm

        if self.world_size > 1:
            check_same_model(self.model)  # collective: every rank calls step() at the same steps
            if self.rank != 0:
                serve_rows(self._jobs(), self.model, self.data)  # this rank's rows of the sharded probes
                self._last_probed = step
                return {}

        results: dict[str, dict[str | None, xr.Dataset]] = {}
        seconds: dict[str, dict[str | None, float]] = {}
        failures: list[ProbeFailure] = []
        jobs = self._jobs()
        bar = tqdm(
            total=len(jobs),
            desc=f"jacspec step {step}",
            leave=False,
            delay=1.0,
            disable=None if self.progress else True,
        )
        passes = self._shared_passes()
        run_order = jobs
        if passes:  # split by split, so that a split's shared pass is used up before the next one runs
            order = {split: k for k, split in enumerate(self.data)}
            run_order = sorted(jobs, key=lambda job: -1 if job[1] is None else order[job[1]])
        try:
            # one snapshot of the model per step, and one shared pass per split (not one per probe)
            with step_snapshot(self.model) as state, sharing(list(passes.values())):
                self._run_jobs(step, run_order, results, seconds, failures, bar, state)
        finally:
            bar.close()
        # results (and the store, the callbacks) in the probes' order, whatever order they ran in
        ranked = {(probe.name, split): k for k, (probe, split) in enumerate(jobs)}
        failures.sort(key=lambda f: ranked[(f.probe, f.split)])
        for table in (results, seconds):
            ordered: dict[str, dict[str | None, Any]] = {}
            for probe, split in jobs:
                if split in table.get(probe.name, {}):
                    ordered.setdefault(probe.name, {})[split] = table[probe.name][split]
            table.clear()
            table.update(ordered)
        # forward passes each split's shared pass ran (one when the probes that share it could)
        self._shared_forward_passes = {split: shared.forward_passes for split, shared in passes.items()}
        self._shared_outputs = {split: shared.outputs for split, shared in passes.items() if shared.outputs}
        self._last_probed = step
        if failures:
            self.errors.extend(failures)
            results["errors"] = {None: _errors_dataset(jobs, failures)}
            seconds["errors"] = {None: 0.0}
        if self.store is not None:
            self.store.append(step, results, seconds)
        self.last_results = results
        self._run_callbacks(step, results)
        return results

    def _shared_passes(self) -> dict[str, SharedPass]:
        """One shared pass per split for the probes that declared what they need (single process only)."""
        if self.world_size > 1:  # sharded probes see row blocks, not the split's batch
            return {}
        passes = {}
        for split, (x, _) in self.data.items():
            # c seen at the previous step saves a one-example forward
            shared = SharedPass(self.model, x, outputs_hint=self._shared_outputs.get(split))
            for probe in self.probes:
                if probe.needs_input:
                    try:
                        probe.share(shared, self.model, x)
                    except Exception:  # noqa: BLE001 - the probe then measures on its own (and reports its error)
                        pass
            passes[split] = shared
        return passes

    def _run_jobs(
        self,
        step: int,
        jobs: list[tuple[Probe, str | None]],
        results: dict[str, dict[str | None, xr.Dataset]],
        seconds: dict[str, dict[str | None, float]],
        failures: list[ProbeFailure],
        bar: Any,
        state: ModelState,
    ) -> None:
        for probe, split in jobs:
            bar.set_postfix_str(probe.name if split is None else f"{probe.name}/{split}", refresh=False)
            start = time.perf_counter()
            try:
                if split is None:
                    ds = probe.measure(self.model)
                else:
                    x, y = self.data[split]
                    ds = measure_rows(probe, self.model, x, y)  # split across ranks where shardable
            except (KeyboardInterrupt, StopTraining):
                raise
            except Exception as err:
                where = f"probe {probe.name!r}" + (f" on split {split!r}" if split else "") + f" at step {step}"
                if self.on_error == "raise":
                    if hasattr(err, "add_note"):
                        err.add_note(f"(raised by {where}; the run file keeps every earlier step)")
                    raise
                state.restore()  # the next probe starts from the model as the step found it
                message = "".join(traceback.format_exception_only(type(err), err)).strip()
                failures.append(ProbeFailure(step, probe.name, split, type(err).__name__, message, err))
                if self.on_error == "warn":
                    warnings.warn(
                        f"{where} raised {message}; recorded in monitor.errors and the run's 'errors' group, "
                        "training goes on (Monitor(on_error='raise') stops instead).",
                        ProbeErrorWarning,
                        stacklevel=3,
                    )
                bar.update()
                continue
            results.setdefault(probe.name, {})[split] = ds
            seconds.setdefault(probe.name, {})[split] = time.perf_counter() - start
            bar.update()

    def _run_callbacks(self, step: int, results: dict[str, dict[str | None, xr.Dataset]]) -> None:
        stop: StopTraining | None = None
        for name, by_split in results.items():
            for split, ds in by_split.items():
                for fn in self._callbacks:
                    try:
                        fn(step, split, name, ds)
                    except StopTraining as err:
                        stop = stop or err
                    except Exception as err:  # noqa: BLE001 - reported, the run goes on
                        self.callback_errors.append((step, name, err))
                        summary = "".join(traceback.format_exception_only(type(err), err)).strip()
                        warnings.warn(
                            f"callback {getattr(fn, '__name__', fn)!r} raised at step {step} (probe {name!r}, "
                            f"split {split!r}): {summary}. The run file is intact; training goes on.",
                            CallbackError,
                            stacklevel=3,
                        )
        if stop is not None:
            raise stop

    # -- lifetime -----------------------------------------------------------------------------------

    @property
    def path(self):
        """The run file's path (None without one)."""
        return None if self.store is None else self.store.path

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise MonitorClosedError(
                f"Monitor.{what}() called after close(); a closed monitor no longer probes or writes. Create a "
                "new Monitor (Monitor(..., path=same_path, resume=True) continues the same run file)."
            )

    def close(self) -> None:
        """Detach from every optimizer and leave the run as one netCDF4 file at ``path``.

        Every probed step is already on disk (in ``<path>.live/``); closing compacts them into the single
        file that plain ``xarray.open_datatree(path)`` opens, and removes the live folder. Called by the
        context manager's exit; a Monitor that is garbage-collected (or alive at interpreter exit) is
        compacted too. Idempotent.
        """
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Monitor(probes={[p.name for p in self.probes]}, splits={list(self.data)}, "
            f"every={self.schedule!r}, path={str(self.path) if self.path else None!r})"
        )
