"""Probing under ``torch.distributed``: the rank context, unwrapping DDP, a model checksum, sharded probes.

A :class:`jacspec.Monitor` created on every rank of an initialised process group compares the replicas'
weights at every probed step (:func:`check_same_model`, a collective: every rank must call ``monitor.step``
at the same steps) and rank 0 alone writes the run file. The model is unwrapped from
``DistributedDataParallel`` (or ``DataParallel``) before probing, so a probe never runs DDP's forward hooks
and never triggers its gradient all-reduce; every rank's RNG is left as it was.

**Sharded probes.** Probes whose result is a set of per-example values (and sums over examples) split
their examples across the ranks: rank ``r`` of ``W`` measures the contiguous block of rows
``[r*n//W, (r+1)*n//W)`` (:func:`row_block`) and rank 0 gathers the blocks, concatenates them in order
along ``sample`` and recomputes every whole-batch statistic from the gathered per-example values, so the
result equals the single-process one (to round-off). Sharded today (:func:`shardable`):

* :class:`~jacspec.probes.PointJacobian`: per-example singular values, norms, labels and predictions are
  concatenated; ``mean_log_singular_value``, the counts and, with ``fit_modes=True``, the lognormal
  mode fits are recomputed on rank 0 from all the gathered singular values;
* :class:`~jacspec.probes.Performance`: the loss and accuracy are recombined exactly from each block's
  sums (``loss_r * n_r`` and the number correct).

Both only in ``mode="eval"`` (in train mode BatchNorm and dropout couple or randomise the rows) and only
for these classes or subclasses that keep their ``measure``. Every rank must hold the same probe batch:
its checksum is compared at each sharded measurement, and a mismatch raises rather than mixing batches.
A probe that raises on any rank raises on rank 0 (naming the rank), where the Monitor's ``on_error``
applies.

**Sharded products.** :class:`~jacspec.probes.TangentKernel` on its matrix-free path (``method="lanczos"``,
or ``"auto"`` when it picks it) shards the kernel's rows instead: every rank holds the factors (or runs
the backward and forward passes) of its block of examples, ``Jᵀ V`` is summed across ranks with
``all_reduce`` and the rows of ``J U`` and of the per-layer traces are reduced onto rank 0, which runs
the Lanczos iterations and the estimators alone and sends each product's command and vectors to the
other ranks (:func:`serve`); the result equals the single-process one to
round-off. The dense path (``method="dense"``) still runs on rank 0, the other ranks waiting.
:class:`~jacspec.probes.WeightInformation` (``method="laplace"``, default loss) shards its Hessian (or GGN)
diagonal the same way: every rank differentiates the summed loss of its rows and the diagonals are summed onto
rank 0 (:func:`sharded_hessian_diagonal`).

**Not sharded** (rank 0 measures all examples, the others wait at the next collective): statistics that
do not separate by rows — the dense tangent kernel, the variational fit of
:class:`~jacspec.probes.WeightInformation` (and its Laplace value with a custom loss, which may not be a sum),
:class:`~jacspec.probes.MutualInformation` (estimators over all samples),
:class:`~jacspec.probes.FourierSpectrum` and :class:`~jacspec.probes.SpectralNorm` (no examples), and
any user probe.
"""

from __future__ import annotations

import contextvars
import hashlib
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

__all__ = [
    "rank_and_world_size",
    "unwrap_model",
    "model_checksum",
    "check_same_model",
    "row_block",
    "shardable",
    "collective",
    "products_sharded",
    "command",
    "end_service",
    "collective_",
    "serve",
    "sharded_hessian_diagonal",
    "measure_rows",
    "serve_rows",
]


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one.

    Examples
    --------
    >>> from jacspec.distributed import rank_and_world_size
    >>> rank_and_world_size()  # no process group initialised here
    (0, 1)
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` wrappers (the model itself otherwise).

    Probing the inner module runs none of DDP's hooks: no gradient all-reduce, no buffer broadcast.

    Examples
    --------
    >>> import torch
    >>> from jacspec.distributed import unwrap_model
    >>> inner = torch.nn.Linear(2, 2)
    >>> unwrap_model(torch.nn.DataParallel(inner)) is inner
    True
    """
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def model_checksum(model: nn.Module) -> str:
    """A SHA-256 of every parameter and buffer (names, shapes, dtypes and bytes), as hex.

    Examples
    --------
    >>> import torch
    >>> from jacspec.distributed import model_checksum
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> a = torch.nn.Linear(2, 2)
    >>> b = torch.nn.Linear(2, 2)
    >>> model_checksum(a) == model_checksum(a), model_checksum(a) == model_checksum(b)
    (True, False)
    """
    digest = hashlib.sha256()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def check_same_model(model: nn.Module) -> None:
    """Refuse to probe when the ranks of the process group hold different weights (a collective call).

    Raises
    ------
    ValueError
        Naming the ranks whose parameters or buffers differ from rank 0's.

    Examples
    --------
    >>> import torch
    >>> from jacspec.distributed import check_same_model
    >>> check_same_model(torch.nn.Linear(2, 2))  # one process: nothing to compare
    """
    rank, world = rank_and_world_size()
    if world == 1:
        return
    mine = model_checksum(model)
    every = [None] * world
    torch.distributed.all_gather_object(every, mine)
    differ = [r for r, value in enumerate(every) if value != every[0]]
    if differ:
        raise ValueError(
            f"The model must be the same on every rank to be probed, but ranks {differ} hold parameters or buffers "
            f"that differ from rank 0's (checksums {[every[r][:12] for r in differ]} vs {every[0][:12]}). Probe "
            "after the optimizer step has synchronised the replicas (DistributedDataParallel does), or wrap the "
            "model in DistributedDataParallel."
        )


# -- sharding a probe's examples across ranks --------------------------------------------------------


def row_block(n: int, rank: int, world_size: int) -> slice:
    """The contiguous block of rows ``[rank*n//W, (rank+1)*n//W)`` that ``rank`` of ``W`` measures.

    The blocks of ranks ``0 … W-1`` tile ``range(n)`` in order; their sizes differ by at most one (a rank
    may get no row when ``n < W``).

    Examples
    --------
    >>> from jacspec.distributed import row_block
    >>> [row_block(10, r, 3) for r in range(3)]
    [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
    """
    return slice(rank * n // world_size, (rank + 1) * n // world_size)


def _combiner(probe: Any) -> Callable[[Any, list[xr.Dataset], int], xr.Dataset | None] | None:
    from jacspec.probes.performance import Performance
    from jacspec.probes.point_jacobian import PointJacobian

    for cls, combine in ((PointJacobian, _combine_point_jacobian), (Performance, _combine_performance)):
        # a subclass that overrides measure may compute something that does not split by rows
        if isinstance(probe, cls) and type(probe).measure is cls.measure:
            return combine
    return None


def shardable(probe: Any) -> bool:
    """Whether a Monitor splits ``probe``'s examples across ranks (see the module docstring).

    True for :class:`~jacspec.probes.PointJacobian` and :class:`~jacspec.probes.Performance` (and
    subclasses that keep their ``measure``) in ``mode="eval"``; every other probe is measured on rank 0.

    Examples
    --------
    >>> from jacspec.distributed import shardable
    >>> from jacspec.probes import PointJacobian, TangentKernel
    >>> shardable(PointJacobian()), shardable(TangentKernel())
    (True, False)
    """
    return _combiner(probe) is not None and getattr(probe, "mode", "eval") == "eval"


_SHARDED_PRODUCTS: contextvars.ContextVar[bool] = contextvars.ContextVar("jacspec_sharded_products", default=False)


def command(message: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rank 0 sends ``message`` (a small dict) to every rank; the other ranks pass nothing and receive it.

    The channel of the sharded computations: rank 0 announces each one, the others answer in :func:`serve`.

    Examples
    --------
    >>> from jacspec.distributed import command
    >>> callable(command)  # a collective: only under an initialised process group
    True
    """
    box = [message]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def end_service() -> None:
    """On rank 0: release the ranks waiting in :func:`serve` (a collective: the ``done`` command).

    Examples
    --------
    >>> from jacspec.distributed import end_service
    >>> callable(end_service)  # called after each collective measurement on rank 0
    True
    """
    command({"cmd": "done"})


def _backend_device() -> torch.device:
    """Where the process group's collectives take their tensors: the current GPU for nccl, else the CPU."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def collective_(operation: Callable[..., Any], tensor: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Run an in-place collective (``all_reduce``, ``reduce``, ``broadcast``) on ``tensor``, wherever it lives.

    The tensor is moved to the backend's device (the GPU for nccl, the CPU for gloo) when it is elsewhere,
    and the result is copied back in place.

    Examples
    --------
    >>> from jacspec.distributed import collective_
    >>> callable(collective_)  # e.g. collective_(torch.distributed.all_reduce, t): only under a process group
    True
    """
    device = _backend_device()
    moved = tensor if tensor.device == device else tensor.to(device)
    operation(moved, **kwargs)
    if moved is not tensor:
        tensor.copy_(moved)
    return tensor


def serve(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, output: Callable | None = None) -> None:
    """On a rank other than 0: answer rank 0's sharded computations on this rank's rows until it is done.

    The commands are the row-sharded tangent-kernel operator's (:func:`jacspec.matrix_free.answer_operator_command`)
    and the Hessian diagonal's (:func:`sharded_hessian_diagonal`); ``"done"`` ends the loop. A command this
    rank cannot answer is a warning here and the loop goes on: the models and batches are the same on every
    rank (both checked), so rank 0 meets the same error and reports it through the Monitor's ``on_error``.

    Examples
    --------
    >>> from jacspec.distributed import serve
    >>> callable(serve)  # run by the Monitor on ranks 1 … W-1 during a collective measurement
    True
    """
    from jacspec._validation import model_device
    from jacspec.matrix_free import answer_operator_command

    x = x.to(model_device(model))
    y = None if y is None else y.to(model_device(model))
    state: dict[str, Any] = {}
    while True:
        message = command()
        kind = message["cmd"]
        if kind == "done":
            return
        try:
            if kind == "hessian_diagonal":
                _hessian_rows(model, x, y, message)
            elif not answer_operator_command(message, state, model, x, output):
                raise RuntimeError(f"unknown command {kind!r} from rank 0")
        except Exception as err:  # noqa: BLE001 - rank 0 meets the same error and reports it; keep serving
            warnings.warn(
                f"jacspec: rank {rank_and_world_size()[0]} could not answer rank 0's {kind!r}: "
                f"{type(err).__name__}: {err}",
                RuntimeWarning,
                stacklevel=2,
            )


def sharded_hessian_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: Mapping[str, torch.Tensor],
    *,
    generator: torch.Generator | None = None,
    **options: Any,
) -> dict[str, torch.Tensor]:
    """On rank 0: :func:`jacspec.information.hessian_diagonal` of the summed loss, its rows shared by the ranks.

    Each rank differentiates the loss of its :func:`row_block` of ``(x, y)``; the diagonals are summed onto
    rank 0 (the Hessian of a sum is the sum of the Hessians; Hutchinson's probes are the same on every rank,
    drawn from a copy of ``generator``'s state). Only for the default summed cross-entropy. The other ranks
    answer in :func:`serve`.

    Examples
    --------
    >>> from jacspec.distributed import sharded_hessian_diagonal
    >>> callable(sharded_hessian_diagonal)  # rank 0 of a collective measurement (WeightInformation)
    True
    """
    message = {
        "cmd": "hessian_diagonal",
        "names": list(params),
        "options": options,
        "generator_state": None if generator is None else generator.get_state(),
        "generator_device": None if generator is None else str(generator.device),
    }
    command(message)
    return _hessian_rows(model, x, y, message, generator)


def _hessian_rows(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    message: dict[str, Any],
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    from jacspec import information as info

    rank, world = rank_and_world_size()
    named = dict(model.named_parameters())
    params = {name: named[name] for name in message["names"]}
    if generator is None and message["generator_state"] is not None:
        generator = torch.Generator(device=message["generator_device"])
        generator.set_state(message["generator_state"])
    rows = row_block(int(x.shape[0]), rank, world)
    if rows.stop > rows.start:
        with torch.enable_grad():
            diagonal = info.hessian_diagonal(model, x[rows], y[rows], params, generator=generator, **message["options"])
    else:
        diagonal = {name: torch.zeros_like(p) for name, p in params.items()}
    summed = {}
    for name in message["names"]:
        summed[name] = collective_(torch.distributed.reduce, diagonal[name].detach().contiguous(), dst=0)
    return summed


def collective(probe: Any) -> bool:
    """Whether a Monitor runs ``probe`` on every rank together, its products sharded by rows.

    True, in ``mode="eval"`` and for these classes or subclasses that keep their ``measure``, for
    :class:`~jacspec.probes.TangentKernel` (when rank 0 takes the matrix-free path, the other ranks compute
    their rows of every kernel–vector product) and for :class:`~jacspec.probes.WeightInformation` with
    ``method="laplace"`` and the default loss (each rank computes the Hessian or GGN diagonal of its rows'
    summed loss). Rank 0 measures; see the module docstring.

    Examples
    --------
    >>> from jacspec.distributed import collective
    >>> from jacspec.probes import PointJacobian, TangentKernel
    >>> collective(TangentKernel()), collective(PointJacobian())
    (True, False)
    """
    from jacspec.probes.tangent_kernel import TangentKernel
    from jacspec.probes.weight_information import WeightInformation

    if getattr(probe, "mode", "eval") != "eval":
        return False
    if isinstance(probe, TangentKernel):
        return type(probe).measure is TangentKernel.measure
    if isinstance(probe, WeightInformation):  # the Laplace Hessian of the default summed loss splits by rows
        return type(probe).measure is WeightInformation.measure and probe.method == "laplace" and probe.loss is None
    return False


def products_sharded() -> bool:
    """True inside a collective measurement on rank 0 (:func:`collective`): the matrix-free path shards rows.

    Examples
    --------
    >>> from jacspec.distributed import products_sharded
    >>> products_sharded()  # outside a Monitor's collective measurement
    False
    """
    return _SHARDED_PRODUCTS.get() and rank_and_world_size()[1] > 1


def _measure_collectively(probe: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> xr.Dataset | None:
    """Rank 0 measures with row-sharded products; the other ranks serve their rows. Rank 0's result."""
    from jacspec.probes.base import preserve_model_state

    rank, world = rank_and_world_size()
    checksums: list[Any] = [None] * world
    torch.distributed.all_gather_object(checksums, _data_checksum(x, y))
    differ = [r for r, got in enumerate(checksums) if got != checksums[0]]
    if differ:  # every rank knows: none starts serving
        if rank != 0:
            return None
        raise _different_batches(probe, differ)
    if rank != 0:
        with preserve_model_state(model, getattr(probe, "mode", "eval")):
            serve(model, x, y, getattr(probe, "output", None))
        return None
    token = _SHARDED_PRODUCTS.set(True)
    try:
        return probe.measure(model, x, y)
    finally:
        _SHARDED_PRODUCTS.reset(token)
        end_service()


def _different_batches(probe: Any, ranks: list[int]) -> ValueError:
    return ValueError(
        f"probe {probe.name!r} splits its examples across ranks, so every rank must pass the Monitor the same "
        f"probe batch, but ranks {ranks} hold data (x, y) that differ from rank 0's. Pass every rank the "
        "same `data` (e.g. the same tensors, or the same Dataset with the same probe_seed), not each rank's "
        "shard of the training data."
    )


def _data_checksum(x: torch.Tensor, y: torch.Tensor | None) -> str:
    digest = hashlib.sha256()
    for tensor in (x, y):
        if tensor is None:
            digest.update(b"none")
            continue
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def measure_rows(probe: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> xr.Dataset | None:
    """``probe.measure(model, x, y)``, its rows split across the ranks when the probe is :func:`shardable`.

    Under an initialised process group every rank must call this with the same probe and the same
    ``x``/``y`` (a collective): each measures its :func:`row_block`, rank 0 gathers the blocks and returns the
    combined Dataset, equal to the single-process result; the other ranks return None. Without a process
    group, or for a probe that is not shardable, it is ``probe.measure(model, x, y)`` (call it on rank 0
    only then).

    Raises
    ------
    ValueError
        On rank 0, when the ranks hold different probe batches.
    Exception
        On rank 0, rank 0's own exception when its block raised; a RuntimeError naming the rank and its
        error when only another rank's block raised.

    Examples
    --------
    >>> import torch
    >>> from jacspec.distributed import measure_rows
    >>> from jacspec.probes import Performance
    >>> ds = measure_rows(Performance(), torch.nn.Linear(2, 3), torch.randn(4, 2), torch.tensor([0, 1, 2, 0]))
    >>> sorted(ds.data_vars)  # one process: just the probe's measure
    ['accuracy', 'loss']
    """
    rank, world = rank_and_world_size()
    if world > 1 and collective(probe):
        return _measure_collectively(probe, model, x, y)
    if world == 1 or not shardable(probe):
        return probe.measure(model, x, y)
    n = int(x.shape[0])
    block = row_block(n, rank, world)
    piece: xr.Dataset | None = None
    error: BaseException | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if block.stop > block.start:
            try:
                piece = probe.measure(model, x[block], None if y is None else y[block])
            except Exception as err:  # noqa: BLE001 - sent to rank 0, which raises it
                error = err
    message = {
        "checksum": _data_checksum(x, y),
        "piece": piece,
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "warnings": [(w.category, str(w.message)) for w in caught],
    }
    gathered: list[Any] | None = [None] * world if rank == 0 else None
    torch.distributed.gather_object(message, gathered, dst=0)
    if rank != 0:
        return None
    assert gathered is not None
    for r, got in enumerate(gathered):
        rows = row_block(n, r, world)
        for category, text in got["warnings"]:
            warnings.warn(f"rank {r} (rows {rows.start}:{rows.stop}): {text}", category, stacklevel=3)
    if error is not None:
        raise error
    failed = [(r, got["error"]) for r, got in enumerate(gathered) if got["error"] is not None]
    if failed:
        r, text = failed[0]
        rows = row_block(n, r, world)
        raise RuntimeError(
            f"probe {probe.name!r} raised on rank {r}, measuring rows {rows.start}:{rows.stop} of its batch: {text}"
        )
    differ = [r for r, got in enumerate(gathered) if got["checksum"] != gathered[0]["checksum"]]
    if differ:
        raise _different_batches(probe, differ)
    pieces = [got["piece"] for got in gathered if got["piece"] is not None]
    combined = _combiner(probe)(probe, pieces, n)  # type: ignore[misc]
    if combined is None:  # a variable this module cannot combine: rank 0 measures every row itself
        warnings.warn(
            f"probe {probe.name!r}: its per-rank results hold variables that cannot be combined across ranks, "
            "so rank 0 measured every example itself (correct, but not sharded).",
            RuntimeWarning,
            stacklevel=2,
        )
        return probe.measure(model, x, y)
    return combined


def serve_rows(
    jobs: Iterable[tuple[Any, str | None]],
    model: nn.Module,
    data: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
) -> None:
    """On a rank other than 0: measure this rank's rows of every shardable job, as rank 0 does in turn.

    ``jobs`` are the Monitor's ``(probe, split)`` pairs in rank 0's order; each shardable one with a split
    joins rank 0's :func:`measure_rows` collective, the others are skipped (rank 0 measures them alone).

    Examples
    --------
    >>> import torch
    >>> from jacspec.distributed import serve_rows
    >>> serve_rows([], torch.nn.Linear(2, 2), {})  # nothing to measure
    """
    for probe, split in jobs:
        if split is not None and (shardable(probe) or collective(probe)):
            x, y = data[split]
            measure_rows(probe, model, x, y)


def _with_samples(template: xr.Dataset, pieces: list[xr.Dataset], n: int) -> xr.Dataset:
    """``template`` with only its ``sample`` variables, concatenated over ``pieces`` in order."""
    out = xr.Dataset(attrs=dict(template.attrs))
    for name, var in template.data_vars.items():
        if "sample" in var.dims:
            axis = var.dims.index("sample")
            values = np.concatenate([piece[name].values for piece in pieces], axis=axis)
            out[name] = xr.Variable(var.dims, values, dict(var.attrs))
    for name, coord in template.coords.items():
        if name == "sample":
            out = out.assign_coords(sample=("sample", np.arange(n), dict(coord.attrs)))
        elif "sample" not in coord.dims:
            out = out.assign_coords({name: coord.variable.copy()})
    return out


def _combine_point_jacobian(probe: Any, pieces: list[xr.Dataset], n: int) -> xr.Dataset | None:
    from jacspec import fit

    template = pieces[0]
    scalars = {"mean_log_singular_value", "n_nonfinite_jacobians", "n_zero_singular_values"}
    modes = set(fit.attach(xr.Dataset(), None).data_vars) if probe.fit_modes else set()
    others = {name for name, var in template.data_vars.items() if "sample" not in var.dims}
    if others - scalars - modes or "singular_values" not in template:
        return None
    ds = _with_samples(template, pieces, n)
    if "mode" in ds.coords:
        ds = ds.drop_vars("mode")
    # the whole-batch statistics, recomputed from all the singular values as PointJacobian.measure does
    sigma = ds["singular_values"].values
    finite = np.isfinite(sigma).all(axis=1)
    positive = sigma > 0
    n_nonfinite = int((~finite).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(positive, np.log(np.where(positive, sigma, 1.0)), np.nan)
    if n_nonfinite:
        mean_log = float("nan")
    else:
        mean_log = float(logs[positive].mean()) if positive.any() else float("nan")
    values = {
        "mean_log_singular_value": mean_log,
        "n_nonfinite_jacobians": n_nonfinite,
        "n_zero_singular_values": int((sigma[finite] == 0).sum()),
    }
    for name, value in values.items():
        ds[name] = xr.Variable((), value, dict(template[name].attrs))
    if probe.fit_modes:
        kept = sigma[np.isfinite(sigma) & (sigma > 0)]
        ds = fit.attach(ds, fit.split_modes(kept) if kept.size >= fit.MIN_VALUES_SPLIT else None)
    return ds


def _combine_performance(probe: Any, pieces: list[xr.Dataset], n: int) -> xr.Dataset | None:
    if set(pieces[0].data_vars) != {"loss", "accuracy"}:
        return None
    sizes = [int(piece.attrs["n_examples"]) for piece in pieces]
    loss = sum(float(piece["loss"]) * size for piece, size in zip(pieces, sizes))  # each block's summed loss
    correct = sum(round(float(piece["accuracy"]) * size) for piece, size in zip(pieces, sizes))
    ds = pieces[0].copy(deep=True)
    ds["loss"] = xr.Variable((), loss / n, dict(pieces[0]["loss"].attrs))
    ds["accuracy"] = xr.Variable((), correct / n, dict(pieces[0]["accuracy"].attrs))
    ds.attrs["n_examples"] = n
    return ds
