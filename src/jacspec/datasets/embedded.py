"""Embedded datasets: nothing is downloaded at run time.

Every loader returns a mapping ``{"train": (x, y), "test": (x, y)}`` of tensors, the form
:class:`jacspec.Monitor` takes as ``data``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["Splits", "digits", "synthetic_classification"]

Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _to_splits(x_train, y_train, x_test, y_test, dtype: torch.dtype) -> Splits:
    return {
        "train": (torch.as_tensor(x_train, dtype=dtype), torch.as_tensor(y_train, dtype=torch.long)),
        "test": (torch.as_tensor(x_test, dtype=dtype), torch.as_tensor(y_test, dtype=torch.long)),
    }


def digits(test_size: float = 0.25, seed: int = 0, dtype: torch.dtype = torch.float32) -> Splits:
    """scikit-learn's 8×8 handwritten digits (1797 images, 10 classes), shipped with scikit-learn.

    Images are flattened to 64 features and scaled to [0, 1] (pixel values / 16); the split is
    stratified by class.

    Parameters
    ----------
    test_size : float
        Fraction of examples in the test split, in (0, 1).
    seed : int
        Seed of the split.
    dtype : torch.dtype
        Floating dtype of the inputs.

    Returns
    -------
    dict
        ``{"train": (x, y), "test": (x, y)}`` with ``x`` of shape ``(n, 64)`` and integer ``y``.

    Examples
    --------
    >>> from jacspec.datasets import digits
    >>> data = digits()
    >>> data["train"][0].shape, data["test"][0].shape, int(data["train"][1].max()) + 1
    (torch.Size([1347, 64]), torch.Size([450, 64]), 10)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise ValueError(f"`test_size` must be in (0, 1), but got {test_size!r}.")
    bunch = load_digits()
    x = bunch.data.astype(np.float64) / 16.0
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return _to_splits(x_train, y_train, x_test, y_test, dtype)


def synthetic_classification(
    n_samples: int = 1000,
    n_features: int = 20,
    n_classes: int = 4,
    test_size: float = 0.25,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Splits:
    """A synthetic classification task (scikit-learn's ``make_classification``), standardised.

    Parameters
    ----------
    n_samples, n_features, n_classes : int
        Size of the task.
    test_size : float
        Fraction of examples in the test split.
    seed : int
        Seed of the generator and the split.
    dtype : torch.dtype
        Floating dtype of the inputs.

    Examples
    --------
    >>> from jacspec.datasets.embedded import synthetic_classification
    >>> data = synthetic_classification(n_samples=100, n_features=5, n_classes=2)
    >>> data["train"][0].shape, data["test"][0].shape
    (torch.Size([75, 5]), torch.Size([25, 5]))
    """
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    if n_classes < 2:
        raise ValueError(f"`n_classes` must be at least 2, but got {n_classes!r}.")
    n_informative = max(2, min(n_features, int(np.ceil(np.log2(n_classes))) + 2))
    x, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        random_state=seed,
    )
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return _to_splits(x_train, y_train, x_test, y_test, dtype)
