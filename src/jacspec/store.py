"""The run store: appends whose cost is the size of one step, one netCDF4 file once the run is closed.

Layout of a closed run
----------------------
``path`` is one netCDF4 file that plain ``xarray.open_datatree(path)`` opens. Root attributes mark it as
a jacspec run (``jacspec_format = "jacspec-run"``, ``jacspec_format_version``) and carry provenance
(jacspec and torch versions, creation time, the monitor's configuration). Each probe owns a group named
after ``probe.name`` with

* a ``step`` dimension and an ``int64`` ``step`` coordinate;
* for probes measured on data, a ``split`` dimension with a string coordinate (``"train"``, ...): every
  variable of the probe's Dataset is stored with leading dims ``(step, split, *dims)``; probes that need
  no data (e.g. ``spectral_norm``) store ``(step, *dims)``; splits of different sizes share a variable
  (shorter ones are padded with NaN);
* 1-D coordinates (``layer`` names, ``frequency`` values, ...) stored once, without ``step``;
* ``wall_time`` (seconds since the Unix epoch) and ``probe_seconds`` per step.

Every variable is chunked one step long along ``step`` with the probe's own dims whole, so reading one
step of one variable reads one chunk.

Live run
--------
While a :class:`RunStore` is open the run lives in the folder ``<path>.live/``:

* ``attrs.nc``: the root attributes;
* ``lock``: the writer's pid and host name (a second writer is refused with :class:`RunLockedError`;
  the lock of a dead process on this host is taken over with a warning);
* ``step-<n>/<probe>.nc``: one netCDF4 file per probe and probed step, holding only that step. A step is
  written into a hidden temporary folder, each file ``fsync``-ed, and the folder renamed to
  ``step-<n>`` (``os.rename`` is atomic): a reader, or a process killed at any moment, sees all of the
  step or none of it, and nothing written before is touched again.

:meth:`RunStore.close` (``Monitor.close()``, the context manager's exit, or garbage collection of the
store) compacts the live folder into the single file at ``path`` (written to a temporary name, then
renamed over ``path``) and removes the folder. :func:`compact` does the same for the leftovers of a
killed run (``jacspec compact PATH``). Resuming a closed run keeps ``path`` as the first part of the
run and adds a live folder after it.

Files written by jacspec 0.1 (every dim unlimited, coordinates flagged by a ``jacspec_role``
attribute) are read by :func:`open_run` as well.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import gc
import glob
import json
import os
import shutil
import socket
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr
from xarray.backends.netCDF4_ import NETCDF4_PYTHON_LOCK

from jacspec._attrs import netcdf_safe, provenance, utc_now

__all__ = [
    "RunStore",
    "open_run",
    "open_runs",
    "compact",
    "live_folder",
    "run_attrs",
    "RunFileError",
    "RunLockedError",
    "StaleLockWarning",
    "FORMAT_NAME",
    "FORMAT_VERSION",
]

FORMAT_NAME = "jacspec-run"
FORMAT_VERSION = 2
_COORDINATE_ROLE = "jacspec_role"
_RESERVED_DIMS = ("step", "split")
_RESERVED_VARS = ("step", "split", "wall_time", "probe_seconds")
_LIVE_SUFFIX = ".live"
_ATTRS_FILE = "attrs.nc"
_LOCK_FILE = "lock"
_STEP_PREFIX = "step-"
_TMP_PREFIX = ".tmp-"
_MANIFEST_FILE = "manifest.json"


class RunFileError(ValueError):
    """A file that is not a jacspec run file, or whose layout does not fit a new result.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import jacspec
    >>> from jacspec.store import RunFileError
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "notes.nc"
    >>> _ = path.write_text("not a run")
    >>> try:
    ...     jacspec.open_run(path)
    ... except RunFileError:
    ...     print("not a jacspec run")
    not a jacspec run
    """


class RunLockedError(RuntimeError):
    """Another live writer (a :class:`jacspec.Monitor` or ``jacspec compact``) holds the run's lock.

    The message names the holder (pid and host) and the lock file.

    Examples
    --------
    >>> try:  # doctest: +SKIP
    ...     jacspec.Monitor(model, probes, path="run.nc", resume=True)
    ... except jacspec.RunLockedError as err:
    ...     print(err)  # names the process that writes run.nc
    """


class StaleLockWarning(RuntimeWarning):
    """The lock of a run left by a process that no longer exists (on this host) was taken over.

    Examples
    --------
    >>> import warnings
    >>> warnings.simplefilter("error", StaleLockWarning)  # refuse to take over a killed run's lock
    >>> warnings.resetwarnings()
    """


# -- small file-system helpers -------------------------------------------------------------------------


def live_folder(path: str | os.PathLike) -> Path:
    """The folder ``<path>.live`` that holds a run while it is written (see the module docstring).

    Examples
    --------
    >>> live_folder("runs/run.nc").name
    'run.nc.live'
    """
    path = Path(path)
    return path.with_name(path.name + _LIVE_SUFFIX)


def _fsync_path(path: Path) -> None:
    """Make a file's content, or a folder's entries, durable (folders: best effort)."""
    if path.is_dir():
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # pragma: no cover - platforms without directory handles
            return
        try:
            os.fsync(fd)
        except OSError:  # pragma: no cover
            pass
        finally:
            os.close(fd)
        return
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _remove_folder(folder: Path) -> None:
    """Remove a folder at once (rename to a hidden name, then delete it)."""
    _forget_handles(folder)
    gone = folder.with_name(f".{folder.name}.removing-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(folder, gone)
    _fsync_path(folder.parent)
    shutil.rmtree(gone, ignore_errors=True)


def _segments(live: Path) -> list[tuple[int, Path]]:
    """The committed steps of a live folder, ``(step, folder)`` sorted by step."""
    found = []
    try:
        entries = list(os.scandir(live))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name.startswith(_STEP_PREFIX) and entry.is_dir():
            try:
                found.append((int(entry.name[len(_STEP_PREFIX) :]), Path(entry.path)))
            except ValueError:
                continue
    return sorted(found)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Hold off the cyclic garbage collector around netCDF-C calls.

    A lazily opened run that is no longer referenced is freed by the cyclic collector, and xarray then
    closes its files from ``__del__``; if that happens inside another netCDF-C call (the collector runs
    at any allocation), netCDF-C, which is not reentrant, can crash the process.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_run_file(path: Path, last_step: bool = False) -> int | None:
    """Refuse a file that is not a jacspec run; with ``last_step``, return its largest step (None if none).

    Every direct netCDF4 call of this module holds xarray's netCDF lock: netCDF-C is not reentrant, and
    xarray closes files from garbage collection only when it can take that lock.
    """
    with _no_gc(), NETCDF4_PYTHON_LOCK:
        _forget_handles_locked()
        try:
            handle = netCDF4.Dataset(path, "r")
        except OSError as err:
            raise RunFileError(
                f"`path` {str(path)!r} is not a readable netCDF4 file, so it is not a jacspec run file "
                f"({err}). Choose another path."
            ) from err
        try:
            if getattr(handle, "jacspec_format", None) != FORMAT_NAME:
                raise RunFileError(
                    f"`path` {str(path)!r} was written by something else: it is a netCDF file without the "
                    f"attribute jacspec_format = {FORMAT_NAME!r}. Refusing to touch it; choose another path."
                )
            if not last_step:
                return None
            steps = [
                int(np.max(group.variables["step"][:]))
                for group in handle.groups.values()
                if "step" in group.variables and group.variables["step"].size > 0
            ]
        finally:
            handle.close()
    return max(steps) if steps else None


def _file_last_step(path: Path) -> int | None:
    """The largest step stored in a closed run file (None when it holds no step)."""
    return _check_run_file(path, last_step=True)


# -- the lock ----------------------------------------------------------------------------------------


def _read_lock(lock: Path) -> dict[str, Any] | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    return True


def _acquire_lock(live: Path, path: Path) -> Path:
    """Create ``live/lock`` for this process; raise :class:`RunLockedError` while a live process holds it.

    The lock is written whole under a temporary name and hard-linked to ``lock`` (``os.link`` fails if
    ``lock`` exists, atomically), so a lock file is never seen half-written.
    """
    lock = live / _LOCK_FILE
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}
    tmp = live / f"{_TMP_PREFIX}lock-{os.getpid()}-{time.monotonic_ns()}"
    tmp.write_text(json.dumps(mine))
    _fsync_path(tmp)
    try:
        for _ in range(5):
            try:
                os.link(tmp, lock)
            except FileExistsError:
                holder = _read_lock(lock)
                if holder is not None and (
                    holder.get("host") != mine["host"] or _pid_alive(int(holder.get("pid", -1)))
                ):
                    raise RunLockedError(
                        f"the run {str(path)!r} is being written by process {holder.get('pid')} on host "
                        f"{holder.get('host')!r} (since {holder.get('since')}; lock file {str(lock)!r}). Close "
                        "that Monitor first, or choose another path. If that process is gone (e.g. it ran on "
                        "another machine and was killed), delete the lock file."
                    ) from None
                warnings.warn(
                    f"the run {str(path)!r} was left by process {(holder or {}).get('pid')} on this host, which "
                    f"no longer runs; its lock {str(lock)!r} is taken over.",
                    StaleLockWarning,
                    stacklevel=4,
                )
                lock.unlink(missing_ok=True)
                continue
            _fsync_path(live)
            return lock
    finally:
        tmp.unlink(missing_ok=True)
    raise RunLockedError(f"could not take the lock {str(lock)!r} of the run {str(path)!r}; try again.")


def _release_lock(lock: Path) -> None:
    holder = _read_lock(lock)
    if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)


# -- building one step's dataset ------------------------------------------------------------------------


def _static_coords(ds: xr.Dataset) -> list[str]:
    """1-D coordinates, stored once without step (index coordinates and labels along a dim)."""
    return [str(key) for key in ds.coords if ds.coords[key].ndim == 1]


def _check_dtype(name: str, key: str, values: xr.DataArray) -> None:
    kind = values.dtype.kind
    if kind == "c":
        raise RunFileError(
            f"probe {name!r}: variable {key!r} is complex; a run file cannot store it. Store abs/angle or "
            "real/imag as two variables."
        )
    if kind not in "biufOUS":
        raise RunFileError(f"probe {name!r}: variable {key!r} of dtype {values.dtype} cannot be stored in a run file.")


def _pad_dims(parts: list[xr.Dataset], skip: Iterable[str]) -> list[xr.Dataset]:
    """Pad dims without an index coordinate to their largest size among ``parts`` (NaN at the end)."""
    skip = set(skip)
    sizes: dict[str, int] = {}
    for part in parts:
        for dim, size in part.sizes.items():
            if dim not in skip and dim not in part.indexes:
                sizes[str(dim)] = max(sizes.get(str(dim), 0), int(size))
    out = []
    for part in parts:
        pad = {dim: (0, n - part.sizes[dim]) for dim, n in sizes.items() if dim in part.dims and part.sizes[dim] < n}
        out.append(part.pad(pad) if pad else part)
    return out


def _clear_encoding(ds: xr.Dataset) -> xr.Dataset:
    for key in ds.variables:
        ds[key].encoding = {}
    ds.encoding = {}
    return ds


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Chunks of one step along ``step``, every other dim whole; strings left to netCDF's defaults."""
    encoding: dict[str, dict[str, Any]] = {}
    for key, var in ds.variables.items():
        if var.ndim == 0 or var.dtype.kind not in "biuf" or 0 in var.shape:
            continue
        chunks = tuple(1 if dim == "step" else int(n) for dim, n in zip(var.dims, var.shape))
        encoding[str(key)] = {"chunksizes": chunks}
    return encoding


# -- the writer -----------------------------------------------------------------------------------------


def _finalize(path: Path, live: Path, lock: Path, at_exit: bool = False) -> None:
    """Garbage collection or interpreter exit of an open store: compact, as close() would.

    The collector may run while netCDF code (xarray's or ours) holds the netCDF lock, which is not
    reentrant: then the compaction waits for interpreter exit instead of deadlocking.
    """
    if NETCDF4_PYTHON_LOCK.locked() and not at_exit:
        atexit.register(_finalize, path, live, lock, True)
        return
    try:
        if live.is_dir():
            _compact(path, live)
    except Exception as err:  # noqa: BLE001 - never raise from a finalizer
        warnings.warn(
            f"jacspec.store: the run {str(path)!r} could not be compacted when its store was released ({err}); "
            f"its steps are kept in {str(live)!r}. Run `jacspec compact {path}`.",
            RuntimeWarning,
            stacklevel=1,
        )
        _release_lock(lock)


class RunStore:
    """Append-only writer of a jacspec run (see the module docstring for the files).

    Each :meth:`append` writes that step alone, as one netCDF4 file per probe in a new folder
    ``<path>.live/step-<n>/`` made visible by an atomic rename: its cost is the size of that step, the
    same at the 10th and the 10 000th step. :meth:`close` compacts the run into the single netCDF4 file
    ``path`` (cost: the run's size, once).

    Parameters
    ----------
    path : str or Path
        The run file. Its directory must exist and be writable.
    resume : bool
        Continue an existing run (closed, or killed and never closed) after its last step. Without
        ``resume`` an existing run is an error, never silently overwritten.
    overwrite : bool
        Replace an existing run (explicitly). Ignored with ``resume``.
    attrs : mapping, optional
        Extra root attributes (made netCDF-legal: dicts become JSON).

    Raises
    ------
    RunLockedError
        Another live process writes this run.
    RunFileError
        ``path`` is a file that is not a jacspec run (it is never touched).

    Examples
    --------
    >>> store = RunStore("run.nc")  # doctest: +SKIP
    >>> store.append(0, {"spectral_norm": {None: SpectralNorm().measure(model)}})  # doctest: +SKIP
    >>> store.close()  # run.nc is now one netCDF4 file  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        resume: bool = False,
        overwrite: bool = False,
        attrs: Mapping[str, Any] | None = None,
    ):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a str or os.PathLike, but got {type(path).__name__} {path!r}.")
        self.path = Path(path)
        self.live = live_folder(self.path)
        self.closed = False
        self.last_step: int | None = None
        self._groups: dict[str, dict[str, Any]] = {}
        if self.path.is_dir():
            raise IsADirectoryError(f"`path` {str(self.path)!r} is a directory; give a file name such as run.nc.")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(
                f"`path` {str(self.path)!r} is in a directory that does not exist "
                f"({str(self.path.parent)!r}); create it first (os.makedirs)."
            )
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise PermissionError(
                errno.EACCES,
                f"`path` {str(self.path)!r} is in a directory that is not writable ({str(self.path.parent)!r}); "
                "choose a writable directory.",
            )
        base = self.path.exists()
        live = self.live.is_dir()
        if base and (resume or overwrite):
            _check_run_file(self.path)  # never touch a file that is not a jacspec run
        if base and not resume and not overwrite:
            raise FileExistsError(
                f"`path` {str(self.path)!r} already exists. Pass resume=True to continue that run, "
                "overwrite=True to replace it, or choose another path."
            )
        if live and not resume and not overwrite:
            raise FileExistsError(
                f"`path` {str(self.path)!r} already exists as the leftovers of a run that was not closed "
                f"({str(self.live)!r}). Pass resume=True to continue that run, overwrite=True to replace it, "
                f"or choose another path; `jacspec compact {self.path}` turns the leftovers into the run file."
            )
        self.path.with_name(self.path.name + ".partial").unlink(missing_ok=True)  # left by jacspec 0.1
        created = False
        if not live:
            try:
                os.mkdir(self.live)
                created = True
            except FileExistsError:  # created by another process in between: the lock decides
                pass
            except OSError as err:
                raise type(err)(
                    err.errno, f"cannot create the live folder {str(self.live)!r} of the run: {err}"
                ) from err
        self._lock = _acquire_lock(self.live, self.path)
        try:
            if overwrite and not resume:
                for _, folder in _segments(self.live):
                    shutil.rmtree(folder)
                (self.live / _ATTRS_FILE).unlink(missing_ok=True)
                if base:
                    self.path.unlink()
                base = False
            for entry in os.scandir(self.live):  # steps half-written by a killed process
                if entry.name.startswith(_TMP_PREFIX) and entry.is_dir():
                    shutil.rmtree(entry.path, ignore_errors=True)
                elif entry.name.startswith(_TMP_PREFIX):
                    Path(entry.path).unlink(missing_ok=True)
            if not (self.live / _ATTRS_FILE).exists():
                root_attrs = {"jacspec_format": FORMAT_NAME, "jacspec_format_version": FORMAT_VERSION}
                root_attrs.update(provenance())
                root_attrs["created"] = utc_now()
                root_attrs.update(attrs or {})
                tmp = self.live / f"{_TMP_PREFIX}{_ATTRS_FILE}"
                with NETCDF4_PYTHON_LOCK, netCDF4.Dataset(tmp, "w", format="NETCDF4") as handle:
                    handle.setncatts(netcdf_safe(root_attrs))
                _fsync_path(tmp)
                os.replace(tmp, self.live / _ATTRS_FILE)
                _fsync_path(self.live)
            if resume:
                steps = [step for step, _ in _segments(self.live)]
                base_last = _file_last_step(self.path) if base else None
                candidates = [s for s in [base_last, *steps] if s is not None]
                self.last_step = max(candidates) if candidates else None
                self._load_groups()
        except BaseException:
            _release_lock(self._lock)
            if created:
                shutil.rmtree(self.live, ignore_errors=True)
            raise
        self._finalizer = weakref.finalize(self, _finalize, self.path, self.live, self._lock)

    @_no_gc()
    def _load_groups(self) -> None:
        """Group layouts of the stored steps (split or not, 1-D coordinates), to check new results.

        Reads the closed file's and the last live segments' metadata only (no dask, no data).
        """
        sources: list[xr.Dataset] = []
        opened: list[Any] = []
        try:
            if self.path.exists():
                _forget_handles()
                base = xr.open_datatree(self.path, engine="netcdf4")
                opened.append(base)
                sources += [_decode_roles(node.to_dataset(inherit=False)) for node in base.children.values()]
            last: dict[str, Path] = {}
            for _, folder in _segments(self.live):
                for file in folder.glob("*.nc"):
                    last[file.stem] = file
            for file in last.values():
                _forget_handles()
                ds = xr.open_dataset(file, engine="netcdf4")
                opened.append(ds)
                sources.append(ds.assign_attrs(_jacspec_group=file.stem))
            names = [ds.attrs.get("_jacspec_group") for ds in sources]
            if self.path.exists():
                names[: len(base.children)] = [str(n) for n in base.children]
            for name, ds in zip(names, sources):
                static = {key: np.asarray(ds[key].values) for key in _static_coords(ds) if key not in _RESERVED_DIMS}
                known = self._groups.get(name, {"static": {}})["static"]
                for key, values in known.items():
                    if key not in static or len(static[key]) < len(values):
                        static[key] = values
                self._groups[name] = {"has_split": "split" in ds.dims, "static": static}
        finally:
            for item in opened:
                item.close()

    @_no_gc()
    def append(
        self,
        step: int,
        results: Mapping[str, Mapping[str | None, xr.Dataset]],
        probe_seconds: Mapping[str, Mapping[str | None, float]] | None = None,
    ) -> None:
        """Append one probed step and make it durable (all of it, or nothing on error or kill).

        Parameters
        ----------
        step : int
            The training step; steps must increase.
        results : mapping
            ``{probe name: {split name or None: Dataset}}``; ``None`` as the only split key stores the
            probe without a ``split`` dimension.
        probe_seconds : mapping, optional
            The same keys, with the time each measurement took.

        Raises
        ------
        OSError
            Writing failed (disk full, ...): the message names the run; every earlier step is kept.
        """
        if self.closed:
            raise RuntimeError(f"the run store of {str(self.path)!r} is closed; open a new one with resume=True.")
        if not results:
            return
        step = int(step)
        if self.last_step is not None and step <= self.last_step:
            raise RunFileError(
                f"step {step} is not after the last stored step {self.last_step} of {str(self.path)!r}; "
                "steps must increase."
            )
        datasets = {}
        updates = {}
        for name, by_split in results.items():
            datasets[name], updates[name] = self._step_dataset(
                str(name), step, by_split, (probe_seconds or {}).get(name, {})
            )
        tmp = self.live / f"{_TMP_PREFIX}{_STEP_PREFIX}{step}-{os.getpid()}"
        final = self.live / f"{_STEP_PREFIX}{step:012d}"
        try:
            os.mkdir(tmp)
            manifest: dict[str, Any] = {"step": step, "groups": {}}
            for name, ds in datasets.items():
                file = tmp / f"{name}.nc"
                ds.to_netcdf(file, engine="netcdf4", format="NETCDF4", encoding=_encoding(ds))
                _fsync_path(file)
                manifest["groups"][name] = {
                    str(key): [list(var.dims), list(var.shape), var.dtype.str]
                    for key, var in ds.variables.items()
                    if "step" in var.dims
                }
            (tmp / _MANIFEST_FILE).write_text(json.dumps(manifest))
            _fsync_path(tmp / _MANIFEST_FILE)
            _fsync_path(tmp)
            os.rename(tmp, final)
            _fsync_path(self.live)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, OSError):
                message = (
                    f"could not write step {step} of the run {str(self.path)!r} (into {str(self.live)!r}): "
                    f"{err.strerror or err}. Every earlier step is kept; free the space or fix the cause and "
                    "continue with Monitor(..., resume=True)."
                )
                try:
                    new = type(err)(err.errno, message)
                except TypeError:  # pragma: no cover - OSError subclasses with other signatures
                    new = OSError(err.errno, message)
                raise new from err
            raise
        for name, update in updates.items():
            self._groups[name] = update
        self.last_step = step

    def _step_dataset(
        self,
        name: str,
        step: int,
        by_split: Mapping[str | None, xr.Dataset],
        seconds: Mapping[str | None, float],
    ) -> tuple[xr.Dataset, dict[str, Any]]:
        """One probe's results at one step as a Dataset with leading dims ``(step[, split])``."""
        if not isinstance(by_split, Mapping) or not by_split:
            raise RunFileError(f"probe {name!r}: results must be a non-empty mapping of split names to Datasets.")
        has_split = list(by_split) != [None]
        if has_split and None in by_split:
            raise RunFileError(f"probe {name!r}: mixing results with and without a split is not supported.")
        known = self._groups.get(name)
        if known is not None and known["has_split"] != has_split:
            raise RunFileError(
                f"probe {name!r} was stored {'with' if not has_split else 'without'} a `split` dimension "
                "before; a run file cannot mix both."
            )
        static: dict[str, np.ndarray] = dict(known["static"]) if known else {}
        parts = []
        nonstatic: set[str] = set()
        for split, ds in by_split.items():
            if not isinstance(ds, xr.Dataset):
                raise RunFileError(f"probe {name!r}, split {split!r}: expected an xarray.Dataset, got {type(ds)!r}.")
            for dim in ds.dims:
                if dim in _RESERVED_DIMS:
                    raise RunFileError(f"dimension name {dim!r} is reserved for the run file; rename it in the probe.")
            for key, var in ds.variables.items():
                if key in _RESERVED_VARS:
                    raise RunFileError(f"probe {name!r}: variable name {key!r} is reserved by the run file.")
                _check_dtype(name, str(key), var)
            for key in _static_coords(ds):
                values = np.asarray(ds.coords[key].values)
                old = static.get(key)
                if old is not None:
                    n = min(len(old), len(values))
                    if old.dtype.kind in "OUS" or values.dtype.kind in "OUS":
                        same = [str(a) for a in old[:n]] == [str(b) for b in values[:n]]
                    else:
                        same = np.array_equal(old[:n], values[:n].astype(old.dtype), equal_nan=True)
                    if not same:
                        raise RunFileError(
                            f"probe {name!r}: coordinate {key!r} changed between results; a run file stores 1-D "
                            "coordinates once (put values that change with the step or split in data variables)."
                        )
                    if len(values) <= len(old):
                        continue
                static[key] = values
            keys = [str(key) for key in ds.coords if ds.coords[key].ndim != 1]
            nonstatic.update(keys)
            parts.append(ds.reset_coords(keys))
        first = next(iter(by_split.values()))
        if has_split:
            splits = [str(s) for s in by_split]
            parts = _pad_dims(parts, skip=())
            combined = xr.concat(
                parts,
                dim=pd.Index(splits, name="split"),
                data_vars="all",
                coords="minimal",
                compat="override",
                join="outer",
                combine_attrs="override",
            )
            combined["split"].attrs = {"long_name": "data split"}
        else:
            combined = parts[0]
        combined = combined.expand_dims(step=np.asarray([step], dtype=np.int64))
        combined = combined.set_coords(sorted(nonstatic & set(combined.variables)))
        combined["step"].attrs = {"long_name": "training step", "units": "1"}
        combined["wall_time"] = xr.DataArray(
            [time.time()],
            dims=("step",),
            attrs={"long_name": "wall-clock time when the step was probed (Unix epoch)", "units": "s"},
        )
        lead = ("step", "split") if has_split else ("step",)
        keys = list(by_split)
        spent = np.array([[float(seconds.get(k, np.nan)) for k in keys]]) if has_split else [seconds.get(None, np.nan)]
        combined["probe_seconds"] = xr.DataArray(
            np.asarray(spent, dtype=np.float64), dims=lead, attrs={"long_name": "time the probe took", "units": "s"}
        )
        combined.attrs = netcdf_safe(dict(first.attrs))
        for key in combined.variables:
            combined[key].attrs = netcdf_safe(dict(combined[key].attrs))
        return _clear_encoding(combined), {"has_split": has_split, "static": static}

    def close(self) -> None:
        """Compact the live folder into the single netCDF4 file ``path`` and remove the folder.

        Idempotent. If compaction fails the live folder is kept (``jacspec compact PATH`` retries).
        """
        if self.closed:
            return
        self.closed = True
        self._finalizer.detach()
        try:
            _compact(self.path, self.live)
        except BaseException:
            _release_lock(self._lock)
            raise

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- compaction -----------------------------------------------------------------------------------------


@_no_gc()
def _compact(path: Path, live: Path) -> Path:
    """Write base + segments into ``path`` (temporary name, fsync, rename), then remove ``live``."""
    tree = _open_parts(path, live)
    tmp = path.with_name(f".{path.name}.compact-{os.getpid()}.tmp")
    try:
        tree.attrs["jacspec_format_version"] = FORMAT_VERSION
        encoding = {}
        for node in tree.subtree:
            ds = node.to_dataset(inherit=False)
            for key in ds.variables:
                node[key].encoding = {}
            encoding[node.path] = _encoding(ds)
        import dask

        # synchronous: netCDF calls are serialized anyway, and it works at interpreter exit (finalizer)
        with dask.config.set(scheduler="synchronous"):
            tree.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
        _fsync_path(tmp)
    except BaseException as err:
        tree.close()
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise type(err)(
                err.errno,
                f"could not compact the run {str(path)!r} ({err.strerror or err}); its steps are kept in "
                f"{str(live)!r}. Free the space and run `jacspec compact {path}`.",
            ) from err
        raise
    tree.close()
    os.replace(tmp, path)
    _fsync_path(path.parent)
    _remove_folder(live)
    return path


def compact(path: str | os.PathLike) -> Path:
    """Turn the leftovers of a run that was not closed (``<path>.live/``) into the single file ``path``.

    What :meth:`RunStore.close` does at the end of a run, for a run whose process was killed. A run
    that is already one file is left as it is.

    Parameters
    ----------
    path : str or Path
        The run file (``run.nc``, not the ``run.nc.live`` folder).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    RunLockedError
        A live process still writes the run.
    FileNotFoundError
        Neither ``path`` nor its live folder exists.

    Examples
    --------
    >>> jacspec.store.compact("runs/killed.nc")  # doctest: +SKIP
    PosixPath('runs/killed.nc')
    """
    path = Path(path)
    if path.name.endswith(_LIVE_SUFFIX) and path.is_dir():
        path = path.with_name(path.name[: -len(_LIVE_SUFFIX)])
    live = live_folder(path)
    if not live.is_dir():
        if path.exists():
            _check_run_file(path)
            return path
        raise FileNotFoundError(f"`path` {str(path)!r} does not exist, and neither does its live folder {str(live)!r}.")
    if path.exists():
        _check_run_file(path)
    lock = _acquire_lock(live, path)
    try:
        return _compact(path, live)
    except BaseException:
        _release_lock(lock)
        raise


# -- reading --------------------------------------------------------------------------------------------


def _decode_roles(ds: xr.Dataset) -> xr.Dataset:
    """Coordinates flagged by jacspec 0.1's ``jacspec_role`` attribute become coordinates."""
    flagged = [k for k, v in ds.variables.items() if v.attrs.get(_COORDINATE_ROLE) == "coordinate"]
    for key in flagged:
        ds[key].attrs.pop(_COORDINATE_ROLE)
    return ds.set_coords(flagged)


def _concat_steps(parts: list[xr.Dataset]) -> xr.Dataset:
    if len(parts) == 1:
        return parts[0]
    parts = _pad_dims(parts, skip=("step",))
    return xr.concat(
        parts,
        dim="step",
        data_vars="all",
        coords="minimal",
        compat="override",
        join="outer",
        combine_attrs="override",
    )


_HANDLES: OrderedDict[tuple[str, int, int], netCDF4.Dataset] = OrderedDict()
_MAX_HANDLES = 64


def _read_raw(file: str, key: str, dtype: np.dtype, group: str | None = None, index: Any = Ellipsis) -> np.ndarray:
    """``index`` of one variable of a file, as xarray would decode it (netCDF4, raw values; handles cached).

    Every lazy read of :func:`open_run` comes here, under xarray's netCDF lock: no xarray file handle
    outlives ``open_run`` (xarray 2026.9 can crash when a file it shares between two opens is closed).
    """
    info = os.stat(file)
    cache_key = (file, info.st_ino, info.st_mtime_ns)
    with _no_gc(), NETCDF4_PYTHON_LOCK:
        handle = _HANDLES.pop(cache_key, None)
        if handle is None:
            handle = netCDF4.Dataset(file, "r")
            while len(_HANDLES) >= _MAX_HANDLES:
                _HANDLES.popitem(last=False)[1].close()
        _HANDLES[cache_key] = handle
        node = handle if group is None else handle.groups[group]
        var = node.variables[key]
        var.set_auto_maskandscale(False)
        data = np.asarray(var[index])
    if dtype.kind == "b":
        return data.astype(bool)
    return data.astype(dtype, copy=False)


class _FileVar:
    """A lazy array-like over one variable of a closed run file (read through :func:`_read_raw`)."""

    def __init__(self, file: str, group: str, key: str, shape: tuple[int, ...], dtype: np.dtype):
        self.file, self.group, self.key, self.shape, self.dtype = file, group, key, shape, dtype
        self.ndim = len(shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        return _read_raw(self.file, self.key, self.dtype, self.group, index)


def _lazy(name: str, key: str, source: Any, var: xr.Variable) -> xr.Variable:
    """``var`` with its data replaced by a dask array over ``source``, chunked one step long."""
    import dask.array

    data = dask.array.from_array(
        source,
        chunks=(1, *var.shape[1:]),
        asarray=False,
        lock=False,
        name=f"jacspec-{name}-{key}-{time.monotonic_ns()}",
        meta=np.empty((0,) * var.ndim, dtype=var.dtype),
    )
    return xr.Variable(var.dims, data, attrs=var.attrs)


def _rebuild(ds: xr.Dataset, variables: dict[Any, xr.Variable]) -> xr.Dataset:
    coords = list(ds.coords)
    out = xr.Dataset({k: v for k, v in variables.items() if k not in coords}, attrs=dict(ds.attrs))
    return out.assign_coords({k: variables[k] for k in coords})


def _lazy_group(path: Path, group: str, ds: xr.Dataset) -> xr.Dataset:
    """A group of a closed file opened by xarray (not dask): metadata and 1-D coordinates loaded, the
    per-step numeric variables dask arrays read through :func:`_read_raw`, so the xarray handle can close."""
    variables = {}
    for key, var in ds.variables.items():
        if var.dims[:1] == ("step",) and var.dtype.kind in "biuf" and key != "step" and var.size:
            variables[key] = _lazy(group, str(key), _FileVar(str(path), group, str(key), var.shape, var.dtype), var)
        else:
            variables[key] = xr.Variable(var.dims, np.asarray(var.values), attrs=var.attrs)
    return _rebuild(ds, variables)


def _forget_handles(folder: Path | None = None, file: Path | None = None) -> None:
    """Close the reader's cached netCDF4 handles (all of them by default; the arguments are accepted for
    clarity at the call sites). Called before any other open of a run's files: netCDF4 1.7 / HDF5 can
    crash when a file has two handles in one process and one is closed, then the file is opened again."""
    with _no_gc(), NETCDF4_PYTHON_LOCK:
        _forget_handles_locked()


def _forget_handles_locked() -> None:
    while _HANDLES:
        _HANDLES.popitem(last=False)[1].close()


class _SegmentStack:
    """A lazy array-like: one variable of many one-step segment files stacked along axis 0 (``step``)."""

    def __init__(self, files: list[str], key: str, shape: tuple[int, ...], dtype: np.dtype):
        self.files, self.key, self.dtype = files, key, dtype
        self.shape = (len(files), *shape[1:])
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        first, rest = index[0], index[1:]
        rows = range(len(self.files))[first]
        if isinstance(rows, int):
            return _read_raw(self.files[rows], self.key, self.dtype)[(0, *rest)]
        blocks = [_read_raw(self.files[i], self.key, self.dtype)[(slice(None), *rest)] for i in rows]
        if not blocks:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)[(slice(None), *rest)]
        return np.concatenate(blocks, axis=0)


def _stack_segments(name: str, entries: list[tuple[int, Path, dict]], opened: list[Any]) -> xr.Dataset:
    """One group over live segments, lazily: dask arrays reading each step's file on demand.

    The structure comes from the first segment (opened with xarray); each step's manifest gives its
    shapes. Segments whose shapes differ are combined by xarray instead (padded with NaN).
    """
    _forget_handles()
    with xr.open_dataset(entries[0][1], engine="netcdf4") as handle:
        template = _clear_encoding(handle.copy())
        for key, var in template.variables.items():  # 1-D coordinates now; per-step data stays on disk
            if "step" not in var.dims and key not in template.indexes:
                var.load()
    first = entries[0][2]
    fast = all(e[2] == first for e in entries) and all(
        "step" not in var.dims or (var.dtype.kind in "biuf" and var.dims[:1] == ("step",))
        for var in template.variables.values()
    )
    if not fast:  # rare (shapes that change between steps): read with xarray, in memory
        parts = []
        for _, file, _ in entries:
            _forget_handles()
            with xr.open_dataset(file, engine="netcdf4") as handle:
                parts.append(_clear_encoding(handle.load()))
        return _concat_steps(parts)
    files = [str(e[1]) for e in entries]
    steps = np.asarray([e[0] for e in entries], dtype=np.int64)
    variables = {}
    for key, var in template.variables.items():
        if "step" not in var.dims:
            variables[key] = var
        elif key == "step":
            variables[key] = xr.Variable(("step",), steps, attrs=var.attrs)
        else:
            variables[key] = _lazy(name, str(key), _SegmentStack(files, str(key), var.shape, var.dtype), var)
    return _rebuild(template, variables)


def _open_parts(path: Path, live: Path) -> xr.DataTree:
    """A lazy DataTree of a run: the closed file ``path`` (if any) followed by the live segments."""
    opened: list[Any] = []
    groups: dict[str, list[xr.Dataset]] = {}
    root_attrs: dict[str, Any] = {}
    base_last = None
    try:
        if path.exists():
            _check_run_file(path)
            _forget_handles()
            with xr.open_datatree(path, engine="netcdf4") as base:
                root_attrs = dict(base.attrs)
                for node in base.subtree:
                    if node is base:
                        continue
                    ds = _clear_encoding(_decode_roles(node.to_dataset(inherit=False)))
                    ds = _lazy_group(path, str(node.name), ds)
                    groups.setdefault(node.path, []).append(ds)
                    if "step" in ds.dims and ds.sizes["step"]:
                        last = int(ds["step"].values.max())
                        base_last = last if base_last is None else max(base_last, last)
        if live.is_dir():
            if not root_attrs:
                attrs_file = live / _ATTRS_FILE
                if not attrs_file.exists():
                    raise RunFileError(
                        f"the live folder {str(live)!r} has no {_ATTRS_FILE}: it is not a jacspec run (or it "
                        "was killed before writing anything)."
                    )
                _forget_handles()
                with xr.open_dataset(attrs_file, engine="netcdf4") as handle:
                    root_attrs = dict(handle.attrs)
            by_group: dict[str, list[tuple[int, Path, dict]]] = {}
            for step, folder in _segments(live):
                if base_last is not None and step <= base_last:
                    continue  # already in the closed file (a compaction killed before removing the folder)
                try:
                    manifest = json.loads((folder / _MANIFEST_FILE).read_text())["groups"]
                except (OSError, ValueError, KeyError):
                    manifest = {file.stem: {"unknown": str(file)} for file in folder.glob("*.nc")}
                for group, shapes in sorted(manifest.items()):
                    by_group.setdefault(group, []).append((step, folder / f"{group}.nc", shapes))
            for group, entries in by_group.items():
                groups.setdefault("/" + group, []).append(_stack_segments(group, entries, opened))
        combined = {"/": xr.Dataset(attrs=root_attrs)}
        for node_path, parts in groups.items():
            combined[node_path] = _concat_steps(parts)
    except BaseException:
        for item in opened:
            item.close()
        raise
    tree = xr.DataTree.from_dict(combined)

    def close() -> None:
        for item in opened:
            item.close()
        _forget_handles(live, path)

    tree.set_close(close)
    return tree


def open_run(path: str | os.PathLike) -> xr.DataTree:
    """Open a run lazily: closed (one file), live (being written) or killed (never closed), or from 0.1.

    Parameters
    ----------
    path : str or Path
        The run file (``run.nc``); a live or killed run is read from ``run.nc.live/``.

    Returns
    -------
    xarray.DataTree
        One child per probe name; ``tree["point_jacobian"].ds`` has dims ``("step", "split", ...)``.
        Variables are dask arrays (chunks of one step): nothing is read until ``.values``,
        ``.load()`` or ``.compute()``, so one step of one variable of a large run costs one chunk.
        ``tree.close()`` releases the files. A live run shows the steps committed when it was opened.

    Raises
    ------
    FileNotFoundError
        Neither ``path`` nor its live folder exists.
    RunFileError
        ``path`` is not a jacspec run file.

    Examples
    --------
    >>> tree = jacspec.open_run("runs/demo.nc")  # doctest: +SKIP
    >>> tree["spectral_norm"].ds["spectral_norm"].dims  # doctest: +SKIP
    ('step', 'layer')
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike, but got {type(path).__name__} {path!r}.")
    path = Path(path)
    if path.name.endswith(_LIVE_SUFFIX) and path.is_dir():
        path = path.with_name(path.name[: -len(_LIVE_SUFFIX)])
    live = live_folder(path)
    if not path.exists() and not live.is_dir():
        raise FileNotFoundError(f"`path` {str(path)!r} does not exist (nor a live run {str(live)!r}).")
    if path.is_dir():
        raise IsADirectoryError(f"`path` {str(path)!r} is a directory; give the run file, such as run.nc.")
    return _open_parts(path, live)


def _resolve_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        pattern = str(paths)
        if glob.has_magic(pattern):
            found = sorted(
                {p[: -len(_LIVE_SUFFIX)] if p.endswith(_LIVE_SUFFIX) else p for p in glob.glob(pattern)}
                | {p[: -len(_LIVE_SUFFIX)] for p in glob.glob(pattern + _LIVE_SUFFIX)}
            )
            if not found:
                raise ValueError(
                    f"`paths` {pattern!r} matches no run file; check the pattern (e.g. 'runs/*.nc') and the folder."
                )
            return [Path(p) for p in found]
        return [Path(pattern)]
    if not isinstance(paths, Sequence):
        raise TypeError(f"`paths` must be a glob pattern, a path or a list of paths, but got {type(paths).__name__}.")
    if len(paths) == 0:
        raise ValueError("`paths` is an empty list; give at least one run file.")
    for i, p in enumerate(paths):
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"`paths[{i}]` must be a str or os.PathLike, but got {type(p).__name__} {p!r}.")
    return [Path(p) for p in paths]


def open_runs(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    dim: str = "run",
    labels: Sequence[Any] | None = None,
) -> xr.DataTree:
    """Open many runs lazily as one DataTree, stacked along a new dimension ``dim``.

    Each probe group of the result holds that probe's variables of every run with a leading ``dim``
    (runs with different step sets are joined on the union of steps: missing steps are NaN). Nothing
    is read until computed; dask does the work (``dask.distributed`` when a sweep outgrows one machine).

    Parameters
    ----------
    paths : str, Path or list of them
        A glob pattern (``"runs/*.nc"``, sorted; live and killed runs match too) or run files.
    dim : str
        Name of the new dimension. Default ``"run"``.
    labels : sequence, optional
        The coordinate along ``dim`` (e.g. the swept hyperparameter); by default the file names without
        their suffix. A ``path`` coordinate along ``dim`` always holds the files.

    Returns
    -------
    xarray.DataTree
        One child per probe found in any run; root attribute ``jacspec_runs`` (JSON list of files).

    Raises
    ------
    ValueError
        An empty glob, labels of the wrong length, or runs whose coordinates (other than ``step``)
        conflict: the message names the two files.

    Examples
    --------
    >>> sweep = jacspec.open_runs("runs/noise-*.nc", labels=[0.0, 0.2, 0.4])  # doctest: +SKIP
    >>> sweep["point_jacobian"].ds["sigma"].mean(["sample", "component"]).compute()  # doctest: +SKIP
    """
    if not isinstance(dim, str) or not dim or dim in _RESERVED_DIMS:
        raise ValueError(f"`dim` must be a new dimension name (not 'step' or 'split'), but got {dim!r}.")
    files = _resolve_paths(paths)
    if labels is None:
        stems = [p.stem for p in files]
        labels = stems if len(set(stems)) == len(stems) else [str(p) for p in files]
    else:
        labels = list(labels)
        if len(labels) != len(files):
            raise ValueError(
                f"`labels` has {len(labels)} entries but `paths` gives {len(files)} runs; give one label per run."
            )
    trees = [open_run(p) for p in files]
    try:
        names: list[str] = []
        for tree in trees:
            names += [str(n) for n in tree.children if str(n) not in names]
        combined: dict[str, xr.Dataset] = {"/": xr.Dataset(attrs={"jacspec_runs": json.dumps([str(p) for p in files])})}
        for name in names:
            parts, where = [], []
            reference: dict[str, tuple[np.ndarray, Path]] = {}
            for file, tree in zip(files, trees):
                if name not in tree.children:
                    continue
                ds = tree[name].to_dataset(inherit=False)
                if dim in ds.dims or dim in ds.variables:
                    raise ValueError(
                        f"`dim` {dim!r} is already a name in probe {name!r} of {str(file)!r}; choose another."
                    )
                for key, coord in ds.coords.items():
                    if "step" in coord.dims:
                        continue
                    values = np.asarray(coord.values)
                    if key not in reference:
                        reference[str(key)] = (values, file)
                        continue
                    old, old_file = reference[str(key)]
                    same = old.shape == values.shape and (
                        [str(a) for a in old.ravel()] == [str(b) for b in values.ravel()]
                        if old.dtype.kind in "OUS" or values.dtype.kind in "OUS"
                        else np.array_equal(old, values, equal_nan=True)
                    )
                    if not same:
                        raise ValueError(
                            f"probe {name!r}: coordinate {key!r} differs between {str(old_file)!r} and "
                            f"{str(file)!r}, so the runs cannot be stacked along {dim!r}. Open those runs apart "
                            "(jacspec.open_run) or select matching ones."
                        )
                parts.append(ds)
                where.append(len(parts) - 1)
            run_labels = [labels[i] for i, (f, t) in enumerate(zip(files, trees)) if name in t.children]
            run_paths = [str(f) for f, t in zip(files, trees) if name in t.children]
            stacked = xr.concat(
                parts,
                dim=pd.Index(run_labels, name=dim),
                data_vars="all",
                coords="minimal",
                compat="override",
                join="outer",
                combine_attrs="drop_conflicts",
            )
            stacked = stacked.assign_coords(path=(dim, run_paths))
            stacked[dim].attrs = {"long_name": "run"}
            stacked["path"].attrs = {"long_name": "run file"}
            combined["/" + name] = stacked
    except BaseException:
        for tree in trees:
            tree.close()
        raise
    sweep = xr.DataTree.from_dict(combined)

    def close() -> None:
        for tree in trees:
            tree.close()

    sweep.set_close(close)
    return sweep


def run_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The root attributes of a run (closed or live), with JSON strings decoded.

    Examples
    --------
    >>> run_attrs("runs/demo.nc")["jacspec_format"]  # doctest: +SKIP
    'jacspec-run'
    """
    tree = open_run(path)
    try:
        attrs = dict(tree.attrs)
    finally:
        tree.close()
    for key, value in attrs.items():
        if isinstance(value, str) and value[:1] in "{[":
            try:
                attrs[key] = json.loads(value)
            except ValueError:
                pass
    return attrs
