"""Resampling schemes and the without-replacement resampler of SMC steering."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ppl.runtime.resampling import (
    RESAMPLERS,
    ess,
    get_resampler,
    logsumexp,
    normalise,
    resample,
    without_replacement,
)
from support.stats import z_quantile

W = np.array([0.05, 0.3, 0.0, 0.15, 0.4, 0.1])
R = 4000  # repetitions for the statistical checks


@pytest.mark.parametrize("name", sorted(RESAMPLERS))
def test_scheme_sizes_and_range(name):
    rng = np.random.default_rng(0)
    for n in (1, 2, 6, 17):
        A = resample(W, n, rng, name)
        assert A.shape == (n,) and A.dtype == np.int64
        assert A.min() >= 0 and A.max() < len(W)
        assert not np.any(A == 2), "a zero-weight particle was drawn"


@pytest.mark.parametrize("name", sorted(RESAMPLERS))
def test_scheme_expected_offspring_is_n_W(name):
    rng = np.random.default_rng(1)
    n = 7
    counts = np.array([np.bincount(resample(W, n, rng, name), minlength=len(W)) for _ in range(R)])
    mean, se = counts.mean(0), counts.std(0, ddof=1) / math.sqrt(R)
    z = z_quantile(1e-4, len(W))
    assert np.all(np.abs(mean - n * W) <= z * se + 1e-12), (mean, n * W, se)


def test_low_variance_schemes_keep_floor_of_n_W():
    rng = np.random.default_rng(2)
    n = 9
    for name in ("stratified", "systematic", "residual"):
        for _ in range(200):
            c = np.bincount(resample(W, n, rng, name), minlength=len(W))
            assert np.all(c >= np.floor(n * W) - (name == "stratified")), (name, c)
    # systematic and residual: between floor and ceil of n W
    for name in ("systematic",):
        for _ in range(200):
            c = np.bincount(resample(W, n, rng, name), minlength=len(W))
            assert np.all(c <= np.ceil(n * W))


def test_one_hot_and_single_draw():
    rng = np.random.default_rng(3)
    for name in RESAMPLERS:
        assert list(resample([0, 1.0, 0], 4, rng, name)) == [1, 1, 1, 1]
        assert resample([1.0], 1, rng, name).tolist() == [0]


def test_unknown_scheme_lists_names():
    with pytest.raises(ValueError, match="multinomial, residual, stratified, systematic"):
        get_resampler("bogus")


def test_bad_weights():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="sum to 1"):
        resample([0.5, 0.6], 2, rng)
    with pytest.raises(ValueError, match="n must be"):
        resample([1.0], 0, rng)


def test_weight_helpers():
    lw = np.log([1.0, 3.0])
    assert logsumexp(lw) == pytest.approx(math.log(4))
    assert normalise(lw).tolist() == pytest.approx([0.25, 0.75])
    assert ess(lw) == pytest.approx(1 / (0.25**2 + 0.75**2))
    dead = np.full(3, -np.inf)
    assert logsumexp(dead) == -np.inf and normalise(dead).tolist() == [0, 0, 0] and ess(dead) == 0


# --- SMC steering's resampler ---------------------------------------------------

LOG_W = np.log(np.array([5.0, 0.1, 0.2, 1.0, 0.05, 0.4, 2.0, 0.3, 0.01, 0.6]))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9, 10])
def test_without_replacement_keeps_exactly_n_distinct(n):
    rng = np.random.default_rng(4)
    for _ in range(300):
        idx, lw = without_replacement(LOG_W, n, rng)
        assert len(idx) == n and len(set(idx.tolist())) == n
        assert np.all(np.isfinite(lw))


@pytest.mark.parametrize("n", [1, 3, 5, 8])
def test_without_replacement_is_unbiased(n):
    """E[sum of kept weights] = (n / M) sum w, and E[weight kept of j] = w_j n / M."""
    rng = np.random.default_rng(5)
    M = len(LOG_W)
    w = np.exp(LOG_W)
    kept = np.zeros((R, M))
    for r in range(R):
        idx, lw = without_replacement(LOG_W, n, rng)
        kept[r, idx] = np.exp(lw)
    mean, se = kept.mean(0), kept.std(0, ddof=1) / math.sqrt(R)
    z = z_quantile(1e-4, M + 1)
    assert np.all(np.abs(mean - w * n / M) <= z * se + 1e-12), (mean, w * n / M)
    totals = kept.sum(1)
    assert abs(totals.mean() - w.sum() * n / M) <= z * totals.std(ddof=1) / math.sqrt(R) + 1e-9


def test_without_replacement_inclusion_probabilities():
    """Particle j is kept with probability min(1, c* W_j)."""
    rng = np.random.default_rng(6)
    n, M = 4, len(LOG_W)
    W_ = normalise(LOG_W)
    # c* solves sum_j min(1, c W_j) = n, by bisection here (independently of the code)
    lo, hi = 0.0, 1e6
    for _ in range(200):
        c = (lo + hi) / 2
        lo, hi = (c, hi) if np.minimum(1, c * W_).sum() < n else (lo, c)
    incl = np.minimum(1, c * W_)
    hits = np.zeros(M)
    for _ in range(R):
        idx, _ = without_replacement(LOG_W, n, rng)
        hits[idx] += 1
    p_hat = hits / R
    se = np.sqrt(np.maximum(incl * (1 - incl), 1e-12) / R)
    assert np.all(np.abs(p_hat - incl) <= z_quantile(1e-4, M) * se + 1e-12), (p_hat, incl)


def test_without_replacement_edge_cases():
    rng = np.random.default_rng(7)
    # all equal: each kept with probability n / M and weight (n / (c* M)) sum w = 1
    idx, lw = without_replacement(np.zeros(6), 3, rng)
    assert len(set(idx.tolist())) == 3 and np.allclose(lw, 0.0)
    # M == n: nothing to choose, weights unchanged
    idx, lw = without_replacement(LOG_W, len(LOG_W), rng)
    assert idx.tolist() == list(range(len(LOG_W))) and np.allclose(lw, LOG_W)
    # fewer live than n: live kept, dead fill the rest
    lw_in = np.array([-np.inf, 0.0, -np.inf, 1.0, -np.inf])
    idx, lw = without_replacement(lw_in, 3, rng)
    assert {1, 3} <= set(idx.tolist()) and len(idx) == 3
    assert np.sum(np.isfinite(lw)) == 2
    # all dead
    idx, lw = without_replacement(np.full(4, -np.inf), 2, rng)
    assert len(idx) == 2 and np.all(lw == -np.inf)
    # one dominant particle is kept deterministically
    idx, lw = without_replacement(np.log([1000.0, 1, 1, 1]), 2, rng)
    assert 0 in idx.tolist()
    with pytest.raises(ValueError):
        without_replacement(np.zeros(2), 3, rng)
