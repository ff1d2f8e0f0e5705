"""A fixed, seeded probe batch drawn once from a ``torch.utils.data.Dataset`` or ``DataLoader``.

A :class:`jacspec.Monitor` measures the same examples at every probed step, so that a change in a probe's
result is the network's, not the sample's. When ``data=`` is a Dataset or a DataLoader, the examples are
drawn here, once, with a private ``torch.Generator``:

* a map-style Dataset (``__len__`` and ``__getitem__``): ``n`` distinct indices drawn uniformly without
  replacement (all of them when it holds ``n`` or fewer), read in increasing index order;
* an ``IterableDataset``: its first ``n`` items (a fresh iterator; it cannot be sampled without reading
  it all);
* a DataLoader: its ``dataset``, as above. The loader itself is never iterated, so its sampler, its
  shuffling order and any iterator the training loop holds are untouched. A custom ``collate_fn`` is
  applied to the drawn items; with the default one, items are stacked.

The global torch, numpy and Python RNG states are restored after the draw, and reading the items runs
with the global RNGs seeded from ``seed``, so a Dataset with random transforms gives the same batch each
time and the training run's random stream is not advanced.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from jacspec._validation import check_positive_int, describe

__all__ = ["draw_probe_batch", "resolve_data", "is_dataset_like"]


def is_dataset_like(value: Any) -> bool:
    """Whether ``value`` is a ``torch.utils.data.Dataset`` or ``DataLoader`` (what this module turns into a batch)."""
    return isinstance(value, (Dataset, DataLoader))


class _GlobalRNG:
    """Seed the global torch/numpy/Python RNGs inside the block, and restore their states on exit."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self) -> None:
        self.torch_state = torch.get_rng_state()
        self.cuda_state = (
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        )
        self.numpy_state = np.random.get_state()  # noqa: NPY002 - saved and restored
        self.python_state = random.getstate()
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % 2**32)  # noqa: NPY002 - the global state, restored on exit
        random.seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        torch.set_rng_state(self.torch_state)
        if self.cuda_state is not None:
            torch.cuda.set_rng_state_all(self.cuda_state)
        np.random.set_state(self.numpy_state)  # noqa: NPY002
        random.setstate(self.python_state)


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, np.generic, Integral, float)):
        return torch.as_tensor(value)
    raise TypeError(f"{what} must be a tensor (or a number / numpy array), but got {describe(value)}.")


def _stack(items: list[Any], where: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    xs, ys = [], []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            raise TypeError(
                f"{where} item {i} is a mapping with keys {sorted(map(str, item))[:6]}, but the probe batch needs "
                "pairs (x, y). Pass a dataset that returns them, e.g. [(item['input_ids'], item['labels']) for item "
                "in dataset], or tensors data={'train': (x, y)}."
            )
        if isinstance(item, torch.Tensor) or not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(
                f"{where} item {i} must be a pair (x, y) (y may be None for probes that need no labels), but got "
                f"{describe(item)}. Wrap the dataset so that it returns (x, y), or pass data={{'train': (x, y)}} "
                "as tensors."
            )
        xs.append(_as_tensor(item[0], f"{where} item {i}[0] (x)"))
        ys.append(None if item[1] is None else _as_tensor(item[1], f"{where} item {i}[1] (y)"))
    n_none = sum(y is None for y in ys)
    if 0 < n_none < len(ys):
        raise ValueError(
            f"{where}: {n_none} of {len(ys)} drawn items have y=None and the others a label; use one form."
        )
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ValueError(
            f"{where}: the drawn inputs x have different shapes {sorted(shapes)[:4]} and cannot be stacked into one "
            "batch. Pad or crop them to one shape in the dataset, or pass a DataLoader with a collate_fn that does."
        )
    x = torch.stack(xs)
    y = None if n_none else torch.stack(ys)
    return x, y


def _check_collated(batch: Any, where: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, torch.Tensor) or not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(
            f"{where}: the DataLoader's collate_fn must return a pair (x, y), but returned {describe(batch)}."
        )
    x, y = batch
    if not isinstance(x, torch.Tensor) or not (y is None or isinstance(y, torch.Tensor)):
        raise TypeError(
            f"{where}: the DataLoader's collate_fn must return tensors (x, y), but returned "
            f"({describe(x)}, {describe(y)})."
        )
    return x, y


def _check_options(n: Any, seed: Any) -> tuple[int, int]:
    n = check_positive_int(n, "probe_examples")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`probe_seed` must be an int, but got {describe(seed)}.")
    return n, int(seed)


def draw_probe_batch(
    source: Dataset | DataLoader, n: int = 256, seed: int = 0, *, argument: str = "data"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Draw a fixed, seeded batch of ``n`` examples ``(x, y)`` from a Dataset or DataLoader.

    Parameters
    ----------
    source : torch.utils.data.Dataset or torch.utils.data.DataLoader
        Items must be pairs ``(x, y)`` (``y`` may be None); a DataLoader is read through its ``dataset``.
    n : int
        Number of examples (all of them when the dataset holds fewer).
    seed : int
        Seed of the private ``torch.Generator`` that picks the examples.
    argument : str
        Name of the argument, for error messages.

    Returns
    -------
    x, y : torch.Tensor, torch.Tensor or None
        The stacked inputs (examples first) and labels (None when the items have ``y = None``).

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> x, y = draw_probe_batch(TensorDataset(torch.randn(1000, 3), torch.zeros(1000, dtype=torch.long)), n=256)
    >>> tuple(x.shape), tuple(y.shape)
    ((256, 3), (256,))
    """
    n, seed = _check_options(n, seed)
    collate = None
    if isinstance(source, DataLoader):
        from torch.utils.data._utils.collate import default_collate, default_convert

        if source.collate_fn not in (default_collate, default_convert):
            collate = source.collate_fn
        dataset = source.dataset
        where = f"`{argument}` (a DataLoader over {type(dataset).__name__})"
    elif isinstance(source, Dataset):
        dataset = source
        where = f"`{argument}` ({type(dataset).__name__})"
    else:
        raise TypeError(f"`{argument}` must be a torch Dataset or DataLoader here, but got {describe(source)}.")

    with _GlobalRNG(int(seed)):
        if isinstance(dataset, IterableDataset):
            items = []
            for item in dataset:
                items.append(item)
                if len(items) == n:
                    break
        else:
            try:
                size = len(dataset)  # type: ignore[arg-type]
            except TypeError:
                raise TypeError(
                    f"{where} has no len(): a map-style Dataset needs __len__ to be sampled. Define __len__, or use an "
                    "IterableDataset (its first examples are taken)."
                ) from None
            if size == 0:
                raise ValueError(f"{where} is empty (len 0); the probes need at least one example.")
            generator = torch.Generator().manual_seed(int(seed))
            if size <= n:
                indices = list(range(size))
            else:
                indices = torch.randperm(size, generator=generator)[:n].sort().values.tolist()
            items = [dataset[i] for i in indices]
        if not items:
            raise ValueError(f"{where} is empty (its iterator yields nothing); the probes need at least one example.")
        if collate is not None:
            return _check_collated(collate(items), where)
    return _stack(items, where)


def resolve_data(data: Any, n: int = 256, seed: int = 0) -> Any:
    """Turn Dataset / DataLoader entries of a Monitor's ``data`` into fixed ``(x, y)`` batches.

    A Dataset or DataLoader alone becomes the split ``"train"``; in a mapping, each Dataset or DataLoader
    value is drawn (each split with the same ``seed``). Any other value is returned as it is, for the
    Monitor to check. ``n`` and ``seed`` are checked in every case.
    """
    _check_options(n, seed)
    if is_dataset_like(data):
        return {"train": draw_probe_batch(data, n, seed)}
    if isinstance(data, Mapping) and any(is_dataset_like(v) for v in data.values()):
        return {
            split: draw_probe_batch(value, n, seed, argument=f"data[{split!r}]") if is_dataset_like(value) else value
            for split, value in data.items()
        }
    return data
