"""Embedded datasets and generators: nothing is downloaded at run time.

Classification loaders return ``{"train": (x, y), "test": (x, y)}``, the form
:class:`jacspec.Monitor` takes as ``data``.
"""

from jacspec.datasets.disk import DISK_RADIUS, disk, disk_grid
from jacspec.datasets.embedded import Splits, digits, synthetic_classification
from jacspec.datasets.files import cifar10, mnist, read_idx
from jacspec.datasets.fourier import embed_curve, flower_curve, radial_wave, spectral_bias_data, sum_of_sines
from jacspec.datasets.gaussians import correlated_gaussians
from jacspec.datasets.noise import (
    dataset_noise,
    digits_dataset_noise,
    pca_compress,
    symmetric_label_noise,
    with_label_noise,
)

__all__ = ["Splits", "cifar10", "digits", "mnist", "read_idx", "synthetic_classification"]
__all__ += ["embed_curve", "flower_curve", "radial_wave", "spectral_bias_data", "sum_of_sines"]
__all__ += ["dataset_noise", "digits_dataset_noise", "pca_compress", "symmetric_label_noise", "with_label_noise"]
__all__ += ["correlated_gaussians"]
__all__ += ["DISK_RADIUS", "disk", "disk_grid"]
