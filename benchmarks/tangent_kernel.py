"""Benchmark: multiclass empirical tangent kernel (all layer-wise kernels, summed), n = 100, c = 10.

Compares, on an MLP 784-512-512-512-10, a small CNN and pytorch/examples' MNIST CNN (n = 64; float32, CPU):

* ``jacspec``: :func:`jacspec.kernels.layerwise_tangent_kernels` then ``Σ_ℓ K^ℓ``;
* ``torch.func recipe``: the "Jacobian contraction" of the PyTorch NTK tutorial,
  ``vmap(jacrev(f))`` for the full per-example Jacobian, then ``einsum('Naf,Mbf->NaMb')`` per
  parameter, summed;
* ``TangentKernel() defaults``: what a user calls (centred features, eigenvalues, effective rank, CKA with
  labels; its row compares the trace with the centred kernel's), against ``NNGeometry + eigvalsh``;
* ``NNGeometry``: ``nngeometry.GramMatrix`` (``FMatDense`` through ``TorchHooksJacobianBackend``), the
  implementation used in the thesis; a benchmark-only peer (``pip install --no-deps nngeometry``).

Each method runs in its own subprocess (fresh memory accounting): one warm-up call, then the median
of ``--repeats`` timed calls (a method whose warm-up takes over 5 s is timed by that call alone);
peak memory is the growth of the resident set size (``ru_maxrss``) over the process' size before
the first call. Every kernel is checked against ours (max abs difference).

Run: ``PYTHONPATH=src python benchmarks/tangent_kernel.py`` (about 1–2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import issue_mlp, markdown_table  # noqa: E402

N_EXAMPLES = 100
SLOW_CALL_S = 5.0


def build(model_name: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if model_name == "mlp":
        model = issue_mlp()
        x = torch.randn(N_EXAMPLES, 784)
    elif model_name == "mnist_cnn":  # pytorch/examples' MNIST network (1.2 M parameters), n = 64
        from monitor_overhead import MnistCNN

        model = MnistCNN()
        x = torch.randn(64, 1, 28, 28)
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 5 * 5, 10),
        )
        x = torch.randn(N_EXAMPLES, 1, 28, 28)
    return model.eval(), x


def kernel_jacspec(model, x):
    from jacspec.kernels import layerwise_tangent_kernels

    return sum(layerwise_tangent_kernels(model, x).values())


def kernel_torch_func(model, x):
    """The PyTorch tutorial's ``empirical_ntk_jacobian_contraction`` with x1 = x2 (Jacobian computed once)."""
    import torch
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def fnet_single(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(fnet_single), (None, 0))(params, x)
    jac = [j.flatten(2) for j in jac.values()]  # (N, c, P_p)
    result = torch.stack([torch.einsum("Naf,Mbf->NaMb", j, j) for j in jac]).sum(0)
    n, c = result.shape[:2]
    return result.reshape(n * c, n * c)


def kernel_nngeometry(model, x):
    import torch
    from nngeometry import GramMatrix
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=len(x))
    gram = GramMatrix(model, loader, function=lambda inputs, _: model(inputs)).to_torch()  # (c, n, c, n)
    c, n = gram.shape[:2]
    return gram.permute(1, 0, 3, 2).reshape(n * c, n * c)


def _labels(x):
    import torch

    return torch.arange(len(x)) % 10


def probe_defaults(model, x):
    """What a user calls: ``TangentKernel()`` with its defaults (centred features, eigenvalues, CKA)."""
    from jacspec.probes import TangentKernel

    return TangentKernel().measure(model, x, _labels(x))


def nngeometry_eigvalsh(model, x):
    """NNGeometry's ``GramMatrix`` then ``torch.linalg.eigvalsh`` of the (n·c) × (n·c) kernel."""
    import torch

    kernel = kernel_nngeometry(model, x)
    torch.linalg.eigvalsh(kernel)
    return kernel


METHODS = {
    "jacspec": kernel_jacspec,
    "torch.func recipe": kernel_torch_func,
    "NNGeometry": kernel_nngeometry,
    "TangentKernel() defaults": probe_defaults,
    "NNGeometry + eigvalsh": nngeometry_eigvalsh,
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(method: str, model_name: str, repeats: int) -> dict:
    import torch

    model, x = build(model_name)
    fn = METHODS[method]
    base = _rss_bytes()
    try:
        start = time.perf_counter()
        kernel = fn(model, x)  # warm-up
        warm_up = time.perf_counter() - start
    except Exception as err:  # report, do not crash the table
        return {"error": f"{type(err).__name__}: {err}"}
    times = [warm_up] if warm_up > SLOW_CALL_S else []  # a slow method is timed by its first call alone
    for _ in range(repeats if not times else 0):
        start = time.perf_counter()
        kernel = fn(model, x)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    reference = kernel_jacspec(model, x)
    if method == "TangentKernel() defaults":  # centred features: compare its trace with the centred kernel's
        from jacspec.kernels import center_features

        n = x.shape[0]
        reference = torch.trace(center_features(reference, n, reference.shape[0] // n)).reshape(1)
        kernel = torch.tensor([float(kernel["trace"])])
    return {
        "time": statistics.median(times),
        "peak_mb": max(peak, 0) / 2**20,
        "max_abs_diff": float((kernel - reference).abs().max()),
        "kernel_max": float(reference.abs().max()),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn", "mnist_cnn"])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], args.child[1], args.repeats)))
        return
    rows = []
    for model_name in args.models:
        results = {}
        for method in METHODS:
            repeats = args.repeats
            proc = subprocess.run(
                [sys.executable, __file__, "--child", method, model_name, "--repeats", str(repeats)],
                capture_output=True,
                text=True,
                env={**os.environ},
            )
            try:
                results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                results[method] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
            print(f"{model_name:4s} {method:18s} {results[method]}", file=sys.stderr, flush=True)
        ours = results["jacspec"].get("time")
        for method, res in results.items():
            if "error" in res:
                rows.append((model_name, method, "failed", "", "", res["error"]))
                continue
            ratio = res["time"] / ours if ours else float("nan")
            rows.append(
                (
                    model_name,
                    method,
                    f"{res['time'] * 1e3:.1f}",
                    f"{res['peak_mb']:.0f}",
                    f"{ratio:.1f}x" if method != "jacspec" else "1.0x",
                    f"{res['max_abs_diff']:.1e} (of {res['kernel_max']:.1f})",
                )
            )
    import torch

    for model_name in args.models:
        by = {row[1]: row for row in rows if row[0] == model_name}
        try:
            ratio = float(by["NNGeometry + eigvalsh"][2]) / float(by["TangentKernel() defaults"][2])
            print(f"{model_name}: TangentKernel() with its defaults is {ratio:.2f}x NNGeometry GramMatrix + eigvalsh")
        except (KeyError, ValueError):
            pass
    header = ("model", "method", "time [ms]", "peak mem [MB]", "time / jacspec", "max |K - K_jacspec|")
    print(
        f"# tangent kernel, n = {N_EXAMPLES} (mnist_cnn: 64), c = 10, float32, CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(markdown_table(rows, header))


if __name__ == "__main__":
    main()
