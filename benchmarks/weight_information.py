"""Benchmark: the Hessian diagonal behind WeightInformation(method="laplace"), time and peak memory.

Model: the digits MLP 64 → 32 → 10 (ReLU, 2410 parameters, float64), summed cross-entropy over 256
examples. Compared on one machine in one run:

* ours ``exact`` — one-hot Hessian-vector products, forward-over-reverse ``torch.func``, vectorised;
* naive — the per-parameter double-backward loop (``autograd.grad`` of each gradient entry);
* ``torch.autograd.functional.hessian`` (the full P × P Hessian, then its diagonal), looped and vectorised;
* BackPACK ``DiagHessian`` (exact Hessian diagonal by second-order backpropagation), the best public peer,
  when ``backpack-for-pytorch`` is installed (benchmark-only: ``pip install --no-deps backpack-for-pytorch
  unfoldNd einops``);
* the approximations: ours ``ggn`` vs BackPACK ``DiagGGNExact``, ours ``hutchinson`` (100 probes), with
  their relative error ‖d − d_exact‖ / ‖d_exact‖.

Time: best of ``--repeats`` warm calls. Memory: the peak resident-set growth of a fresh process running
the method once (Linux VmHWM after resetting it through /proc/self/clear_refs, minus VmRSS before), so it
includes first-call overheads (library imports, vmap tracing).
Usage: ``python benchmarks/weight_information.py [--repeats 2] [--threads 1]``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from jacspec.information import cross_entropy_sum, hessian_diagonal  # noqa: E402

N_EXAMPLES = 256


def setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double()
    x = torch.rand(N_EXAMPLES, 64, dtype=torch.float64)
    y = torch.randint(0, 10, (N_EXAMPLES,))
    return model, x, y


def ours(method: str):
    def run(model, x, y):
        params = dict(model.named_parameters())
        generator = torch.Generator().manual_seed(0)
        d = hessian_diagonal(model, x, y, params, method=method, n_probes=100, chunk_size=256, generator=generator)
        return torch.cat([d[name].reshape(-1) for name in params])

    return run


def naive_double_backward(model, x, y):
    params = list(model.parameters())
    loss = cross_entropy_sum(model(x), y)
    grads = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, create_graph=True)])
    diagonal = torch.empty_like(grads)
    for i in range(grads.numel()):
        row = torch.autograd.grad(grads[i], params, retain_graph=True)
        diagonal[i] = torch.cat([r.reshape(-1) for r in row])[i]
    return diagonal.detach()


def _flat_loss(model, x, y):
    params = dict(model.named_parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])

    def f(v):
        sub, i = {}, 0
        for name, p in params.items():
            sub[name] = v[i : i + p.numel()].reshape(p.shape)
            i += p.numel()
        return cross_entropy_sum(torch.func.functional_call(model, sub, (x,)), y)

    return f, flat


def functional_hessian(vectorize: bool):
    def run(model, x, y):
        f, flat = _flat_loss(model, x, y)
        return torch.diagonal(torch.autograd.functional.hessian(f, flat, vectorize=vectorize)).clone()

    return run


def backpack_peer(extension: str):
    def run(model, x, y):
        from backpack import backpack, extend
        from backpack.extensions import DiagGGNExact, DiagHessian

        model = extend(copy.deepcopy(model))  # extend() adds hooks: keep them off the shared model
        lossfunc = extend(nn.CrossEntropyLoss(reduction="sum"))
        loss = lossfunc(model(x), y)
        ext = DiagHessian() if extension == "diag_h" else DiagGGNExact()
        attr = "diag_h" if extension == "diag_h" else "diag_ggn_exact"
        with backpack(ext):
            loss.backward()
        out = torch.cat([getattr(p, attr).reshape(-1) for p in model.parameters()])
        for p in model.parameters():
            p.grad = None
        return out.detach()

    return run


def have_backpack() -> bool:
    try:
        import backpack  # noqa: F401
    except ImportError:
        return False
    return True


METHODS = {
    "ours exact (vmap HVP)": ours("exact"),
    "naive double-backward loop": naive_double_backward,
    "autograd.functional.hessian": functional_hessian(False),
    "autograd.functional.hessian vectorize": functional_hessian(True),
    "BackPACK DiagHessian": backpack_peer("diag_h"),
    "ours ggn": ours("ggn"),
    "BackPACK DiagGGNExact": backpack_peer("diag_ggn"),
    "ours hutchinson (100 probes)": ours("hutchinson"),
}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_child(name: str, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    model, x, y = setup()
    with open("/proc/self/clear_refs", "w") as clear:  # reset the peak RSS (VmHWM) to the current RSS
        clear.write("5")
    before = _status_kib("VmRSS")
    METHODS[name](model, x, y)
    queue.put((_status_kib("VmHWM") - before) / 1024)


def peak_memory_mib(name: str, threads: int) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_memory_child, args=(name, threads, queue))
    process.start()
    value = queue.get(timeout=300)
    process.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description="Hessian-diagonal benchmark for WeightInformation")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, x, y = setup()
    n_params = sum(p.numel() for p in model.parameters())
    names = [n for n in METHODS if have_backpack() or "BackPACK" not in n]
    rows = []
    reference = None
    for name in names:
        fn = METHODS[name]
        result = fn(model, x, y)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = fn(model, x, y)
            best = min(best, time.perf_counter() - start)
        if reference is None:
            reference = result
        error = float((result - reference).norm() / reference.norm())
        rows.append((name, best, peak_memory_mib(name, args.threads), error))
        print(f"  {name}: {best:.3f} s", file=sys.stderr, flush=True)
    ours_time, ours_mem = rows[0][1], rows[0][2]
    print(
        f"\nHessian diagonal of the summed cross-entropy, MLP 64-32-10 ({n_params} parameters), "
        f"{N_EXAMPLES} examples, float64, CPU, {args.threads} thread(s), torch {torch.__version__}\n"
    )
    print("| method | time [s] | time / ours exact | peak RSS growth [MiB] | rel. error vs ours exact |")
    print("| --- | --- | --- | --- | --- |")
    for name, seconds, memory, error in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / ours_time:.2f} | {memory:.1f} | {error:.1e} |")
    if not have_backpack():
        print("\n(BackPACK not installed: peer rows skipped)")
    _ = ours_mem


if __name__ == "__main__":
    main()
