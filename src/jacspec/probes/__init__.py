"""Probes: measurements of a model that return labelled ``xarray.Dataset`` objects.

Built-in probes are imported lazily; third-party packages register more through the
``jacspec.probes`` entry-point group (see :func:`available_probes`).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from jacspec.probes.base import Probe, preserve_model_state, probe_generator
from jacspec.probes.spectral_norm import SpectralNorm

__all__ = [
    "Probe",
    "SpectralNorm",
    "Performance",
    "PointJacobian",
    "TangentKernel",
    "TangentComplexity",
    "FourierSpectrum",
    "MutualInformation",
    "WeightInformation",
    "available_probes",
    "get_probe",
    "preserve_model_state",
    "probe_generator",
]

# public class name -> module that defines it (imported on first access)
_BUILTIN = {
    "SpectralNorm": "jacspec.probes.spectral_norm",
    "Performance": "jacspec.probes.performance",
    "PointJacobian": "jacspec.probes.point_jacobian",
    "TangentKernel": "jacspec.probes.tangent_kernel",
    "TangentComplexity": "jacspec.probes.tangent_kernel",
    "FourierSpectrum": "jacspec.probes.fourier_spectrum",
    "MutualInformation": "jacspec.probes.mutual_information",
    "WeightInformation": "jacspec.probes.weight_information",
}

ENTRY_POINT_GROUP = "jacspec.probes"


def __getattr__(name: str) -> Any:
    module = _BUILTIN.get(name)
    if module is None:
        raise AttributeError(f"module 'jacspec.probes' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def available_probes() -> dict[str, type[Probe]]:
    """All probe classes by their ``name``: the built-ins and those registered by entry points.

    A third-party package registers a probe in its ``pyproject.toml``::

        [project.entry-points."jacspec.probes"]
        my_probe = "my_package.probes:MyProbe"

    Entry points are loaded only when this function is called.

    Examples
    --------
    >>> from jacspec.probes import available_probes
    >>> {"tangent_kernel", "point_jacobian", "spectral_norm"} <= set(available_probes())
    True
    """
    probes: dict[str, type[Probe]] = {}
    for cls_name, module in _BUILTIN.items():
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except ImportError:  # a built-in that is not part of this version
            continue
        probes[cls.name] = cls
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        cls = entry.load()
        if not (isinstance(cls, type) and issubclass(cls, Probe)):
            raise TypeError(
                f"entry point {entry.name!r} in group {ENTRY_POINT_GROUP!r} must name a subclass of "
                f"jacspec.probes.Probe, but {entry.value!r} is {cls!r}."
            )
        probes[cls.name] = cls
    return probes


def get_probe(name: str, **options: Any) -> Probe:
    """Instantiate a probe by its ``name`` (built-in or registered), e.g. ``get_probe("spectral_norm")``.

    Examples
    --------
    >>> from jacspec.probes import get_probe
    >>> type(get_probe("spectral_norm", n_iterations=20)).__name__
    'SpectralNorm'
    """
    probes = available_probes()
    if name not in probes:
        raise ValueError(f"Unknown probe {name!r}; expected one of {sorted(probes)}.")
    return probes[name](**options)
