"""Benchmark: the Hessian diagonal behind WeightInformation(method="laplace"), time and peak memory.

Models: tanh MLPs 64 → 32 → 10 (2410 parameters, 256 examples; every method) and 64 → 256 → 256 → 10
(85 002 parameters, 1000 examples; the fast methods only), float64, summed cross-entropy. Compared on one
machine in one run:

* ours ``exact`` — layer-wise for nn.Linear (Σ_n ∂²ℓ_n/∂z_no² a_ni², ``out`` Hessian-vector products per
  layer), and with one-hot Hessian-vector products only (forward-over-reverse ``torch.func``, vectorised),
  the generic path every other layer type takes;
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


CONFIGS = {
    "small": {"widths": (64, 32, 10), "n": N_EXAMPLES},
    "large": {"widths": (64, 256, 256, 10), "n": 1000},
}


def setup(config: str = "small", seed: int = 0):
    torch.manual_seed(seed)
    widths, n = CONFIGS[config]["widths"], CONFIGS[config]["n"]
    layers: list[nn.Module] = []
    for d_in, d_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(d_in, d_out), nn.Tanh()]
    model = nn.Sequential(*layers[:-1]).double()
    x = torch.rand(n, widths[0], dtype=torch.float64)
    y = torch.randint(0, widths[-1], (n,))
    return model, x, y


def ours(method: str, fast_linear: bool = True):
    def run(model, x, y):
        params = dict(model.named_parameters())
        generator = torch.Generator().manual_seed(0)
        d = hessian_diagonal(
            model,
            x,
            y,
            params,
            method=method,
            n_probes=100,
            chunk_size=64,
            generator=generator,
            fast_linear=fast_linear,
        )
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
    "ours exact (layer-wise)": ours("exact"),
    "ours exact, one-hot HVPs only": ours("exact", fast_linear=False),
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


def _memory_child(name: str, config: str, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    model, x, y = setup(config)
    with open("/proc/self/clear_refs", "w") as clear:  # reset the peak RSS (VmHWM) to the current RSS
        clear.write("5")
    before = _status_kib("VmRSS")
    METHODS[name](model, x, y)
    queue.put((_status_kib("VmHWM") - before) / 1024)


def peak_memory_mib(name: str, config: str, threads: int) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_memory_child, args=(name, config, threads, queue))
    process.start()
    value = queue.get(timeout=300)
    process.join()
    return value


LARGE = ["ours exact (layer-wise)", "BackPACK DiagHessian", "ours ggn", "BackPACK DiagGGNExact"]


def table(config: str, names: list[str], repeats: int, threads: int) -> None:
    model, x, y = setup(config)
    n_params = sum(p.numel() for p in model.parameters())
    names = [n for n in names if have_backpack() or "BackPACK" not in n]
    rows = []
    reference = None
    for name in names:
        fn = METHODS[name]
        result = fn(model, x, y)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            result = fn(model, x, y)
            best = min(best, time.perf_counter() - start)
        if reference is None:
            reference = result
        error = float((result - reference).norm() / reference.norm())
        rows.append((name, best, peak_memory_mib(name, config, threads), error))
        print(f"  {config} {name}: {best:.3f} s", file=sys.stderr, flush=True)
    ours_time = rows[0][1]
    widths = "-".join(str(w) for w in CONFIGS[config]["widths"])
    print(
        f"\nHessian diagonal of the summed cross-entropy, tanh MLP {widths} ({n_params} parameters), "
        f"{x.shape[0]} examples, float64, CPU, {threads} thread(s), torch {torch.__version__}\n"
    )
    print("| method | time [s] | time / ours exact | peak RSS growth [MiB] | rel. error vs ours exact |")
    print("| --- | --- | --- | --- | --- |")
    for name, seconds, memory, error in rows:
        print(f"| {name} | {seconds:.4f} | {seconds / ours_time:.2f} | {memory:.1f} | {error:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description="Hessian-diagonal benchmark for WeightInformation")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table("small", list(METHODS), args.repeats, args.threads)
    table("large", LARGE, args.repeats, args.threads)
    if not have_backpack():
        print("\n(BackPACK not installed: peer rows skipped)")


if __name__ == "__main__":
    main()
