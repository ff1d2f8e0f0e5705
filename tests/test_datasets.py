"""Embedded datasets and the MNIST/CIFAR file loaders (on small files the tests make)."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from jacspec.datasets import cifar10, digits, mnist, read_idx, synthetic_classification


def test_digits_split_is_stratified_and_scaled():
    data = digits(test_size=0.25, seed=0)
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    assert x_train.shape == (1347, 64) and x_test.shape == (450, 64)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.long
    assert 0.0 <= float(x_train.min()) and float(x_train.max()) <= 1.0
    # stratified: each class's share in the test split is within one example of 25 %
    counts_test = torch.bincount(y_test, minlength=10).numpy()
    counts_all = counts_test + torch.bincount(y_train, minlength=10).numpy()
    assert np.all(np.abs(counts_test - 0.25 * counts_all) <= 1)


def test_digits_bad_test_size():
    with pytest.raises(ValueError, match="test_size"):
        digits(test_size=1.5)


def test_synthetic_classification():
    data = synthetic_classification(n_samples=200, n_features=5, n_classes=3, seed=1)
    assert data["train"][0].shape == (150, 5)
    assert set(data["train"][1].tolist()) == {0, 1, 2}


def _write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    images = {"train": rng.integers(0, 256, (6, 28, 28)), "test": rng.integers(0, 256, (3, 28, 28))}
    labels = {"train": rng.integers(0, 10, 6), "test": rng.integers(0, 10, 3)}
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images["train"], gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels["train"], gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images["test"], gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels["test"], gz)
    data = mnist(tmp_path)
    assert data["train"][0].shape == (6, 784)
    np.testing.assert_allclose(data["test"][0].numpy().reshape(3, 28, 28), images["test"] / 255.0, rtol=1e-6)
    assert data["test"][1].tolist() == labels["test"].tolist()
    assert mnist(tmp_path, flatten=False)["train"][0].shape == (6, 1, 28, 28)


def test_mnist_missing_files_and_bad_magic(tmp_path):
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        mnist(tmp_path)
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "junk")


def test_cifar10_reads_pickles(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 2))}
        batches[name] = batch
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    data = cifar10(tmp_path)
    assert data["train"][0].shape == (10, 3, 32, 32)
    np.testing.assert_allclose(
        data["test"][0].numpy().reshape(2, -1), batches["test_batch"][b"data"] / 255.0, rtol=1e-6
    )
    assert cifar10(tmp_path, flatten=True)["test"][0].shape == (2, 3072)
