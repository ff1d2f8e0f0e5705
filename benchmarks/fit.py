"""Benchmark of jacspec.fit.power_law and compare_lognormal_power_law against the ``powerlaw`` package.

Data generated here (seeded): a power law (alpha = 2.5, x_min = 1, inverse transform) and a lognormal
(mu = 0, sigma = 1), with 10³ and 10⁴ values (``--full`` adds 10⁵). For each, both libraries search
x_min over every distinct value (CSN 2009) and compare the lognormal with the power law on the tail:
``powerlaw.Fit(values, parameter_ranges={"alpha": [1, 50]}).distribution_compare("lognormal", "power_law")``
(powerlaw 2.0 bounds alpha to [0, 3] unless told otherwise) against
``jacspec.fit.compare_lognormal_power_law(values, power_law_fit=jacspec.fit.power_law(values,
max_candidates=None))``. jacspec's default search (400 candidates) is timed as well. At 10⁵ values the
powerlaw package's O(n²) search would take 15-30 minutes, so it is run there with x_min fixed to
jacspec's (``powerlaw.Fit(values, xmin=...)``).

Agreement: x_min, alpha, the KS distance (each library's own definition: powerlaw takes
``max |S − P|`` at the data points, jacspec both sides of each step of the empirical CDF, CSN 2009,
eq. 3.9), R and p. Then at one common x_min (powerlaw's) the closed-form alpha must agree to rounding,
and both libraries' truncated-lognormal parameters are scored with one slow likelihood (scipy.stats.norm)
to show which reaches the higher maximum.

Run: python benchmarks/fit.py [--full]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table

from jacspec import fit


def generate(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "power law":
        return (1.0 - rng.random(n)) ** (-1.0 / 1.5)  # alpha = 2.5, x_min = 1
    return np.exp(rng.normal(0.0, 1.0, n))


def timed(fn, *args, repeat: int = 1):
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return result, best


def tail_log_likelihood(values: np.ndarray, xmin: float, mu: float, sigma: float) -> float:
    """Σ log of the lognormal density truncated to x ≥ x_min, from scipy.stats.norm in log x (slow, obvious)."""
    logs = np.log(values[values >= xmin])
    return float((stats.norm.logpdf(logs, mu, sigma) - logs - stats.norm.logsf(math.log(xmin), mu, sigma)).sum())


def jacspec_every_value(values: np.ndarray) -> fit.LikelihoodRatioTest:
    """The comparison after an x_min search over every distinct value, as the powerlaw package does."""
    return fit.compare_lognormal_power_law(values, power_law_fit=fit.power_law(values, max_candidates=None))


def run_powerlaw(values: np.ndarray, xmin: float | None):
    import powerlaw

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # powerlaw 2.0 bounds alpha to [0, 3] by default (DEFAULT_PARAMETER_RANGES): widen it so both
        # libraries fit the same model (CSN 2009 put no upper bound on alpha)
        result = powerlaw.Fit(values, xmin=xmin, parameter_ranges={"alpha": [1.0, 50.0]}, verbose=False)
        ratio, p = result.distribution_compare("lognormal", "power_law")
    return result, float(ratio), float(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="add 10^5 values (powerlaw with a fixed x_min there)")
    args = parser.parse_args()
    sizes = [1_000, 10_000] + ([100_000] if args.full else [])
    try:
        import powerlaw  # noqa: F401
    except ImportError:
        sys.exit("the powerlaw package is not installed: pip install powerlaw")

    speed, agreement, common = [], [], []
    for kind in ("power law", "lognormal"):
        for n in sizes:
            values = generate(kind, n)
            repeat = 3 if n <= 10_000 else 1
            default, t_default = timed(fit.compare_lognormal_power_law, values, repeat=repeat)
            if n <= 10_000:
                ours, t_ours = timed(jacspec_every_value, values, repeat=repeat)
                (theirs, ratio, p), t_theirs = timed(run_powerlaw, values, None)
                search = "every distinct value"
            else:
                ours, t_ours = default, t_default
                (theirs, ratio, p), t_theirs = timed(run_powerlaw, values, ours.power_law.xmin)
                search = "powerlaw: x_min fixed to jacspec's"
            speed.append(
                {
                    "data": kind,
                    "n": n,
                    "x_min search": search,
                    "jacspec default (400), s": t_default,
                    "jacspec, s": t_ours,
                    "powerlaw, s": t_theirs,
                    "powerlaw / jacspec": t_theirs / t_ours,
                }
            )
            pl = ours.power_law
            agreement.append(
                {
                    "data": kind,
                    "n": n,
                    "x_min jacspec": pl.xmin,
                    "x_min powerlaw": float(theirs.power_law.xmin),
                    "alpha jacspec": pl.alpha,
                    "alpha powerlaw": float(theirs.power_law.alpha),
                    "D jacspec": pl.ks_distance,
                    "D powerlaw": float(theirs.power_law.D),
                    "R jacspec": ours.log_likelihood_ratio,
                    "R powerlaw": ratio,
                    "p jacspec": ours.p_value,
                    "p powerlaw": p,
                }
            )
            # one common x_min (powerlaw's): alpha in closed form on the same tail, and both lognormal optima
            # scored by the same slow likelihood
            xmin = float(theirs.power_law.xmin)
            at_common = fit.compare_lognormal_power_law(values, xmin=xmin)
            mu_theirs, sigma_theirs = float(theirs.lognormal.mu), float(theirs.lognormal.sigma)
            ll_ours = tail_log_likelihood(values, xmin, at_common.lognormal_mu, at_common.lognormal_sigma)
            ll_theirs = tail_log_likelihood(values, xmin, mu_theirs, sigma_theirs)
            common.append(
                {
                    "data": kind,
                    "n": n,
                    "n_tail": at_common.n_tail,
                    "rel. Δalpha": abs(at_common.power_law.alpha - float(theirs.power_law.alpha))
                    / at_common.power_law.alpha,
                    "lognormal log-lik. jacspec − powerlaw": ll_ours - ll_theirs,
                    "jacspec sigma at bound": at_common.lognormal_at_bound,
                }
            )
            print(f"done: {kind}, n = {n}", file=sys.stderr)

    print("### Speed (best of 3 runs; 1 at 10^5)\n")
    print(markdown_table(speed, list(speed[0])))
    print("\n### Agreement (each library's own x_min search)\n")
    print(markdown_table(agreement, list(agreement[0])))
    print("\n### At powerlaw's x_min\n")
    print(markdown_table(common, list(common[0])))


if __name__ == "__main__":
    main()
