"""The Disk dataset of Baratin 2021 (Baratin), appendix B.3.1: points in the square, labelled by a disk.

``x ~ Unif[−1, 1]²`` and the class says whether ``x`` lies inside the centered disk of radius
``√(2/π)``, whose area (2) is half of the square's (4), so the two classes are balanced in expectation.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from jacspec._validation import check_positive_int
from jacspec.datasets.embedded import Splits

__all__ = ["DISK_RADIUS", "disk", "disk_grid"]

DISK_RADIUS = math.sqrt(2.0 / math.pi)


def disk(n_train: int = 500, n_test: int = 500, seed: int = 0, dtype: torch.dtype = torch.float32) -> Splits:
    """Uniform points in ``[−1, 1]²`` with label 1 inside the disk of radius ``√(2/π)`` and 0 outside.

    The thesis writes the labels ``y = ±1``; here they are integer classes ``{0, 1}`` (``2y − 1`` gives
    ±1), the form the probes take.

    Parameters
    ----------
    n_train, n_test : int
        Number of points in each split (the thesis trains on 500).
    seed : int
        Seed of the private numpy generator.
    dtype : torch.dtype
        Floating dtype of the inputs.

    Returns
    -------
    dict
        ``{"train": (x, y), "test": (x, y)}``, ``x`` of shape ``(n, 2)``, ``y`` long of shape ``(n,)``.

    Examples
    --------
    >>> from jacspec.datasets import disk
    >>> x, y = disk(n_train=4, n_test=2)["train"]
    >>> tuple(x.shape), y.dtype
    ((4, 2), torch.int64)
    """
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        check_positive_int(value, name)
    rng = np.random.default_rng(seed)
    splits: Splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.uniform(-1.0, 1.0, size=(n, 2))
        y = (np.linalg.norm(x, axis=1) < DISK_RADIUS).astype(np.int64)
        splits[split] = (torch.as_tensor(x, dtype=dtype), torch.as_tensor(y))
    return splits


def disk_grid(size: int = 50, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A regular ``size × size`` grid on ``[−1, 1]²`` (row-major, ``x₂`` fastest), shape ``(size², 2)``.

    The thesis samples eigenfunctions on ``N = 2500`` grid points (``size = 50``).

    Examples
    --------
    >>> from jacspec.datasets.disk import disk_grid
    >>> grid = disk_grid(size=3)
    >>> grid.shape, grid[0].tolist(), grid[1].tolist()
    (torch.Size([9, 2]), [-1.0, -1.0], [-1.0, 0.0])
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 2:
        raise ValueError(f"`size` must be an integer >= 2, but got {size!r}.")
    axis = torch.linspace(-1.0, 1.0, size, dtype=dtype)
    first, second = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([first.reshape(-1), second.reshape(-1)], dim=1)
