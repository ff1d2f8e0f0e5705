"""Noise generators of the MDL paper (Brandão et al. 2023, sec. 5.1): symmetric label noise and dataset noise.

* **Label noise**: every label is, with probability ``p``, replaced by a class drawn uniformly at random
  (instance-independent symmetric noise; the new label may equal the old one), so ``p = 1`` gives
  labels independent of the inputs.
* **Dataset noise**: ``D_r = D_0 + r · D_sim``, where ``D_sim`` is a second, *similar* dataset
  compressed by reconstructing it from its first ``n_components`` principal components.

All randomness comes from a private ``numpy.random.Generator`` seeded by ``seed``; the global RNGs are
never touched.
"""

from __future__ import annotations

import numpy as np
import torch

from jacspec._validation import describe
from jacspec.datasets.embedded import Splits

__all__ = ["symmetric_label_noise", "with_label_noise", "pca_compress", "dataset_noise", "digits_dataset_noise"]


def symmetric_label_noise(
    y: torch.Tensor, p: float, n_classes: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each label, with probability ``p``, by a uniformly random class (Brandão et al. 2023, 5.1).

    Parameters
    ----------
    y : torch.Tensor
        Integer class labels, shape ``(n,)``.
    p : float
        Probability in [0, 1] that a label is redrawn.
    n_classes : int, optional
        Number of classes; default ``y.max() + 1``.
    seed : int
        Seed of the private generator.

    Returns
    -------
    noisy : torch.Tensor
        The new labels (same dtype and device as ``y``).
    redrawn : torch.Tensor
        Boolean mask of the labels that were redrawn (a redrawn label equals the old one with
        probability ``1 / n_classes``).

    Examples
    --------
    >>> import torch
    >>> noisy, redrawn = symmetric_label_noise(torch.arange(10) % 3, p=1.0, seed=0)
    >>> bool(redrawn.all())
    True
    """
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool or y.dim() != 1:
        raise TypeError(f"`y` must be a 1-D tensor of integer class labels, but got {describe(y)}.")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"`p` must be a probability in [0, 1], but got {p!r}.")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"`y` must hold non-negative class labels, but its smallest value is {int(y.min())}.")
    inferred = int(y.max()) + 1 if y.numel() else 0
    if n_classes is None:
        n_classes = inferred
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < max(1, inferred):
        raise ValueError(f"`n_classes` must be an integer ≥ max(y) + 1 = {inferred}, but got {n_classes!r}.")
    rng = np.random.default_rng(seed)
    redrawn = rng.random(y.shape[0]) < float(p)
    new_labels = rng.integers(0, n_classes, size=y.shape[0])
    labels = y.detach().cpu().numpy().copy()
    labels[redrawn] = new_labels[redrawn]
    return torch.as_tensor(labels, dtype=y.dtype, device=y.device), torch.as_tensor(redrawn, device=y.device)


def with_label_noise(
    data: Splits, p: float, splits: tuple[str, ...] = ("train",), n_classes: int | None = None, seed: int = 0
) -> Splits:
    """A copy of ``{"train": (x, y), ...}`` with symmetric label noise ``p`` on the named splits.

    Parameters
    ----------
    data : dict
        ``{split: (x, y)}`` as returned by :func:`jacspec.datasets.digits`.
    p : float
        Noise probability (see :func:`symmetric_label_noise`).
    splits : tuple of str
        Splits to corrupt (the paper corrupts training and test labels; by default only ``"train"``
        so that test accuracy measures generalisation to clean labels).
    n_classes : int, optional
        Number of classes; default: one more than the largest label over all splits.
    seed : int
        Seed; split ``i`` in ``splits`` uses ``seed + i``.

    Examples
    --------
    >>> from jacspec.datasets import digits
    >>> from jacspec.datasets.noise import with_label_noise
    >>> clean = digits()
    >>> noisy = with_label_noise(clean, p=0.5)
    >>> changed = float((noisy["train"][1] != clean["train"][1]).float().mean())
    >>> 0.35 < changed < 0.55, bool((noisy["test"][1] == clean["test"][1]).all())  # p (K - 1) / K = 0.45 expected
    (True, True)
    """
    unknown = [s for s in splits if s not in data]
    if unknown:
        raise ValueError(f"`splits` names {unknown!r}, which are not in `data` (has {list(data)!r}).")
    if n_classes is None:
        n_classes = max(int(y.max()) for _, y in data.values()) + 1
    noisy = dict(data)
    for i, name in enumerate(splits):
        x, y = data[name]
        noisy[name] = (x, symmetric_label_noise(y, p, n_classes=n_classes, seed=seed + i)[0])
    return noisy


def pca_compress(x: torch.Tensor, n_components: int) -> torch.Tensor:
    """Reconstruct ``x`` from its first ``n_components`` principal components (a lossy compression).

    Uses ``sklearn.decomposition.PCA`` on the flattened examples; the result has the shape and dtype
    of ``x``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.datasets.noise import pca_compress
    >>> x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(pca_compress(x, n_components=8), x, atol=1e-5))  # all components: no loss
    True
    """
    from sklearn.decomposition import PCA

    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise TypeError(f"`x` must be a floating tensor of shape (n, ...), but got {describe(x)}.")
    flat = x.detach().cpu().reshape(x.shape[0], -1).to(torch.float64).numpy()
    limit = min(flat.shape)
    if not isinstance(n_components, int) or isinstance(n_components, bool) or not 1 <= n_components <= limit:
        raise ValueError(
            f"`n_components` must be an integer in [1, min(n, d)] = [1, {limit}], but got {n_components!r}."
        )
    pca = PCA(n_components=n_components, svd_solver="full").fit(flat)
    reconstructed = pca.inverse_transform(pca.transform(flat))
    return torch.as_tensor(reconstructed, dtype=x.dtype, device=x.device).reshape(x.shape)


def dataset_noise(
    x: torch.Tensor, x_similar: torch.Tensor, r: float, n_components: int = 10, seed: int = 0
) -> torch.Tensor:
    """The paper's dataset noise ``D_r = D_0 + r · PCA_k(D_sim)`` (Brandão et al. 2023, sec. 5.1).

    Parameters
    ----------
    x : torch.Tensor
        Inputs of the original dataset ``D_0``, shape ``(n, *shape)``.
    x_similar : torch.Tensor
        Inputs of a similar dataset ``D_sim`` with the same per-example shape, any number of examples.
    r : float
        Non-negative noise rate.
    n_components : int
        Principal components kept when compressing ``D_sim`` (:func:`pca_compress`).
    seed : int
        Seed of the random pairing: each example of ``x`` gets a compressed example of ``x_similar``
        drawn without replacement (with replacement when ``x_similar`` has fewer examples).

    Returns
    -------
    torch.Tensor
        The noised inputs, same shape and dtype as ``x``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.datasets.noise import dataset_noise
    >>> g = torch.Generator().manual_seed(0)
    >>> x, x_similar = torch.randn(20, 6, generator=g), torch.randn(40, 6, generator=g)
    >>> noised = dataset_noise(x, x_similar, r=0.5, n_components=3)
    >>> noised.shape, bool(torch.equal(dataset_noise(x, x_similar, r=0.0, n_components=3), x))
    (torch.Size([20, 6]), True)
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"`x` must be a floating tensor, but got {describe(x)}.")
    if not isinstance(x_similar, torch.Tensor) or x_similar.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"`x_similar` must be a tensor with examples of the same shape as `x` {tuple(x.shape[1:])}, "
            f"but got {describe(x_similar)}."
        )
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not np.isfinite(r) or r < 0:
        raise ValueError(f"`r` must be a non-negative number, but got {r!r}.")
    compressed = pca_compress(x_similar.to(x.dtype), n_components)
    rng = np.random.default_rng(seed)
    n, m = x.shape[0], x_similar.shape[0]
    index = rng.permutation(m)[:n] if m >= n else rng.integers(0, m, size=n)
    return x + float(r) * compressed[torch.as_tensor(index)].to(x.device)


def digits_dataset_noise(
    r: float, n_components: int = 10, test_size: float = 0.25, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Splits:
    """Digits with dataset noise: two disjoint halves of digits serve as ``D_0`` and ``D_sim``.

    The 1797 digits are split in two stratified halves; the first is ``D_0`` (split again into train and
    test), the second, PCA-compressed to ``n_components``, is added with weight ``r`` to every input of
    ``D_0`` (train and test, as in Brandão et al. 2023, 5.1). ``r = 0`` gives the clean first half.

    Returns
    -------
    dict
        ``{"train": (x, y), "test": (x, y)}``, inputs of shape ``(n, 64)``.

    Examples
    --------
    >>> from jacspec.datasets.noise import digits_dataset_noise
    >>> data = digits_dataset_noise(r=0.5)
    >>> sorted(data), data["train"][0].shape[1]
    (['test', 'train'], 64)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.data.astype(np.float64) / 16.0
    y = bunch.target.astype(np.int64)
    x0, x_sim, y0, _ = train_test_split(x, y, test_size=0.5, random_state=seed, stratify=y)
    x_train, x_test, y_train, y_test = train_test_split(x0, y0, test_size=test_size, random_state=seed, stratify=y0)
    similar = torch.as_tensor(x_sim, dtype=torch.float64)
    noised = {}
    for i, (name, xs, ys) in enumerate((("train", x_train, y_train), ("test", x_test, y_test))):
        xt = dataset_noise(torch.as_tensor(xs, dtype=torch.float64), similar, r, n_components, seed=seed + i)
        noised[name] = (xt.to(dtype), torch.as_tensor(ys, dtype=torch.long))
    return noised
