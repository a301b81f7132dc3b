"""Ordinary distributions over arbitrary values: normalised measures
(``log_mass() = 0``), immutable, shared by every particle."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ArgumentError
from .base import Distribution, draw_index

__all__ = ["Bernoulli", "Categorical", "Geometric"]


def _as_probs(probs=None, logits=None, *, where: str) -> np.ndarray:
    if (probs is None) == (logits is None):
        raise ArgumentError(f"{where}: give exactly one of probs= or logits=")
    if probs is not None:
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 1 or len(p) == 0:
            raise ArgumentError(f"{where}: probs must be a non-empty 1-D sequence")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ArgumentError(f"{where}: probs must be finite and non-negative, got {p}")
        total = p.sum()
        if abs(total - 1.0) > 1e-6:
            raise ArgumentError(f"{where}: probs must sum to 1, got sum {total:.6g}")
        return p / total
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 1 or len(z) == 0:
        raise ArgumentError(f"{where}: logits must be a non-empty 1-D sequence")
    if np.any(np.isnan(z)) or np.any(z == np.inf):
        raise ArgumentError(f"{where}: logits must not be NaN or +inf")
    top = z.max()
    if top == -np.inf:
        raise ArgumentError(f"{where}: every logit is -inf")
    p = np.exp(z - top)
    return p / p.sum()


class Categorical(Distribution):
    """``P(values[i]) = probs[i]`` over arbitrary values (from ``probs`` or
    ``logits``; ``values`` defaults to ``0 .. n-1``)."""

    def __init__(self, probs=None, *, logits=None, values: Sequence | None = None):
        self.probs = _as_probs(probs, logits, where="Categorical")
        if values is None:
            values = range(len(self.probs))
        self.values = list(values)
        if len(self.values) != len(self.probs):
            raise ArgumentError(
                f"Categorical: {len(self.values)} values for {len(self.probs)} probabilities"
            )
        try:
            self._index = {v: i for i, v in enumerate(self.values)}
        except TypeError:  # unhashable values: fall back to a linear search
            self._index = None

    async def sample(self, rng):
        return self.values[draw_index(self.probs, rng)]

    async def log_prob(self, value):
        if self._index is not None:
            try:
                i = self._index.get(value)
            except TypeError:
                i = None
            total = self.probs[i] if i is not None else 0.0
        else:
            total = sum(p for v, p in zip(self.values, self.probs) if v == value)
        return math.log(total) if total > 0 else -math.inf

    def __repr__(self):
        return f"Categorical(values={self.values!r}, probs={self.probs.round(4).tolist()})"


class Bernoulli(Distribution):
    """``P(True) = p``, ``P(False) = 1 - p``."""

    def __init__(self, p: float):
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ArgumentError(f"Bernoulli: p must be in [0, 1], got {p}")
        self.p = p

    async def sample(self, rng):
        return bool(rng.uniform() < self.p)

    async def log_prob(self, value):
        if value is True or value == 1:
            q = self.p
        elif value is False or value == 0:
            q = 1.0 - self.p
        else:
            return -math.inf
        return math.log(q) if q > 0 else -math.inf

    def __repr__(self):
        return f"Bernoulli({self.p})"


class Geometric(Distribution):
    """Number of failures before the first success: ``P(k) = (1-p)^k p``,
    ``k = 0, 1, 2, ...``."""

    def __init__(self, p: float):
        p = float(p)
        if not 0.0 < p <= 1.0:
            raise ArgumentError(f"Geometric: p must be in (0, 1], got {p}")
        self.p = p

    async def sample(self, rng):
        return int(rng.geometric(self.p)) - 1

    async def log_prob(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            return -math.inf
        if self.p == 1.0:
            return 0.0 if value == 0 else -math.inf
        return value * math.log1p(-self.p) + math.log(self.p)

    def __repr__(self):
        return f"Geometric({self.p})"
