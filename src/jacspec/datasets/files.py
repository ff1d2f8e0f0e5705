"""Loaders for MNIST and CIFAR-10 files already on disk (nothing is downloaded).

The files are the standard distributions: MNIST's IDX files (``train-images-idx3-ubyte`` etc., plain or
``.gz``) and CIFAR-10's python pickles (``cifar-10-batches-py/data_batch_1`` ... ``test_batch``), the
same files ``torchvision.datasets.MNIST/CIFAR10`` keep under their ``root``. torchvision is not needed.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from jacspec.datasets.embedded import Splits, _to_splits

__all__ = ["mnist", "cifar10", "read_idx"]

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST's format), plain or gzip-compressed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from jacspec.datasets.files import read_idx
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny-idx1-ubyte"
    >>> _ = path.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9]))  # magic (uint8, 1-D), size 3, data
    >>> read_idx(path)
    array([7, 8, 9], dtype=uint8)
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (bad magic number {data[:4]!r}).")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{str(path)!r}: header announces shape {shape} but holds {array.size} values.")
    return array.reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for candidate in (
        root / stem,
        root / (stem + ".gz"),
        root / "MNIST" / "raw" / stem,
        root / "MNIST" / "raw" / (stem + ".gz"),
    ):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"MNIST file {stem!r} (or {stem}.gz) not found under `root` {str(root)!r}. jacspec downloads nothing: "
        "place the files there (e.g. torchvision.datasets.MNIST(root, download=True) does)."
    )


def mnist(root: str | os.PathLike, flatten: bool = True, dtype: torch.dtype = torch.float32) -> Splits:
    """MNIST from its IDX files under ``root`` (or ``root/MNIST/raw``), scaled to [0, 1].

    Returns ``{"train": (x, y), "test": (x, y)}`` with ``x`` of shape ``(n, 784)`` (``flatten``) or
    ``(n, 1, 28, 28)``.

    Examples
    --------
    >>> from jacspec.datasets.files import mnist
    >>> # needs the IDX files under ~/data; nothing is downloaded
    >>> data = mnist("~/data")  # doctest: +SKIP
    >>> data["train"][0].shape  # doctest: +SKIP
    torch.Size([60000, 784])
    """
    root = Path(root)
    arrays = {}
    for split, (images, labels) in _MNIST_FILES.items():
        x = read_idx(_find(root, images)).astype(np.float64) / 255.0
        y = read_idx(_find(root, labels)).astype(np.int64)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"MNIST {split}: {x.shape[0]} images but {y.shape[0]} labels.")
        arrays[split] = (x.reshape(len(x), -1) if flatten else x[:, None], y)
    return _to_splits(*arrays["train"], *arrays["test"], dtype)


def cifar10(root: str | os.PathLike, flatten: bool = False, dtype: torch.dtype = torch.float32) -> Splits:
    """CIFAR-10 from its python pickles under ``root`` (or ``root/cifar-10-batches-py``), in [0, 1].

    Returns ``{"train": (x, y), "test": (x, y)}`` with ``x`` of shape ``(n, 3, 32, 32)`` or ``(n, 3072)``.

    Examples
    --------
    >>> from jacspec.datasets.files import cifar10
    >>> # needs the python pickles under ~/data; nothing is downloaded
    >>> data = cifar10("~/data")  # doctest: +SKIP
    >>> data["test"][0].shape  # doctest: +SKIP
    torch.Size([10000, 3, 32, 32])
    """
    root = Path(root)
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root

    def load(name: str):
        path = folder / name
        if not path.exists():
            raise FileNotFoundError(
                f"CIFAR-10 file {name!r} not found in {str(folder)!r}. jacspec downloads nothing: place the "
                "python-version batches there (e.g. torchvision.datasets.CIFAR10(root, download=True) does)."
            )
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        x = np.asarray(batch[b"data"], dtype=np.float64).reshape(-1, 3, 32, 32) / 255.0
        return x, np.asarray(batch[b"labels"], dtype=np.int64)

    parts = [load(f"data_batch_{i}") for i in range(1, 6)]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = load("test_batch")
    if flatten:
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    return _to_splits(x_train, y_train, x_test, y_test, dtype)
