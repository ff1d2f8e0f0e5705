"""Benchmark: time and peak memory against the number of examples n (issue "Scale").

On an MLP 64-256-256-10 (float32, CPU, c = 10 outputs; inputs drawn from N(0, 1), so any n is possible):

* ``point_jacobian``: ``PointJacobian().measure`` — linear in n (one Jacobian per example);
* ``tangent_kernel_dense``: ``TangentKernel(layer_statistics=False).measure`` — the (n·c)² kernel in memory
  and its dense eigendecomposition, O((n·c)³);
* ``tangent_kernel_lanczos``: :func:`jacspec.matrix_free.matrix_free_statistics` (top 20 eigenvalues by
  thick-restart block Lanczos, exact traces, effective rank by stochastic Lanczos quadrature with 16 probes,
  label CKA) — the kernel is never formed: memory linear in n, time linear in n per kernel–vector product.

Each (method, n) runs in its own subprocess (fresh peak-memory accounting: the growth of ``ru_maxrss`` over
the process' size before the call; on a GPU, chosen when one is present or by ``JACSPEC_BENCH_DEVICE``, also
``torch.cuda.max_memory_allocated``), one call each, stopped after ``--timeout`` seconds. The crossover is the
smallest n at which the matrix-free path is faster than the dense one.

``--ranks``: PointJacobian at n = 20 000 against the number of gloo ranks on the CPU
(:func:`jacspec.distributed.measure_rows`: each rank measures its block of rows, rank 0 gathers them and
recomputes the whole-batch statistics), one thread per rank, beside one process with one thread and with as
many threads as ranks; the time is rank 0's, from a barrier to the combined Dataset.

Run: ``PYTHONPATH=src python benchmarks/scaling.py`` (quick sizes, about a minute);
``--full`` for the sizes of a real run (n up to 20 000; tens of minutes); ``--plot runs/scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import markdown_table  # noqa: E402

QUICK = {
    "point_jacobian": [100, 400, 1600],
    "tangent_kernel_dense": [50, 100, 200],
    "tangent_kernel_lanczos": [50, 200, 400],
}
FULL = {
    "point_jacobian": [100, 1000, 5000, 20000],
    "tangent_kernel_dense": [100, 200, 500, 1000],
    "tangent_kernel_lanczos": [100, 500, 2000, 5000, 20000],
}


def _child(method: str, n: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(int(os.environ.get("JACSPEC_BENCH_THREADS", "2")))
    device = os.environ.get("JACSPEC_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    model = model.to(device)
    x = torch.randn(n, 64).to(device)
    y = torch.randint(0, 10, (n,)).to(device)
    _measure(method, model, x[:8], y[:8])  # warm-up: imports and first-call costs are not the method's
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    summary = _measure(method, model, x, y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"seconds": seconds, "peak_mib": max(peak - before, 0) / 1024.0, "summary": summary, "device": device}
    if device.startswith("cuda"):  # the GPU's own peak (the host's ru_maxrss does not see it)
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _measure(method: str, model, x, y) -> float:
    if method == "point_jacobian":
        from jacspec.probes import PointJacobian

        ds = PointJacobian().measure(model, x, y)
        summary = float(ds["mean_log_singular_value"])
    elif method == "tangent_kernel_dense":
        from jacspec.probes import TangentKernel

        # the uncentered kernel, as on the lanczos row: the summary column must agree where both run
        ds = TangentKernel(layer_statistics=False, center_features=False, max_memory="16GB").measure(model, x, y)
        summary = float(ds["effective_rank"])
    else:
        from jacspec.matrix_free import matrix_free_statistics

        stats = matrix_free_statistics(model, x, y, top_k=20, probes=16, tol=1e-3, center_features=False)
        summary = float(stats.effective_rank)
    return summary


def _rank_worker(rank: int, world: int, threads: int, port: int, n: int, queue) -> None:
    import torch
    import torch.distributed as dist
    from torch import nn

    from jacspec.distributed import measure_rows
    from jacspec.probes import PointJacobian

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
        x = torch.randn(n, 64)
        y = torch.randint(0, 10, (n,))
        measure_rows(PointJacobian(), model, x[:64], y[:64])  # warm-up on every rank
        times = []
        for _ in range(3):
            dist.barrier()
            start = time.perf_counter()
            ds = measure_rows(PointJacobian(), model, x, y)
            times.append(time.perf_counter() - start)
        if rank == 0:
            queue.put({"seconds": sorted(times)[1], "summary": float(ds["mean_log_singular_value"])})
    finally:
        dist.destroy_process_group()


def run_ranks(n: int = 20000, ranks: int = 2) -> list[dict]:
    """PointJacobian on ``n`` examples: one process with 1 and ``ranks`` threads, ``ranks`` gloo ranks of 1 thread."""
    import socket

    import torch.multiprocessing as mp

    rows = []
    for world, threads in ((1, 1), (1, ranks), (ranks, 1)):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        queue = mp.get_context("spawn").SimpleQueue()
        mp.start_processes(
            _rank_worker, args=(world, threads, port, n, queue), nprocs=world, join=True, start_method="spawn"
        )
        setting = f"{world} gloo rank(s) × {threads} thread(s)"
        rows.append({"setting": setting, "n": n, **queue.get()})
    for row in rows:
        row["speed-up"] = rows[0]["seconds"] / row["seconds"]
    return rows


def run_one(method: str, n: int, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, str(n)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        result = {"seconds": float("nan"), "peak_mib": float("nan"), "summary": float("nan"), "note": "timeout"}
    except subprocess.CalledProcessError as err:
        last = (err.stderr or "").strip().splitlines()[-1:] or ["failed"]
        result = {"seconds": float("nan"), "peak_mib": float("nan"), "summary": float("nan"), "note": last[0]}
    return {"method": method, "n": n, "n·c": 10 * n, **result}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the sizes of a real run (tens of minutes)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per (method, n) before giving up")
    parser.add_argument("--plot", default=None, help="write a log-log figure of time and memory against n here")
    parser.add_argument("--ranks", action="store_true", help="PointJacobian at n = 20 000 against 1 and 2 gloo ranks")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]))))
        return
    if args.ranks:
        print(markdown_table(run_ranks(), ["setting", "n", "seconds", "speed-up", "summary"]))
        return
    sizes = FULL if args.full else QUICK
    rows = [run_one(method, n, args.timeout) for method, ns in sizes.items() for n in ns]
    columns = ["method", "n", "n·c", "device", "seconds", "peak_mib", "summary"]
    if any("cuda_peak_mib" in row for row in rows):
        columns.insert(6, "cuda_peak_mib")
    print(markdown_table(rows, columns))
    dense = {r["n"]: r["seconds"] for r in rows if r["method"] == "tangent_kernel_dense"}
    lanczos = {r["n"]: r["seconds"] for r in rows if r["method"] == "tangent_kernel_lanczos"}
    faster = [n for n in sorted(set(dense) & set(lanczos)) if lanczos[n] < dense[n]]
    print(f"\ncrossover (matrix-free faster than dense) at n = {faster[0] if faster else 'beyond the sizes run'}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for method in sizes:
            part = [r for r in rows if r["method"] == method and r["seconds"] == r["seconds"]]
            axes[0].loglog([r["n"] for r in part], [r["seconds"] for r in part], marker="o", label=method)
            axes[1].loglog([r["n"] for r in part], [max(r["peak_mib"], 1e-1) for r in part], marker="o")
        axes[0].set(xlabel="examples n (c = 10)", ylabel="seconds", title="time")
        axes[1].set(xlabel="examples n (c = 10)", ylabel="peak memory added [MiB]", title="memory")
        axes[0].legend(fontsize="small")
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"figure written to {args.plot}")


if __name__ == "__main__":
    main()
