"""The bootstrap interval of a configuration's mean metric.

The values of one configuration form a table ``v[i, r]``: input ``i``,
seed (replicate) ``r``, ``nan`` where a run has no value (it raised, or the
metric gave ``nan``). The statistic is the **mean over inputs of the
per-input mean over seeds**,

    m = (1/n) sum_i vbar_i,     vbar_i = mean_r v[i, r]   (over the r with a value),

over the ``n`` inputs that have at least one value. The inputs are the unit
the result should generalise over, so the interval resamples them: ``B``
bootstrap tables draw ``n`` inputs with replacement (each with all its
seeds' values: a cluster bootstrap), and the percentile interval is
``[q_{a/2}, q_{1-a/2}]`` of the ``B`` resampled ``m`` (``a = 1 - level``).
With one seed per input this is the ordinary percentile bootstrap of a
mean. The generator is seeded, so the same values give the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "bootstrap_mean", "input_means"]

#: bootstrap resamples
N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    """The mean ``m`` of ``n`` inputs' values and its bootstrap interval ``[lo, hi]``."""

    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95


def input_means(values) -> np.ndarray:
    """``vbar_i``, the mean over seeds of each input with a value (``values``: inputs x seeds)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    has = ~np.isnan(v)
    counts = has.sum(axis=1)
    sums = np.where(has, v, 0.0).sum(axis=1)
    keep = counts > 0
    return sums[keep] / counts[keep]


def bootstrap_mean(values, *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    """The mean of ``values`` (inputs x seeds, or one value per input) with
    its percentile bootstrap interval over inputs (see the module docstring).
    No values: ``nan`` everywhere; one input: a zero-width interval."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    means = input_means(values)
    n = len(means)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level)
    m = float(np.mean(means))
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    draws = rng.integers(0, n, size=(n_boot, n))
    boot = means[draws].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [a, 1.0 - a])
    return Interval(m, float(lo), float(hi), n, level)
