"""Embedded datasets and generators: nothing is downloaded at run time.

Classification loaders return ``{"train": (x, y), "test": (x, y)}``, the form
:class:`jacspec.Monitor` takes as ``data``.
"""

from jacspec.datasets.disk import DISK_RADIUS, disk, disk_grid
from jacspec.datasets.embedded import Splits, digits, synthetic_classification
from jacspec.datasets.files import cifar10, mnist, read_idx

__all__ = [
    "DISK_RADIUS",
    "Splits",
    "cifar10",
    "digits",
    "disk",
    "disk_grid",
    "mnist",
    "read_idx",
    "synthetic_classification",
]
