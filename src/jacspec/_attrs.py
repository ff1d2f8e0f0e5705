"""netCDF-legal attributes and provenance for every Dataset jacspec emits.

netCDF attributes may only be strings, numbers or 1-D arrays/lists of those: no ``bool``, ``None`` or
``dict``. :func:`netcdf_safe` converts a mapping into such values (booleans become ``0``/``1``, ``None``
becomes ``""``, dicts and mixed lists become JSON strings).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

__all__ = ["netcdf_safe", "netcdf_value", "provenance", "to_json", "utc_now"]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    try:
        import torch

        if isinstance(obj, torch.Tensor):
            return obj.detach().cpu().tolist()
        if isinstance(obj, torch.dtype):
            return str(obj)
    except ImportError:  # pragma: no cover
        pass
    if callable(obj):
        return getattr(obj, "__qualname__", repr(obj))
    return repr(obj)


def to_json(obj: Any) -> str:
    """Serialise ``obj`` to JSON, representing anything JSON cannot hold by its ``repr``."""
    return json.dumps(obj, default=_json_default, sort_keys=True)


def netcdf_value(value: Any) -> Any:
    """Return ``value`` as a netCDF-legal attribute value."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if value is None:
        return ""
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iuf":
        return value
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return list(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return to_json(value)


def netcdf_safe(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``attrs`` whose values netCDF can store."""
    return {str(key): netcdf_value(val) for key, val in attrs.items()}


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def provenance() -> dict[str, str]:
    """Versions of jacspec, torch and Python that produced a result."""
    import torch

    from jacspec._version import __version__

    return {
        "jacspec_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }
