"""A Monitor under torch.distributed (two gloo processes on the CPU).

Reference: the same training in one process. Two ranks each take half of every batch; DDP averages their
gradients, which equals the full batch's mean gradient up to round-off, so in float64 the probed values of
rank 0 agree with the single-process run to 1e-10. Also checked: only rank 0 writes the run file, and DDP
training ends with bit-identical weights on every rank with and without the monitor.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import xarray as xr
from torch import nn

import jacspec
from jacspec.probes import PointJacobian, SpectralNorm, TangentKernel

STEPS = 6
EVERY = 2


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS, 16, 5, generator=g, dtype=torch.float64)  # (step, batch, features)
    y = torch.randint(0, 3, (STEPS, 16), generator=g)
    probe_x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    probe_y = torch.randint(0, 3, (12,), generator=g)
    return x, y, probe_x, probe_y


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _probes():
    return [PointJacobian(), SpectralNorm(method="exact"), TangentKernel(layer_statistics=False)]


def _train(model, batches, monitor=None):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step, (x, y) in enumerate(batches):
        if monitor is not None:
            monitor.step(step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    if monitor is not None:
        monitor.step(len(batches))
        monitor.close()
    return [p.detach().clone() for p in model.parameters()]


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x, y, probe_x, probe_y = _data()
        half = slice(rank * 8, (rank + 1) * 8)
        batches = [(x[s, half], y[s, half]) for s in range(STEPS)]
        with_monitor = nn.parallel.DistributedDataParallel(_model())
        monitor = jacspec.Monitor(
            with_monitor,
            _probes(),
            data={"train": (probe_x, probe_y)},
            every=EVERY,
            path=os.path.join(folder, "ddp.nc"),
            progress=False,
        )
        weights = _train(with_monitor, batches, monitor)
        plain = _train(nn.parallel.DistributedDataParallel(_model()), batches)
        torch.save({"with": weights, "without": plain}, os.path.join(folder, f"weights{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo")
def test_two_gloo_ranks_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    # only rank 0 wrote: one run file, no second one, no leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.nc", "weights0.pt", "weights1.pt"]
    # every rank: bit-identical weights with and without the monitor; both ranks hold the same replica
    w0, w1 = (torch.load(tmp_path / f"weights{r}.pt") for r in range(2))
    for a, b, c in zip(w0["with"], w0["without"], w1["with"]):
        assert torch.equal(a, b) and torch.equal(a, c)
    # rank 0's results against the same training in one process (the full batch's mean gradient)
    x, y, probe_x, probe_y = _data()
    single = tmp_path / "single.nc"
    model = _model()
    monitor = jacspec.Monitor(
        model, _probes(), data={"train": (probe_x, probe_y)}, every=EVERY, path=single, progress=False
    )
    _train(model, [(x[s], y[s]) for s in range(STEPS)], monitor)
    ddp, one = xr.open_datatree(tmp_path / "ddp.nc"), xr.open_datatree(single)
    for group in ("point_jacobian", "spectral_norm", "tangent_kernel"):
        a, b = ddp[group].to_dataset(), one[group].to_dataset()
        assert list(a["step"].values) == [0, 2, 4, 6]
        for name in ("singular_values", "spectral_norm", "eigenvalues", "effective_rank"):
            if name in a:
                xr.testing.assert_allclose(a[name], b[name], rtol=1e-10, atol=1e-12)
    ddp.close()
    one.close()
