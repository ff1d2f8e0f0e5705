"""jacspec: probes that watch how a PyTorch network learns.

Attach probes to any model with :class:`jacspec.Monitor` and read the results back as an
``xarray.DataTree`` with :func:`jacspec.open_run`; or call a probe's ``measure`` directly.

Submodules (imported lazily): ``probes``, ``fit``, ``estimators``, ``kernels``, ``datasets``,
``plot``, ``store``, ``monitor``, ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

from jacspec._version import __version__

__all__ = ["__version__", "Monitor", "open_run", "open_runs", "RunLockedError", "StopTraining"]

_LAZY_ATTRS = {
    "Monitor": "jacspec.monitor",
    "StopTraining": "jacspec.monitor",
    "open_run": "jacspec.store",
    "open_runs": "jacspec.store",
    "RunLockedError": "jacspec.store",
}
_SUBMODULES = {
    "probes",
    "fit",
    "estimators",
    "kernels",
    "datasets",
    "plot",
    "store",
    "monitor",
    "cli",
    "fourier",
    "information",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"jacspec.{name}")
    raise AttributeError(f"module 'jacspec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | _SUBMODULES)
