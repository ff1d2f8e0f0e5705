"""Checks and conversions shared by the mutual-information estimators (plain arrays in)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

__all__ = ["MIN_SAMPLES", "as_samples", "check_pair", "gaussianize", "standardize"]

#: Fewest paired samples any estimator accepts (KSG needs more than ``k`` neighbours, MINE a minibatch
#: and a held-out part).
MIN_SAMPLES = 20


def as_samples(values: Any, argument: str) -> np.ndarray:
    """Return ``values`` as a finite float64 array of shape ``(n, d)`` (1-D input becomes ``(n, 1)``).

    Accepts numpy arrays, torch tensors (detached and moved to the CPU) and nested sequences; higher
    dimensional inputs are flattened to ``(n, prod(rest))``.

    Examples
    --------
    >>> import torch
    >>> from jacspec.estimators import as_samples
    >>> as_samples(torch.arange(3), "x")
    array([[0.],
           [1.],
           [2.]])
    """
    try:
        import torch

        if isinstance(values, torch.Tensor):
            values = values.detach().cpu()
            values = values.double() if (values.is_floating_point() or values.dtype == torch.bool) else values
            values = values.numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        array = np.asarray(values)
    except Exception as err:  # pragma: no cover - ragged sequences
        raise TypeError(f"`{argument}` must be an array of samples (n, d), but got {type(values).__name__}.") from err
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"`{argument}` must hold real numbers (samples along the first axis), but got dtype {array.dtype}."
        )
    if array.ndim == 0:
        raise ValueError(f"`{argument}` must have samples along its first axis, but got a scalar {array!r}.")
    array = array.astype(np.float64, copy=False)
    array = array.reshape(array.shape[0], -1) if array.ndim != 1 else array[:, None]
    if array.shape[1] == 0:
        raise ValueError(f"`{argument}` must have at least one feature per sample, but got shape {array.shape}.")
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"`{argument}` must be finite, but holds {len(bad)} NaN/inf value(s) (first at index {first}: "
            f"{array[first]!r}). Drop or impute those samples first."
        )
    return array


def check_pair(x: Any, z: Any, minimum: int = MIN_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Check paired samples ``x`` (n, d_x) and ``z`` (n, d_z): same n, at least ``minimum``, finite.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.estimators import check_pair
    >>> x, z = check_pair(np.zeros((30, 2)), np.ones(30))
    >>> x.shape, z.shape
    ((30, 2), (30, 1))
    """
    x_array = as_samples(x, "x")
    z_array = as_samples(z, "z")
    if x_array.shape[0] != z_array.shape[0]:
        raise ValueError(
            "`x` and `z` must hold the same number of paired samples (first axis), but got "
            f"{x_array.shape[0]} and {z_array.shape[0]}."
        )
    if x_array.shape[0] < minimum:
        raise ValueError(
            f"`x` and `z` must hold at least {minimum} paired samples to estimate mutual information, but got "
            f"{x_array.shape[0]}."
        )
    return x_array, z_array


def standardize(values: np.ndarray) -> np.ndarray:
    """Centre each column and divide it by its standard deviation (constant columns are only centred).

    Mutual information is invariant under this invertible componentwise map, and both estimators work
    better on unit-scale features (KSG's max-norm mixes the coordinates' scales).

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.estimators import standardize
    >>> standardize(np.array([[1.0, 5.0], [3.0, 5.0]]))
    array([[-1.,  0.],
           [ 1.,  0.]])
    """
    centred = values - values.mean(axis=0)
    scale = centred.std(axis=0)
    scale[scale == 0] = 1.0
    return centred / scale


def gaussianize(values: np.ndarray) -> np.ndarray:
    """Map each column through its empirical CDF to standard-normal scores: Φ⁻¹(rank / (n + 1)).

    The map is strictly increasing in each coordinate (tied values share their average rank), hence
    invertible on the sample, so mutual information is unchanged (the copula transform). Unlike
    :func:`standardize` it leaves no outliers (all values lie within ±Φ⁻¹(n / (n + 1)), about ±3.3 for
    n = 1000), which keeps a statistics network from extrapolating to huge values on rare inputs such as
    the sparse activations of a ReLU layer.

    Examples
    --------
    >>> import numpy as np
    >>> from jacspec.estimators import gaussianize
    >>> gaussianize(np.array([[10.0], [-3.0], [7.0]])).round(3)  # ranks 3, 1, 2 of 3 -> quartiles of N(0, 1)
    array([[ 0.674],
           [-0.674],
           [ 0.   ]])
    """
    n = values.shape[0]
    return ndtri(rankdata(values, axis=0) / (n + 1))
