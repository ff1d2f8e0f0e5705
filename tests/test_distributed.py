"""A Monitor under torch.distributed (two gloo processes on the CPU).

Reference: the same training in one process. Two ranks each take half of every batch; DDP averages their
gradients, which equals the full batch's mean gradient up to round-off, so in float64 the probed values of
rank 0 agree with the single-process run to 1e-10. PointJacobian and Performance split the probe batch
between the ranks (rank 1 really measures its rows: the inputs each rank's model saw are recorded); the
other probes run on rank 0. Also checked: only rank 0 writes the run file, DDP training ends with
bit-identical weights on every rank with and without the monitor, no rank's RNG moves, and replicas with
different weights, ranks with different probe batches and a probe failing on rank 1 only are all reported.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import xarray as xr
from torch import nn

import jacspec
from jacspec.distributed import row_block, shardable
from jacspec.probes import Performance, PointJacobian, SpectralNorm, TangentKernel, WeightInformation

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo"
)

STEPS = 6
EVERY = 2
N_PROBE = 21  # odd: the ranks' blocks differ in size (10 and 11 rows)


class Seen(nn.Module):
    """Identity that records the first feature of every row it is fed (a plain attribute: not in the checksum)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[torch.Tensor] = []
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise RuntimeError("this rank's forward fails")
        if not torch._C._functorch.is_functorch_wrapped_tensor(x):  # plain forwards (not inside vmap/jvp)
            self.rows.append(x.detach()[:, 0].clone())
        return x


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS, 16, 5, generator=g, dtype=torch.float64)  # (step, batch, features)
    y = torch.randint(0, 3, (STEPS, 16), generator=g)
    probe_x = torch.randn(N_PROBE, 5, generator=g, dtype=torch.float64)
    probe_y = torch.randint(0, 3, (N_PROBE,), generator=g)
    return x, y, probe_x, probe_y


def _model():
    torch.manual_seed(0)
    return nn.Sequential(Seen(), nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _probes():
    return [
        PointJacobian(fit_modes=True),  # 63 singular values: the lognormal mode fit runs on the gathered values
        Performance(),
        SpectralNorm(method="exact"),
        TangentKernel(layer_statistics=False),
    ]


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


def _init(rank: int, world: int, port: int, timeout_s: float | None = None) -> None:
    import datetime

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    timeout = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=timeout_s)}
    dist.init_process_group("gloo", rank=rank, world_size=world, **timeout)


@contextlib.contextmanager
def _process_group(rank: int, world: int, port: int, timeout_s: float | None = None) -> Iterator[None]:
    """A worker's process group: on success both ranks meet at a barrier before either tears it down."""
    _init(rank, world, port, timeout_s)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    _init(rank, world, port)
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
        # which rows each rank's model is fed while the sharded probes measure, and whether the RNG moved
        model = nn.parallel.DistributedDataParallel(_model())
        sharded = jacspec.Monitor(
            model, [PointJacobian(), Performance()], data={"train": (probe_x, probe_y)}, every=1, progress=False
        )
        seen = model.module[0]
        seen.rows.clear()
        rng = torch.get_rng_state()
        results = sharded.step(0)
        rng_kept = bool(torch.equal(rng, torch.get_rng_state()))
        out = {
            "with": weights,
            "without": plain,
            "seen": torch.cat(seen.rows),
            "rng_kept": rng_kept,
            "results": sorted(results),
        }
        torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    # (b) only rank 0 wrote: one run file, no second one, no leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.nc", "rank0.pt", "rank1.pt"]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    # (c) every rank: bit-identical weights with and without the monitor; both ranks hold the same replica
    for a, b, c in zip(r0["with"], r0["without"], r1["with"]):
        assert torch.equal(a, b) and torch.equal(a, c)
    # (e) each rank was fed exactly its own block of the probe batch, and rank 0 alone got results
    _, _, probe_x, probe_y = _data()
    for r, got in enumerate((r0, r1)):
        block = set(probe_x[row_block(N_PROBE, r, 2), 0].tolist())
        assert set(got["seen"].tolist()) == block, f"rank {r} measured rows outside its block"
        assert got["rng_kept"]
    assert r0["results"] == ["performance", "point_jacobian"] and r1["results"] == []
    # (a) rank 0's results against the same training in one process (the full batch's mean gradient)
    x, y, _, _ = _data()
    single = tmp_path / "single.nc"
    model = _model()
    monitor = jacspec.Monitor(
        model, _probes(), data={"train": (probe_x, probe_y)}, every=EVERY, path=single, progress=False
    )
    _train(model, [(x[s], y[s]) for s in range(STEPS)], monitor)
    ddp, one = jacspec.open_run(tmp_path / "ddp.nc"), jacspec.open_run(single)
    for probe in _probes():
        timing = ["wall_time", "probe_seconds"]  # when and how long: the only variables allowed to differ
        a = ddp[probe.name].to_dataset().drop_vars(timing, errors="ignore")
        b = one[probe.name].to_dataset().drop_vars(timing, errors="ignore")
        assert list(a["step"].values) == [0, 2, 4, 6]
        assert set(a.data_vars) == set(b.data_vars) and a.sizes == b.sizes
        xr.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        assert a.attrs == b.attrs
    pj = ddp["point_jacobian"].to_dataset()
    assert pj.sizes["sample"] == N_PROBE and int(pj["mode_count"].sum()) > 0  # the fit did run
    ddp.close()
    one.close()


def _mismatch_worker(rank: int, world: int, port: int, folder: str) -> None:
    _init(rank, world, port)
    outcome = {}
    try:
        _, _, probe_x, probe_y = _data()

        def attempt(key, model, data, probes):
            monitor = jacspec.Monitor(model, probes, data=data, every=1, progress=False, on_error="raise")
            try:
                got = monitor.step(0)
                outcome[key] = ("ok", sorted(got))
            except Exception as err:  # noqa: BLE001 - recorded for the test
                outcome[key] = (type(err).__name__, str(err))

        # (d) replicas holding different weights: every rank refuses
        model = _model()
        if rank == 1:
            with torch.no_grad():
                model[1].bias.add_(1e-3)
        attempt("models", model, {"train": (probe_x, probe_y)}, [PointJacobian()])
        # ranks holding different probe batches: rank 0 refuses to mix them
        attempt("data", _model(), {"train": (probe_x + rank, probe_y)}, [PointJacobian()])
        # a probe failing on rank 1 only: rank 0 raises, naming rank 1 and its rows
        model = _model()
        model[0].fail = rank == 1
        attempt("rank1_fails", model, {"train": (probe_x, probe_y)}, [Performance()])
        # and the process group is still in step: a sharded probe after the failures works
        attempt("after", _model(), {"train": (probe_x, probe_y)}, [PointJacobian(), Performance()])
        torch.save(outcome, os.path.join(folder, f"outcome{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_different_models_data_and_failures_are_reported(tmp_path):
    mp.spawn(_mismatch_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    o0, o1 = (torch.load(tmp_path / f"outcome{r}.pt") for r in range(2))
    for got in (o0, o1):
        kind, message = got["models"]
        assert kind == "ValueError" and "ranks [1]" in message
    assert o0["data"][0] == "ValueError" and "ranks [1] hold data" in o0["data"][1]
    assert o1["data"] == ("ok", [])
    assert o0["rank1_fails"][0] == "RuntimeError" and "rank 1" in o0["rank1_fails"][1]
    assert "rows 10:21" in o0["rank1_fails"][1] and "this rank's forward fails" in o0["rank1_fails"][1]
    assert o1["rank1_fails"] == ("ok", [])
    assert o0["after"] == ("ok", ["performance", "point_jacobian"]) and o1["after"] == ("ok", [])


def test_one_process_shardable_and_blocks():
    assert shardable(PointJacobian()) and shardable(Performance())
    assert not shardable(TangentKernel()) and not shardable(SpectralNorm())
    train_mode = PointJacobian()
    train_mode.mode = "train"  # BatchNorm / dropout couple or randomise the rows: not split
    assert not shardable(train_mode)

    class Custom(PointJacobian):
        def measure(self, model, x=None, y=None):
            return super().measure(model, x, y)

    assert not shardable(Custom())  # an overridden measure may not split by rows
    for n in (0, 1, 5, 21):
        for world in (1, 2, 3):
            rows = [i for r in range(world) for i in range(n)[row_block(n, r, world)]]
            assert rows == list(range(n))


def test_combined_blocks_equal_the_whole_batch_in_one_process():
    """The combiners alone: blocks measured one after another, combined, against one measurement of all rows."""
    from jacspec.distributed import _combiner

    _, _, probe_x, probe_y = _data()
    model = _model()
    n = N_PROBE
    for probe in (PointJacobian(fit_modes=True), PointJacobian(), Performance()):
        for world in (2, 3):
            blocks = [row_block(n, r, world) for r in range(world)]
            pieces = [probe.measure(model, probe_x[b], probe_y[b]) for b in blocks]
            combined = _combiner(probe)(probe, pieces, n)
            whole = probe.measure(model, probe_x, probe_y)
            xr.testing.assert_allclose(combined, whole, rtol=1e-12, atol=1e-14)
            assert set(combined.variables) == set(whole.variables) and combined.attrs == whole.attrs
    # a variable the combiner does not know: no combined result (rank 0 then measures every row itself)
    pieces = [PointJacobian().measure(model, probe_x[:10]), PointJacobian().measure(model, probe_x[10:])]
    pieces[0]["extra"] = xr.Variable((), 1.0)
    assert _combiner(PointJacobian())(PointJacobian(), pieces, n) is None
    # a block with a non-finite Jacobian: the counts add up and E[log sigma] is NaN, never a mean of the rest
    pieces = [PointJacobian().measure(model, probe_x[:10]), PointJacobian().measure(model, probe_x[10:])]
    pieces[1]["singular_values"][0, :] = float("nan")
    combined = _combiner(PointJacobian())(PointJacobian(), pieces, n)
    assert int(combined["n_nonfinite_jacobians"]) == 1 and bool(combined["mean_log_singular_value"].isnull())


def _conv_model():
    # a Conv1d layer: the matrix-free products run through autograd (no cached factors), also row-sharded
    torch.manual_seed(0)
    return nn.Sequential(
        Seen(), nn.Unflatten(1, (1, 5)), nn.Conv1d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(6, 3)
    ).double()


def _lanczos_probes():
    # top_k below n·c = 63 so that the SLQ remainder and the Hutchinson CKA term run too
    return [TangentKernel(method="lanczos", top_k=8, layer_statistics=False)]


def _lanczos_worker(rank: int, world: int, port: int, folder: str) -> None:
    with _process_group(rank, world, port):
        _, _, probe_x, probe_y = _data()
        out = {}
        for name, build in (("mlp", _model), ("conv", _conv_model)):
            model = nn.parallel.DistributedDataParallel(build())
            monitor = jacspec.Monitor(
                model, _lanczos_probes(), data={"train": (probe_x, probe_y)}, every=1, progress=False, on_error="raise"
            )
            seen = model.module[0]
            seen.rows.clear()
            rng = torch.get_rng_state()
            results = monitor.step(0)
            out[name] = {
                "results": {k: {s: ds.load() for s, ds in v.items()} for k, v in results.items()},
                "seen": torch.cat(seen.rows),
                "rng_kept": bool(torch.equal(rng, torch.get_rng_state())),
                "training": model.module.training,
            }
            monitor.close()
        torch.save(out, os.path.join(folder, f"lanczos{rank}.pt"))


def test_lanczos_tangent_kernel_rows_sharded_across_two_ranks(tmp_path):
    # reference: the same probe on the same model and batch in one process
    mp.spawn(_lanczos_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"lanczos{r}.pt", weights_only=False) for r in range(2))
    _, _, probe_x, probe_y = _data()
    for name, build in (("mlp", _model), ("conv", _conv_model)):
        got = r0[name]["results"]["tangent_kernel"]["train"]
        expected = _lanczos_probes()[0].measure(build(), probe_x, probe_y)
        timing = ["wall_time", "probe_seconds"]
        xr.testing.assert_allclose(
            got.drop_vars(timing, errors="ignore"), expected.drop_vars(timing, errors="ignore"), rtol=1e-9, atol=1e-12
        )
        assert got.attrs["kernel_products"] == expected.attrs["kernel_products"]
        assert r1[name]["results"] == {}
        # each rank differentiated its own block of rows: rank 1 saw nothing else (beyond the one example that
        # sizes the output); rank 0 saw rank 1's rows once, in the whole-batch forward that checks the outputs
        first, second = (set(probe_x[row_block(N_PROBE, r, 2), 0].tolist()) for r in range(2))
        seen1 = r1[name]["seen"].tolist()
        assert second <= set(seen1) <= second | {float(probe_x[0, 0])}, name
        seen0 = r0[name]["seen"].tolist()
        assert first <= set(seen0) and all(seen0.count(v) == 1 for v in second), name
        assert all(rank_out[name]["rng_kept"] and rank_out[name]["training"] for rank_out in (r0, r1))


HESSIANS = ("exact", "ggn", "hutchinson")


def _weight_information_worker(rank: int, world: int, port: int, folder: str) -> None:
    with _process_group(rank, world, port):
        _, _, probe_x, probe_y = _data()
        model = nn.parallel.DistributedDataParallel(_model())
        probes = [WeightInformation(hessian=h, n_probes=20) for h in HESSIANS]
        for probe, h in zip(probes, HESSIANS):
            probe.name = f"weight_information_{h}"
        monitor = jacspec.Monitor(
            model, probes, data={"train": (probe_x, probe_y)}, every=1, progress=False, on_error="raise"
        )
        seen = model.module[0]
        seen.rows.clear()
        results = monitor.step(0)
        out = {
            "results": {k: v["train"].load() for k, v in results.items()},
            "seen": torch.cat(seen.rows) if seen.rows else torch.empty(0, dtype=torch.float64),
        }
        monitor.close()
        torch.save(out, os.path.join(folder, f"wi{rank}.pt"))


def test_weight_information_hessian_rows_sharded_across_two_ranks(tmp_path):
    # reference: the same probes in one process (the Hessian of a sum is the sum of the blocks' Hessians;
    # Hutchinson's probes come from the same seeded generator on every rank)
    mp.spawn(_weight_information_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"wi{r}.pt", weights_only=False) for r in range(2))
    _, _, probe_x, probe_y = _data()
    assert r1["results"] == {}
    for h in HESSIANS:
        got = r0["results"][f"weight_information_{h}"]
        expected = WeightInformation(hessian=h, n_probes=20).measure(_model(), probe_x, probe_y)
        xr.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    # rank 1 differentiated its own rows only (the GGN's batched backward passes see them)
    second = set(probe_x[row_block(N_PROBE, 1, 2), 0].tolist())
    assert set(r1["seen"].tolist()) == second


def _callback_worker(rank: int, world: int, port: int, folder: str, framework: str) -> None:
    from types import SimpleNamespace

    # a short timeout: a Monitor on one rank only would wait for the other at its first collective
    with _process_group(rank, world, port, timeout_s=60):
        x, y, probe_x, probe_y = _data()
        half = slice(rank * 8, (rank + 1) * 8)
        model = nn.parallel.DistributedDataParallel(_model())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        probes, data = [PointJacobian(), Performance()], {"train": (probe_x, probe_y)}
        path = os.path.join(folder, f"{framework}.nc")
        if framework == "lightning":
            from jacspec.integrations.lightning import JacspecCallback

            callback = JacspecCallback(probes, data=data, every=EVERY, path=path, progress=False)
            trainer = SimpleNamespace(is_global_zero=rank == 0, global_step=0, should_stop=False)
            callback.on_fit_start(trainer, model.module)
        else:
            from jacspec.integrations.huggingface import JacspecCallback

            callback = JacspecCallback(probes, data=data, every=EVERY, path=path, progress=False)
            state = SimpleNamespace(is_world_process_zero=rank == 0, global_step=0)
            control = SimpleNamespace(should_training_stop=False)
            callback.on_train_begin(None, state, control, model=model.module)
        created = callback.monitor is not None
        for step in range(STEPS):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[step, half]), y[step, half]).backward()
            optimizer.step()
            if framework == "lightning":
                trainer.global_step = step + 1
                callback.on_train_batch_end(trainer, model.module, None, None, step)
            else:
                state.global_step = step + 1
                callback.on_step_end(None, state, control)
        if framework == "lightning":
            callback.on_fit_end(trainer, model.module)
        else:
            callback.on_train_end(None, state, control)
        torch.save({"created": created}, os.path.join(folder, f"{framework}{rank}.pt"))


@pytest.mark.parametrize("framework", ["lightning", "huggingface"])
def test_framework_callbacks_probe_on_every_rank_under_ddp(tmp_path, framework):
    # the callbacks used to create the Monitor on rank zero only: its first probed step then waited for the
    # other ranks at the replicas' checksum until the process group timed out
    pytest.importorskip("lightning.pytorch" if framework == "lightning" else "transformers")
    mp.spawn(_callback_worker, args=(2, _free_port(), str(tmp_path), framework), nprocs=2, join=True)
    assert all(torch.load(tmp_path / f"{framework}{r}.pt")["created"] for r in range(2))
    run = jacspec.open_run(tmp_path / f"{framework}.nc")  # written once, by rank 0
    assert list(run["point_jacobian"]["step"].values) == [2, 4, 6]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{framework}.nc", f"{framework}0.pt", f"{framework}1.pt"]
    )
    run.close()


def _same_failure_worker(rank: int, world: int, port: int, folder: str) -> None:
    import warnings

    with _process_group(rank, world, port, timeout_s=60):
        _, _, probe_x, probe_y = _data()
        model = nn.parallel.DistributedDataParallel(_conv_model())
        # the Conv1d weight needs one Hessian-vector product per entry: refused above max_exact_parameters=1,
        # on every rank, inside the sharded Hessian diagonal
        probes = [WeightInformation(max_exact_parameters=1), PointJacobian()]
        monitor = jacspec.Monitor(model, probes, data={"train": (probe_x, probe_y)}, every=1, progress=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = monitor.step(0)
            second = monitor.step(1)  # the ranks are still in step
        out = {
            "first": sorted(first),
            "second": sorted(second),
            "errors": [(e.probe, e.error_type) for e in monitor.errors],
            "warnings": [str(w.message) for w in caught],
        }
        monitor.close()
        torch.save(out, os.path.join(folder, f"fail{rank}.pt"))


def test_an_error_every_rank_meets_in_a_sharded_hessian_is_reported_on_rank_0(tmp_path):
    mp.spawn(_same_failure_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"fail{r}.pt", weights_only=False) for r in range(2))
    assert r0["first"] == r0["second"] == ["errors", "point_jacobian"]  # PointJacobian still ran, after the failure
    assert r0["errors"] == [("weight_information", "ValueError")] * 2
    assert r1["first"] == r1["second"] == [] and r1["errors"] == []
    assert any("could not answer rank 0's 'hessian_diagonal'" in w for w in r1["warnings"])
