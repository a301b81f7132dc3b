"""SMC steering (the seed's Algorithm 4): expansion factor ``K`` and
without-replacement resampling.

Each iteration every unfinished particle ``i`` is cloned ``K`` times and each
clone takes one step, ``w_{i,k} = w_i G_t N' / (K N)``; a finished particle
is carried once with ``w_i N' / N`` (``N' = sum_i K_i``). Then
:func:`~ppl.runtime.resampling.without_replacement` keeps exactly ``N`` of
the ``N'`` candidates (no duplicates), and the loop repeats until every
particle is finished. With ``K = 1`` nothing is ever discarded and the
algorithm is importance sampling.
"""

from __future__ import annotations

import math

import numpy as np

from ..resampling import Weights, without_replacement
from ..result import InferenceResult
from .driver import Extension, Selection, positive_int, run
from .registry import register_method

__all__ = ["SteerAlgorithm", "smc_steer"]


class SteerAlgorithm:
    """The extend and select steps of SMC steering with ``N`` particles and
    expansion factor ``K``."""

    name = "smc_steer"

    def __init__(self, n_particles: int, expand: int):
        self.N = positive_int(n_particles, "n_particles")
        self.K = positive_int(expand, "expand")
        self.settings = {"expand": self.K}

    def extend(self, particles: list) -> Extension:
        N, K = self.N, self.K
        n_prime = sum(1 if p.done else K for p in particles)
        ext = Extension([], [], [])
        for i, p in enumerate(particles):
            if p.done:
                p.log_weight += math.log(n_prime / N)
                ext.candidates.append(p)
                ext.parents.append(i)
                continue
            children = [p] + [p.clone() for _ in range(K - 1)]
            for c in children:
                c.log_weight += math.log(n_prime / (K * N))
            ext.candidates.extend(children)
            ext.to_step.extend(children)
            ext.parents.extend([i] * K)
        return ext

    def select(self, candidates: list, weights: Weights, rng: np.random.Generator) -> Selection:
        if len(candidates) <= self.N:
            return Selection(candidates, list(range(len(candidates))), np.array(weights.lw))
        idx, new_log_w = without_replacement(weights.lw, self.N, rng)
        particles = [candidates[i] for i in idx]
        for p, lw in zip(particles, new_log_w):
            p.log_weight = float(lw)
        return Selection(particles, idx.tolist(), new_log_w, resampled=True)


@register_method("steer", "SMC steering: each particle expanded K times, without-replacement resampling")
async def smc_steer(model, n_particles: int, expand: int = 3, *, max_steps: int | None = None, seed=None,
                    observer=None, history: bool = False, scheduler=None) -> InferenceResult:
    """SMC steering with ``N = n_particles`` and expansion factor ``K = expand``
    (default 3, as on the command line; see :mod:`ppl.runtime.inference.steer`).
    ``max_steps`` stops the run after that many steps (``None``: no limit;
    the result's ``status`` is then ``"max_steps"``).

    ``observer(info)`` is called after every step (see
    :mod:`ppl.runtime.observers`); ``history=True`` records every step's
    particles in ``result.history`` (for ``result.to_html``).
    """
    algorithm = SteerAlgorithm(n_particles, expand)
    return await run(model, algorithm, n_particles, seed=seed, observer=observer, history=history,
                     scheduler=scheduler, max_steps=max_steps)
