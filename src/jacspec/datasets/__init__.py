"""Embedded datasets and generators: nothing is downloaded at run time.

Classification loaders return ``{"train": (x, y), "test": (x, y)}``, the form
:class:`jacspec.Monitor` takes as ``data``.
"""

from jacspec.datasets.embedded import Splits, digits, synthetic_classification

__all__ = ["Splits", "digits", "synthetic_classification"]
from jacspec.datasets.disk import DISK_RADIUS, disk, disk_grid  # noqa: E402

__all__ += ["DISK_RADIUS", "disk", "disk_grid"]
