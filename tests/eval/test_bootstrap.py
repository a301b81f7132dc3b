"""The bootstrap interval against cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.stats import z_quantile

from ppl.evaluation.bootstrap import bootstrap_mean, input_means


def test_the_mean_is_over_inputs_of_the_mean_over_seeds():
    table = [[1.0, 3.0], [5.0, math.nan], [math.nan, math.nan]]
    assert list(input_means(table)) == [2.0, 5.0]
    ci = bootstrap_mean(table)
    assert ci.mean == 3.5 and ci.n == 2
    assert 2.0 <= ci.lo <= ci.mean <= ci.hi <= 5.0


def test_degenerate_cases():
    assert bootstrap_mean([4.0, 4.0, 4.0]) == bootstrap_mean([4.0, 4.0, 4.0])
    ci = bootstrap_mean([4.0, 4.0, 4.0])
    assert (ci.mean, ci.lo, ci.hi) == (4.0, 4.0, 4.0)
    one = bootstrap_mean([[1.0, 2.0]])
    assert (one.mean, one.lo, one.hi, one.n) == (1.5, 1.5, 1.5, 1)
    none = bootstrap_mean([[math.nan]])
    assert none.n == 0 and math.isnan(none.mean) and math.isnan(none.lo)
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean([1.0], level=1.0)


def test_seeded_interval_is_reproducible():
    x = np.random.default_rng(3).normal(size=20)
    assert bootstrap_mean(x, seed=1) == bootstrap_mean(x, seed=1)
    assert bootstrap_mean(x, seed=1) != bootstrap_mean(x, seed=2)


def test_half_width_matches_the_normal_theory_for_many_inputs():
    """For n = 2000 values the percentile interval of the mean is
    mean +- 1.96 s / sqrt(n) up to the bootstrap's own noise (B = 4000:
    the quantiles' relative error is a few per cent)."""
    x = np.random.default_rng(7).exponential(size=2000)
    ci = bootstrap_mean(x, n_boot=4000)
    half = 1.959964 * x.std(ddof=1) / math.sqrt(len(x))
    assert ci.mean == pytest.approx(x.mean())
    assert (ci.hi - ci.lo) / 2 == pytest.approx(half, rel=0.08)


def test_coverage_of_a_known_mean():
    """Over M simulated data sets of n = 40 normal values with known mean,
    the 95% interval covers it in about 95% of them (the percentile
    bootstrap runs slightly under at small n: about 0.94 here). Tolerance:
    the binomial standard error of the coverage over M data sets."""
    rng = np.random.default_rng(11)
    M, n, mu = 400, 40, 2.5
    intervals = [bootstrap_mean(rng.normal(mu, 1.0, size=n), n_boot=1000, seed=m) for m in range(M)]
    covered = sum(ci.lo <= mu <= ci.hi for ci in intervals)
    expected = 0.94
    tol = z_quantile(1e-3) * math.sqrt(expected * (1 - expected) / M)
    assert abs(covered / M - expected) <= tol, covered / M


def test_clusters_resample_inputs_not_runs():
    """Two seeds per input that always agree carry no more information than
    one: the interval over inputs is the same as with one seed each."""
    x = np.random.default_rng(5).normal(size=30)
    twice = np.stack([x, x], axis=1)
    assert bootstrap_mean(twice) == bootstrap_mean(x)
