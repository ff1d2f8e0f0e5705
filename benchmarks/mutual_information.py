"""Validation and timing of the mutual-information estimators (Baratin 2021, chapter 5, section 4).

1. Correlated Gaussians x, z ∈ ℝ^d with componentwise correlation ρ, ground truth −d/2·log(1 − ρ²):
   estimate, truth, relative error and time of ``mine``, ``mine_f`` and ``ksg`` (default options).
2. Invariance (lines 1391–1402): X ~ U(−1, 1)², Y = f(X) + σε for f ∈ {x, x³, sin x}. The thesis
   shows MINE's estimate depending on σ rather than f; strictly I(X; Y) = h(Y) − h(σε) still depends
   on f through the law of f(X), so each estimate is compared with its own truth by quadrature.
3. Peers and naive methods: KSG against a plain O(n²) search (our ``algorithm="brute"``),
   scikit-learn's ``mutual_info_regression`` and ``ennemi.estimate_mi`` (both 1-D targets only, so
   compared at d = 1); MINE with the bias-corrected gradient against the plain minibatch gradient
   (eq. 12, ``bias_correction=False``).

Run ``python benchmarks/mutual_information.py`` (d ∈ {2, 20}, ρ ∈ {0.5, 0.9}, one noise level: under
3 minutes on 2 idle cores; ``--quick`` names this default explicitly) or ``--full`` (ρ ∈ {0.1, 0.3, 0.5,
0.7, 0.9, 0.99}, σ ∈ {0.1, 0.5} and the gradient ablation: about 6 minutes idle, 16 on 2 busy cores).
Tables are printed as markdown.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from jacspec.estimators import gaussian_mutual_information, mutual_information


def correlated_gaussians(d: int, rho: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return x, rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal((n, d))


def timed(fn, *args, **kwargs):
    """(result, seconds, peak traced memory in MiB). tracemalloc sees numpy/scipy buffers, not torch's."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def gaussian_table(dims, rhos, n, methods, seed):
    rows = []
    for d in dims:
        for rho in rhos:
            x, z = correlated_gaussians(d, rho, n, seed)
            truth = gaussian_mutual_information(rho, d)
            for method in methods:
                start = time.perf_counter()
                ds = mutual_information(x, z, method=method, seed=seed)
                seconds = time.perf_counter() - start
                estimate = float(ds["mutual_information"])
                rows.append(
                    [
                        str(d),
                        f"{rho:g}",
                        method,
                        f"{estimate:.3f}",
                        f"{truth:.3f}",
                        f"{(estimate - truth) / truth:+.1%}",
                        f"{seconds:.1f}",
                    ]
                )
                print("  " + " ".join(rows[-1]), file=sys.stderr, flush=True)
    return markdown(["d", "ρ", "method", "estimate [nats]", "truth [nats]", "relative error", "time [s]"], rows)


def uniform_noise_truth(f, sigma: float, dims: int = 2) -> float:
    """I(X; Y) for X ~ U(−1, 1)^dims, Y = f(X) + σε, by quadrature: dims · [h(Y₁) − ½ log(2πeσ²)].

    The coordinates are independent, so the information adds; h(Y₁) = −∫ p log p with
    p(y) = ½ ∫_{−1}^{1} φ_σ(y − f(x)) dx on fine grids (midpoint rule).
    """
    x = np.linspace(-1, 1, 4001)[:-1] + 1 / 4000
    fx = f(x)
    y = np.linspace(fx.min() - 9 * sigma, fx.max() + 9 * sigma, 6001)
    density = np.zeros_like(y)
    for chunk in np.array_split(fx, 20):
        density += np.exp(-0.5 * ((y[:, None] - chunk[None, :]) / sigma) ** 2).sum(axis=1)
    density /= len(fx) * sigma * math.sqrt(2 * math.pi)
    step = y[1] - y[0]
    positive = density > 0
    entropy = -np.sum(density[positive] * np.log(density[positive])) * step
    return dims * (entropy - 0.5 * math.log(2 * math.pi * math.e * sigma**2))


def invariance_table(n, sigmas, methods, seed):
    """Baratin 2021, Fig. 5.2. Note: I(X; f(X) + σε) does depend on f through the law of f(X); the truth
    per f is computed by quadrature, so the check is 'each estimate near its own truth'."""
    functions = {"x": lambda v: v, "x^3": lambda v: v**3, "sin(x)": np.sin}
    rows = []
    for sigma in sigmas:
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1, 1, size=(n, 2))
        noise = rng.standard_normal((n, 2))
        truths = [uniform_noise_truth(f, sigma) for f in functions.values()]
        rows.append([f"{sigma:g}", "truth (quadrature)"] + [f"{t:.3f}" for t in truths])
        for method in methods:
            cells = []
            for f, truth in zip(functions.values(), truths):
                ds = mutual_information(x, f(x) + sigma * noise, method=method, seed=seed)
                estimate = float(ds["mutual_information"])
                cells.append(f"{estimate:.3f} ({(estimate - truth) / truth:+.1%})")
            rows.append([f"{sigma:g}", method] + cells)
            print("  " + " ".join(rows[-1]), file=sys.stderr, flush=True)
    header = ["σ", "method"] + [f"f = {name}" for name in functions]
    return markdown(header, rows)


def peers_table(n, seed):
    from sklearn.feature_selection import mutual_info_regression

    x, z = correlated_gaussians(1, 0.7, n, seed)
    truth = gaussian_mutual_information(0.7, 1)
    contenders = {
        "jacspec ksg (k-d tree)": lambda: mutual_information(x, z, method="ksg", algorithm="kdtree")[
            "mutual_information"
        ].item(),
        "jacspec ksg, naive O(n²) search": lambda: mutual_information(x, z, method="ksg", algorithm="brute")[
            "mutual_information"
        ].item(),
        "scikit-learn mutual_info_regression": lambda: float(
            mutual_info_regression(x, z[:, 0], n_neighbors=3, random_state=seed)[0]
        ),
    }
    try:
        import ennemi

        contenders["ennemi estimate_mi"] = lambda: float(ennemi.estimate_mi(z[:, 0], x[:, 0], k=3, max_threads=1)[0, 0])
    except ImportError:
        print("  (ennemi not installed: pip install --no-deps ennemi to compare)", file=sys.stderr)
    rows = []
    base = None
    for name, fn in contenders.items():
        estimate, seconds, peak = timed(fn)
        base = seconds if base is None else base
        rows.append([name, f"{estimate:.4f}", f"{truth:.4f}", f"{seconds:.2f}", f"{peak:.1f}", f"{seconds / base:.2f}"])
        print("  " + " ".join(rows[-1]), file=sys.stderr, flush=True)
    header = [
        f"KSG implementation (d = 1, ρ = 0.7, n = {n})",
        "estimate",
        "truth",
        "time [s]",
        "peak memory [MiB]",
        "time / ours",
    ]
    return markdown(header, rows)


def bias_correction_table(n, seed, cases):
    rows = []
    for d, rho in cases:
        x, z = correlated_gaussians(d, rho, n, seed)
        truth = gaussian_mutual_information(rho, d)
        for label, corrected in (("bias-corrected (EMA, ours)", True), ("plain minibatch gradient (eq. 12)", False)):
            start = time.perf_counter()
            estimate = float(
                mutual_information(x, z, method="mine", seed=seed, bias_correction=corrected)["mutual_information"]
            )
            seconds = time.perf_counter() - start
            rows.append(
                [
                    str(d),
                    f"{rho:g}",
                    label,
                    f"{estimate:.3f}",
                    f"{truth:.3f}",
                    f"{(estimate - truth) / truth:+.1%}",
                    f"{seconds:.1f}",
                ]
            )
            print("  " + " ".join(rows[-1]), file=sys.stderr, flush=True)
    return markdown(["d", "ρ", "MINE gradient", "estimate", "truth", "relative error", "time [s]"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--full",
        action="store_true",
        help="the whole grid: ρ ∈ {0.1, 0.3, 0.5, 0.7, 0.9, 0.99}, σ ∈ {0.1, 0.5} and the gradient ablation",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the default reduced set: ρ ∈ {0.5, 0.9}, σ = 0.5 (under 3 minutes)"
    )
    parser.add_argument("--n", type=int, default=5000, help="samples per estimate (default 5000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.quick = not args.full
    rhos = (0.5, 0.9) if args.quick else (0.1, 0.3, 0.5, 0.7, 0.9, 0.99)
    methods = ("mine", "mine_f", "ksg")
    total = time.perf_counter()
    print(f"## Correlated Gaussians (n = {args.n}, default options, seed {args.seed})\n", flush=True)
    print(gaussian_table((2, 20), rhos, args.n, methods, args.seed) + "\n", flush=True)
    print(f"## KSG against peers\n\n{peers_table(20000, args.seed)}\n", flush=True)
    sigmas = (0.5,) if args.quick else (0.1, 0.5)
    print(f"## Invariance: X ~ U(−1, 1)², Y = f(X) + σε (n = {args.n})\n", flush=True)
    print(invariance_table(args.n, sigmas, ("mine", "ksg"), args.seed) + "\n", flush=True)
    if not args.quick:
        print("## MINE gradient: bias-corrected against plain\n", flush=True)
        print(bias_correction_table(args.n, args.seed, [(2, 0.9), (20, 0.5)]) + "\n", flush=True)
    print(f"total time {time.perf_counter() - total:.0f} s", flush=True)


if __name__ == "__main__":
    main()
