"""Statistical checks with tolerances derived from the number of runs.

Each check fixes a false-failure probability ``alpha`` and turns it into a
normal quantile; the standard errors come from the runs themselves (all runs
are seeded, so a passing test stays passing).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def z_quantile(alpha: float, k: int = 1) -> float:
    """Two-sided normal quantile with a Bonferroni split over ``k`` checks."""
    return NormalDist().inv_cdf(1.0 - alpha / (2 * k))


def check_mean(samples, exact: float, alpha: float = 1e-4, what: str = "Z_hat") -> None:
    """Mean of i.i.d. ``samples`` equals ``exact`` within ``z * sd / sqrt(M)``."""
    x = np.asarray(samples, dtype=np.float64)
    M = len(x)
    mean = float(x.mean())
    se = float(x.std(ddof=1)) / math.sqrt(M)
    tol = z_quantile(alpha) * se + 1e-9 * abs(exact)
    assert abs(mean - exact) <= tol, (
        f"mean {what} over {M} runs = {mean:.6g}, exact {exact:.6g}, "
        f"|diff| {abs(mean - exact):.3g} > tolerance {tol:.3g} (se {se:.3g})"
    )


def pooled_posterior(runs):
    """Pool runs ``[(Z_hat_m, {key: W})]`` into ``R(s) = sum_m Z_m W_m(s) / sum_m Z_m``,
    with delta-method standard errors
    ``se(s) = sqrt(sum_m (Z_m W_m(s) - R(s) Z_m)^2) / sum_m Z_m``."""
    Z = np.array([z for z, _ in runs], dtype=np.float64)
    keys = sorted({k for _, post in runs for k in post}, key=str)
    A = np.array([[z * post.get(k, 0.0) for k in keys] for z, post in runs])
    total = Z.sum()
    R = A.sum(axis=0) / total
    se = np.sqrt(((A - np.outer(Z, R)) ** 2).sum(axis=0)) / total
    return dict(zip(keys, R)), dict(zip(keys, se))


def check_posterior(runs, exact: dict, n_particles: int, alpha: float = 1e-3) -> float:
    """Every outcome's pooled probability is within ``z * se`` of the exact one,
    ``z`` Bonferroni-corrected over the outcomes; so is the total variation,
    ``TV <= (1/2) sum_s z * se(s)``. ``se`` is floored by the binomial error
    ``sqrt(P(1-P)/(M N))`` of ``M N`` independent draws, which covers outcomes
    never seen. Returns the total variation."""
    est, se = pooled_posterior(runs)
    M = len(runs)
    keys = set(est) | set(exact)
    z = z_quantile(alpha, len(keys))
    tv, bound = 0.0, 0.0
    for k in keys:
        p, q = exact.get(k, 0.0), est.get(k, 0.0)
        s = math.sqrt(se.get(k, 0.0) ** 2 + p * (1 - p) / (M * n_particles)) + 1e-12
        assert abs(q - p) <= z * s, (
            f"outcome {k!r}: pooled {q:.4f} vs exact {p:.4f} (|diff| {abs(q - p):.4f} > {z:.2f} x se {s:.4f})"
        )
        tv += 0.5 * abs(q - p)
        bound += 0.5 * z * s
    assert tv <= bound, f"total variation {tv:.4f} > bound {bound:.4f}"
    return tv
