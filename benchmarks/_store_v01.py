"""The jacspec 0.1 run store, kept verbatim for the store benchmark and the 0.1-compatibility tests.

Each append copies the whole run file, appends one step with netCDF4 and renames the copy over the
file; every dim is unlimited (netCDF-C then picks 38 x 38 x 38 chunks). Not used by jacspec itself.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr

from jacspec._attrs import netcdf_safe, provenance, utc_now

__all__ = ["RunStoreV01"]

FORMAT_NAME = "jacspec-run"
FORMAT_VERSION = 1
_COORDINATE_ROLE = "jacspec_role"
_RESERVED_DIMS = ("step", "split")


class RunFileError(ValueError):
    """A file that is not a jacspec run file, or whose layout does not fit a new result."""


def _check_run_file(path: Path) -> netCDF4.Dataset:
    try:
        handle = netCDF4.Dataset(path, "r")
    except OSError as err:
        raise RunFileError(
            f"`path` {str(path)!r} is not a readable netCDF4 file, so it is not a jacspec run file "
            f"({err}). Choose another path."
        ) from err
    if getattr(handle, "jacspec_format", None) != FORMAT_NAME:
        handle.close()
        raise RunFileError(
            f"`path` {str(path)!r} was written by something else: it is a netCDF file without the "
            f"attribute jacspec_format = {FORMAT_NAME!r}. Refusing to touch it; choose another path."
        )
    return handle


def _netcdf_dtype(values: np.ndarray) -> Any:
    kind = values.dtype.kind
    if kind in "OUS":
        return str
    if kind == "b":
        return "i1"
    if kind == "f":
        return values.dtype
    if kind in "iu":
        return values.dtype
    if kind == "c":
        raise RunFileError("complex variables cannot be stored in a run file; store abs/angle or real/imag.")
    raise RunFileError(f"variables of dtype {values.dtype} cannot be stored in a run file.")


def _as_numpy(variable: xr.DataArray) -> np.ndarray:
    values = np.asarray(variable.values)
    if values.dtype.kind in "US":
        values = values.astype(object)
    if values.dtype.kind == "b":
        values = values.astype(np.int8)
    return values


def _written_length(var) -> int:
    """Number of leading entries of a 1-D variable that were written (not fill / empty string)."""
    values = var[:]
    if values.dtype.kind == "O":
        filled = np.array([v not in (None, "") for v in values], dtype=bool)
    else:
        filled = ~np.ma.getmaskarray(values)
    return int(np.argmin(filled)) if not filled.all() else len(filled)


class RunStoreV01:
    """Append-only writer of a jacspec run file (see the module docstring for the layout).

    Parameters
    ----------
    path : str or Path
        The run file. Its directory must exist.
    resume : bool
        Append to an existing run file (after its last step). Without ``resume`` an existing file is
        an error, never silently overwritten.
    overwrite : bool
        Replace an existing run file (explicitly). Ignored with ``resume``.
    attrs : mapping, optional
        Extra root attributes (made netCDF-legal: dicts become JSON).
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
        if self.path.is_dir():
            raise IsADirectoryError(f"`path` {str(self.path)!r} is a directory; give a file name such as run.nc.")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(
                f"`path` {str(self.path)!r} is in a directory that does not exist "
                f"({str(self.path.parent)!r}); create it first (os.makedirs)."
            )
        self._partial = self.path.with_name(self.path.name + ".partial")
        if self._partial.exists():
            self._partial.unlink()  # left by a process killed mid-append: the run file itself is whole
        self.last_step: int | None = None
        if self.path.exists() and resume:
            handle = _check_run_file(self.path)
            try:
                steps = [
                    int(group.variables["step"][:].max())
                    for group in handle.groups.values()
                    if "step" in group.variables and len(group.dimensions["step"]) > 0
                ]
            finally:
                handle.close()
            self.last_step = max(steps) if steps else None
            return
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"`path` {str(self.path)!r} already exists. Pass resume=True to append to that run, "
                "overwrite=True to replace it, or choose another path."
            )
        if self.path.exists():
            _check_run_file(self.path).close()  # never overwrite a file that is not a jacspec run
        root_attrs = {"jacspec_format": FORMAT_NAME, "jacspec_format_version": FORMAT_VERSION}
        root_attrs.update(provenance())
        root_attrs["created"] = utc_now()
        root_attrs.update(attrs or {})
        with netCDF4.Dataset(self._partial, "w", format="NETCDF4") as handle:
            handle.setncatts(netcdf_safe(root_attrs))
        self._commit()

    def _commit(self) -> None:
        with open(self._partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self._partial, self.path)
        try:  # make the rename itself durable
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:  # pragma: no cover - platforms without directory fsync
            pass

    def append(
        self,
        step: int,
        results: Mapping[str, Mapping[str | None, xr.Dataset]],
        probe_seconds: Mapping[str, Mapping[str | None, float]] | None = None,
    ) -> None:
        """Append one probed step and make it durable.

        Parameters
        ----------
        step : int
            The training step.
        results : mapping
            ``{probe name: {split name or None: Dataset}}``; ``None`` as the only split key stores the
            probe without a ``split`` dimension.
        probe_seconds : mapping, optional
            The same keys, with the time each measurement took.
        """
        if not results:
            return
        shutil.copyfile(self.path, self._partial)
        try:
            with netCDF4.Dataset(self._partial, "a") as handle:
                for name, by_split in results.items():
                    seconds = (probe_seconds or {}).get(name, {})
                    self._append_group(handle, name, int(step), by_split, seconds)
        except BaseException:
            self._partial.unlink(missing_ok=True)
            raise
        self._commit()
        self.last_step = int(step) if self.last_step is None else max(self.last_step, int(step))

    # -- writing one group ---------------------------------------------------------------------------

    @staticmethod
    def _append_group(
        handle: netCDF4.Dataset,
        name: str,
        step: int,
        by_split: Mapping[str | None, xr.Dataset],
        seconds: Mapping[str | None, float],
    ) -> None:
        has_split = list(by_split) != [None]
        if not has_split and None not in by_split:
            raise RunFileError(f"probe {name!r}: results must be keyed by split names or by None alone.")
        if has_split and None in by_split:
            raise RunFileError(f"probe {name!r}: mixing results with and without a split is not supported.")
        first = next(iter(by_split.values()))
        if name in handle.groups:
            group = handle.groups[name]
            if ("split" in group.dimensions) != has_split:
                raise RunFileError(
                    f"probe {name!r} was stored {'with' if not has_split else 'without'} a `split` dimension "
                    "before; a run file cannot mix both."
                )
        else:
            group = handle.createGroup(name)
            group.createDimension("step", None)
            var = group.createVariable("step", "i8", ("step",))
            var.setncatts({"long_name": "training step", "units": "1"})
            var = group.createVariable("wall_time", "f8", ("step",), fill_value=np.nan)
            var.setncatts({"long_name": "wall-clock time when the step was probed (Unix epoch)", "units": "s"})
            if has_split:
                group.createDimension("split", None)
                var = group.createVariable("split", str, ("split",))
                var.setncatts({"long_name": "data split"})
            group.setncatts(netcdf_safe(first.attrs))
            lead = ("step", "split") if has_split else ("step",)
            var = group.createVariable("probe_seconds", "f8", lead, fill_value=np.nan)
            var.setncatts({"long_name": "time the probe took", "units": "s"})

        steps = group.variables["step"]
        index = len(group.dimensions["step"])
        if index and int(steps[index - 1]) >= step:
            raise RunFileError(
                f"probe {name!r}: step {step} is not after the last stored step {int(steps[index - 1])}; "
                "steps must increase."
            )
        steps[index] = step
        group.variables["wall_time"][index] = time.time()

        for split, ds in by_split.items():
            if not isinstance(ds, xr.Dataset):
                raise RunFileError(f"probe {name!r}, split {split!r}: expected an xarray.Dataset, got {type(ds)!r}.")
            if has_split:
                names = list(group.variables["split"][:]) if len(group.dimensions["split"]) else []
                if split not in names:
                    group.variables["split"][len(names)] = split
                    names.append(split)
                lead_index: tuple = (index, names.index(split))
            else:
                lead_index = (index,)
            if split in seconds:
                group.variables["probe_seconds"][lead_index] = seconds[split]
            RunStoreV01._write_dataset(group, name, ds, lead_index, has_split)

    @staticmethod
    def _ensure_dim(group: netCDF4.Group, dim: str) -> None:
        if dim in _RESERVED_DIMS:
            raise RunFileError(f"dimension name {dim!r} is reserved for the run file; rename it in the probe.")
        if dim not in group.dimensions:
            group.createDimension(dim, None)

    @staticmethod
    def _write_dataset(group, name, ds: xr.Dataset, lead_index: tuple, has_split: bool) -> None:
        lead_dims = ("step", "split") if has_split else ("step",)
        # 1-D coordinates (index coordinates such as `layer`, and 1-D labels along a dim such as
        # `matrix_shape`): stored once, without step, extended when a result is longer
        for dim in ds.dims:
            RunStoreV01._ensure_dim(group, str(dim))
        static = [key for key in ds.coords if ds.coords[key].ndim == 1]
        for key in static:
            coord = ds.coords[key]
            (dim,) = coord.dims
            values = _as_numpy(coord)
            if key not in group.variables:
                var = group.createVariable(str(key), _netcdf_dtype(values), (str(dim),))
                attrs = dict(coord.attrs)
                if key not in ds.dims:
                    attrs[_COORDINATE_ROLE] = "coordinate"
                var.setncatts(netcdf_safe(attrs))
            var = group.variables[str(key)]
            stored = len(group.dimensions[str(dim)]) if key in ds.dims else _written_length(var)
            overlap = min(stored, len(values))
            if overlap:
                old = np.asarray(var[:overlap])
                if old.dtype.kind in "OUS" or values.dtype.kind == "O":
                    same = [str(a) for a in old] == [str(b) for b in values[:overlap]]
                else:
                    same = np.array_equal(np.asarray(old, dtype=values.dtype), values[:overlap], equal_nan=True)
                if not same:
                    raise RunFileError(
                        f"probe {name!r}: coordinate {key!r} changed between results; a run file stores 1-D "
                        "coordinates once (put values that change with the step or split in data variables)."
                    )
            if len(values) > stored:
                if values.dtype.kind == "O":
                    for i in range(stored, len(values)):
                        var[i] = str(values[i])
                else:
                    var[stored : len(values)] = values[stored:]
        # data variables and non-index coordinates: stored per step (and split)
        items = [(key, ds.data_vars[key], False) for key in ds.data_vars]
        items += [(key, ds.coords[key], True) for key in ds.coords if key not in static]
        for key, variable, is_coordinate in items:
            key = str(key)
            if key in ("step", "split", "wall_time", "probe_seconds"):
                raise RunFileError(f"probe {name!r}: variable name {key!r} is reserved by the run file.")
            values = _as_numpy(variable)
            for dim in variable.dims:
                RunStoreV01._ensure_dim(group, str(dim))
            if key not in group.variables:
                dtype = _netcdf_dtype(values)
                fill = np.nan if values.dtype.kind == "f" else None
                var = group.createVariable(key, dtype, lead_dims + tuple(map(str, variable.dims)), fill_value=fill)
                attrs = {k: v for k, v in variable.attrs.items() if k not in ("_FillValue", "coordinates")}
                if variable.dtype.kind == "b":
                    attrs["dtype"] = "bool"
                if is_coordinate:
                    attrs[_COORDINATE_ROLE] = "coordinate"
                var.setncatts(netcdf_safe(attrs))
            var = group.variables[key]
            expected = lead_dims + tuple(map(str, variable.dims))
            if var.dimensions != expected:
                raise RunFileError(
                    f"probe {name!r}: variable {key!r} has dims {variable.dims} now but was stored with "
                    f"{var.dimensions[len(lead_dims) :]}."
                )
            if values.dtype.kind == "O":
                flat = values.reshape(-1)
                for pos, item in zip(np.ndindex(values.shape), flat):
                    var[lead_index + pos] = str(item)
            else:
                var[lead_index + tuple(slice(0, n) for n in values.shape)] = values
