"""Resampling schemes as pure functions, and the without-replacement
resampler of SMC steering.

A resampling scheme maps normalised weights ``W`` (length ``M``, summing to
one), a number of draws ``n`` and a ``numpy.random.Generator`` to ``n``
ancestor indices ``A`` such that the expected number of copies of particle
``j`` is ``n * W[j]``. They differ only in variance:

- ``multinomial``: ``A_k`` i.i.d. from ``Categorical(W)``;
- ``stratified``: one uniform in each stratum ``[(k + U_k) / n]``;
- ``systematic``: one uniform shared by all strata, ``(k + U) / n``;
- ``residual``: ``floor(n W_j)`` copies deterministically, the remaining
  ``n - sum floor(n W_j)`` drawn multinomially from the residual weights.

Schemes register where they are defined (``@resampling_scheme("name")``);
``get_resampler`` and the command line's ``--resampling`` choices read the
registry, and unknown names raise ``ValueError`` listing the registered ones.
Adding a scheme is one decorated function (and its test).

:class:`Weights` is the value every algorithm, the result and the reports
compute from a population's log weights, once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ppl.errors import ArgumentError

Resampler = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

#: name -> scheme, filled by :func:`resampling_scheme`
RESAMPLERS: dict[str, Resampler] = {}


def resampling_scheme(name: str) -> Callable[[Resampler], Resampler]:
    """Register a scheme ``(W, n, rng) -> ancestor indices`` under ``name``."""

    def register(fn: Resampler) -> Resampler:
        if name in RESAMPLERS and RESAMPLERS[name] is not fn:
            raise ArgumentError(f"a resampling scheme named {name!r} is already registered")
        RESAMPLERS[name] = fn
        return fn

    return register


def _inverse_cdf(W: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Indices ``j`` with ``cumsum(W)[j-1] <= point < cumsum(W)[j]`` for sorted points."""
    cdf = np.cumsum(W)
    cdf[-1] = 1.0  # guard against round-off: every point in [0, 1) lands
    return np.searchsorted(cdf, points, side="right").astype(np.int64)


@resampling_scheme("multinomial")
def multinomial(W: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` i.i.d. draws from ``Categorical(W)`` (sorted)."""
    return _inverse_cdf(W, np.sort(rng.uniform(size=n)))


@resampling_scheme("stratified")
def stratified(W: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points ``(k + U_k) / n`` with independent ``U_k ~ U[0, 1)``."""
    return _inverse_cdf(W, (np.arange(n) + rng.uniform(size=n)) / n)


@resampling_scheme("systematic")
def systematic(W: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points ``(k + U) / n`` with a single ``U ~ U[0, 1)``."""
    return _inverse_cdf(W, (np.arange(n) + rng.uniform()) / n)


@resampling_scheme("residual")
def residual(W: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``floor(n W)`` copies kept, the rest drawn multinomially from the residuals."""
    counts = np.floor(n * W).astype(np.int64)
    deterministic = np.repeat(np.arange(len(W)), counts)
    rest = n - int(counts.sum())
    if rest == 0:
        return deterministic
    residuals = n * W - counts
    residuals /= residuals.sum()
    return np.sort(np.concatenate([deterministic, multinomial(residuals, rest, rng)]))


def get_resampler(name: str) -> Resampler:
    """The scheme registered under ``name``; ``ValueError`` listing the names otherwise."""
    try:
        return RESAMPLERS[name]
    except (KeyError, TypeError):
        raise ArgumentError(
            f"unknown resampling scheme {name!r}; valid names are: "
            + ", ".join(sorted(RESAMPLERS))
        ) from None


def resample(W, n: int, rng: np.random.Generator, scheme: str = "systematic") -> np.ndarray:
    """Ancestor indices of ``n`` draws by ``scheme`` from normalised weights ``W``."""
    resampler = get_resampler(scheme)
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 1 or len(W) == 0:
        raise ArgumentError(f"weights must be a non-empty 1-D array, got shape {W.shape}")
    if n < 1:
        raise ArgumentError(f"n must be >= 1, got {n}")
    if not np.all(np.isfinite(W)) or np.any(W < 0) or abs(W.sum() - 1.0) > 1e-8:
        raise ArgumentError("weights must be finite, non-negative and sum to 1")
    return resampler(W, n, rng)


def logsumexp(log_w: np.ndarray) -> float:
    """``log sum exp(log_w)``, ``-inf`` when every entry is ``-inf``."""
    log_w = np.asarray(log_w, dtype=np.float64)
    if len(log_w) == 0:
        return -np.inf
    top = np.max(log_w)
    if top == -np.inf:
        return -np.inf
    return float(top + np.log(np.sum(np.exp(log_w - top))))


def normalise(log_w: np.ndarray) -> np.ndarray:
    """``W = exp(log_w) / sum exp(log_w)``; all zeros when every weight is zero."""
    log_w = np.asarray(log_w, dtype=np.float64)
    total = logsumexp(log_w)
    if total == -np.inf:
        return np.zeros_like(log_w)
    return np.exp(log_w - total)


def ess(log_w: np.ndarray) -> float:
    """Effective sample size ``(sum w)^2 / sum w^2`` (0 when every weight is zero)."""
    return Weights(log_w).ESS


@dataclass(frozen=True)
class Weights:
    """A population's weights, computed once from its log weights ``lw``:

    - ``W = w / sum_j w_j`` (all zeros when every weight is zero);
    - ``ESS = 1 / sum_j W_j^2 = (sum w)^2 / sum w^2`` (0 when all are zero);
    - ``log_mean = log((1/M) sum_j w_j)``, the log of the unbiased estimate
      of ``Z`` when ``lw`` are the final weights (``-inf`` if all are zero).
    """

    lw: np.ndarray
    W: np.ndarray = field(init=False, repr=False)
    ESS: float = field(init=False)
    log_mean: float = field(init=False)

    def __post_init__(self) -> None:
        lw = np.asarray(self.lw, dtype=np.float64)
        lw.setflags(write=False)
        W = normalise(lw)
        W.setflags(write=False)
        sq = float(np.sum(W * W))
        object.__setattr__(self, "lw", lw)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "ESS", 1.0 / sq if sq > 0 else 0.0)
        object.__setattr__(self, "log_mean", logsumexp(lw) - math.log(len(lw)) if len(lw) else -math.inf)

    def __len__(self) -> int:
        return len(self.lw)


def without_replacement(
    log_w: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2-4 of SMC steering (the seed's Algorithm 4): keep exactly ``n``
    of the ``M`` weighted particles, none twice, with an unbiased total weight.

    With ``W = w / sum w``, ``c*`` solves ``sum_j min(1, c W_j) = n``.
    Particles with ``c* W_j >= 1`` (``I_det``) are kept with weight
    ``w_j n / M``. From the others (``I_stoch``), ``n - |I_det|`` are drawn
    systematically with step ``alpha = sum_{I_stoch} W / (n - |I_det|) = 1/c*``:
    since every stochastic ``W_j < alpha``, no particle can be hit twice and
    particle ``j`` is kept with probability ``c* W_j``. Each gets the weight
    ``(n / (c* M)) sum w``, so ``E[sum of kept weights] = (n / M) sum w``.
    (Independent uniforms per stratum could hit a particle twice; one shared
    uniform cannot.)

    When at most ``n`` particles have non-zero weight there is nothing to
    choose: all of them are kept deterministically, and dead ones fill the
    remaining places so that exactly ``n`` are returned.

    Returns ``(indices, new_log_weights)``, indices ascending.
    """
    log_w = np.asarray(log_w, dtype=np.float64)
    M = len(log_w)
    if n < 1:
        raise ArgumentError(f"n must be >= 1, got {n}")
    if M < n:
        raise ArgumentError(f"cannot keep {n} of {M} particles")
    scale = np.log(n / M)
    live = np.flatnonzero(log_w > -np.inf)
    if len(live) <= n:
        dead = np.flatnonzero(log_w == -np.inf)[: n - len(live)]
        idx = np.sort(np.concatenate([live, dead]))
        return idx, log_w[idx] + scale

    total = logsumexp(log_w)
    W = np.exp(log_w - total)
    det, stoch, c_star = _split_deterministic(W, n)
    n_draw = n - len(det)
    alpha = 1.0 / c_star
    chosen = stoch[_systematic_distinct(W[stoch], n_draw, alpha, rng)]
    idx = np.concatenate([det, chosen])
    new_lw = np.concatenate(
        [log_w[det] + scale, np.full(n_draw, np.log(n * alpha / M) + total)]
    )
    keep = np.argsort(idx)
    return idx[keep], new_lw[keep]


def _split_deterministic(W: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(I_det, I_stoch, c*)`` for normalised weights ``W`` with more than
    ``n`` non-zero: ``c*`` solves ``sum_j min(1, c W_j) = n``; ``I_det`` are
    the ``j`` with ``c* W_j >= 1`` (heaviest first), ``I_stoch`` the rest
    (ascending)."""
    order = np.argsort(-W, kind="stable")
    W_sorted = W[order]
    tail = np.cumsum(W_sorted[::-1])[::-1]  # tail[d] = sum_{j >= d} W_sorted[j]
    d = np.arange(n)
    c = (n - d) / tail[:n]
    below = np.flatnonzero(c * W_sorted[:n] < 1.0)
    # Exact arithmetic always finds one (more than n weights are non-zero);
    # round-off can hide it only when the tail mass is negligible.
    n_det = int(below[0]) if len(below) else n - 1
    return order[:n_det], np.sort(order[n_det:]), float(c[n_det])


def _systematic_distinct(W: np.ndarray, k: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct indices into ``W`` (every ``W_j < alpha``), by one shared
    uniform and step ``alpha``: index ``j`` is hit with probability ``W_j / alpha``."""
    points = rng.uniform(0.0, alpha) + alpha * np.arange(k)
    cdf = np.cumsum(W)
    picks = np.minimum(np.searchsorted(cdf, points, side="right"), len(W) - 1)
    picks = np.unique(picks)
    if len(picks) < k:
        # Only floating-point round-off at a boundary can cause a repeat; fill
        # with the heaviest indices not yet picked.
        spare = np.setdiff1d(np.arange(len(W)), picks)
        spare = spare[np.argsort(-W[spare], kind="stable")]
        picks = np.sort(np.concatenate([picks, spare[: k - len(picks)]]))
    return picks
