"""Probing under ``torch.distributed``: the rank context, unwrapping DDP, a model checksum across ranks.

A :class:`jacspec.Monitor` created on every rank of an initialised process group probes on rank 0 only and
rank 0 alone writes the run file; the other ranks take part only in the collective checks (every rank must
call ``monitor.step`` at the same steps, as with any collective). The model is unwrapped from
``DistributedDataParallel`` (or ``DataParallel``) before probing, so a probe never runs DDP's forward hooks
and never triggers its gradient all-reduce; every rank's RNG is left as it was.

Not yet done: sharding a probe's examples across ranks (each rank measuring its rows and rank 0 combining
them); today rank 0 measures all of them, which gives the single-process result exactly.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

__all__ = ["rank_and_world_size", "unwrap_model", "model_checksum", "check_same_model"]


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
