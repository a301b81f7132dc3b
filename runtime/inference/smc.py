"""Sequential Monte Carlo with adaptive resampling (bootstrap / guided SMC).

Each iteration every unfinished particle takes one step (``w_i *= G_t``).
If the effective sample size ``ESS = (sum w)^2 / sum w^2`` falls below
``ess_threshold * N`` (and some particle is unfinished), ``N`` ancestors
``A`` are drawn by the ``resampling`` scheme from ``W = w / sum w`` and every
new particle gets the weight ``(1/N) sum_j w_j``, which keeps ``Z_hat``
unbiased. ``ess_threshold = 0`` never resamples; ``1`` always does.
"""

from __future__ import annotations

import numpy as np

from ppl.errors import ArgumentError

from ..resampling import Weights, get_resampler
from ..result import InferenceResult
from .driver import Extension, Selection, positive_int, run
from .registry import register_method

__all__ = ["AdaptiveSMC", "step_every_live", "smc_standard"]


def step_every_live(particles: list) -> Extension:
    """Every particle is its own candidate; the unfinished ones step."""
    return Extension(list(particles), list(range(len(particles))), [p for p in particles if not p.done])


class AdaptiveSMC:
    """The select step of standard SMC: resample when ``ESS < threshold * N``."""

    name = "smc_standard"
    extend = staticmethod(step_every_live)

    def __init__(self, n_particles: int, ess_threshold: float, resampling: str):
        self.N = positive_int(n_particles, "n_particles")
        self.resampler = get_resampler(resampling)
        if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, (int, float)) \
                or not 0.0 <= ess_threshold <= 1.0:
            raise ArgumentError(f"ess_threshold must be a number in [0, 1], got {ess_threshold!r}")
        self.threshold = ess_threshold
        self.settings = {"ess_threshold": ess_threshold, "resampling": resampling}

    def select(self, candidates: list, weights: Weights, rng: np.random.Generator) -> Selection:
        N = self.N
        if not (0.0 < weights.ESS < self.threshold * N) or all(p.done for p in candidates):
            return Selection(candidates, list(range(N)), np.array(weights.lw))
        kept = [int(a) for a in self.resampler(weights.W, N, rng)]
        seen: set[int] = set()
        particles = []
        for a in kept:  # the first copy of an ancestor is the ancestor itself
            particles.append(candidates[a] if a not in seen else candidates[a].clone())
            seen.add(a)
        for p in particles:
            p.log_weight = weights.log_mean
        return Selection(particles, kept, np.full(N, weights.log_mean), resampled=True)


@register_method("smc", "standard SMC, resampling when ESS < ess-threshold * N")
async def smc_standard(model, n_particles: int, ess_threshold: float = 0.5, resampling: str = "systematic",
                       *, max_steps: int | None = None, seed=None, observer=None, history: bool = False,
                       scheduler=None) -> InferenceResult:
    """Standard SMC with adaptive resampling by ``resampling`` (a registered
    scheme: see :mod:`ppl.runtime.resampling`) when ``ESS < ess_threshold * N``
    (see :mod:`ppl.runtime.inference.smc`)."""
    algorithm = AdaptiveSMC(n_particles, ess_threshold, resampling)
    return await run(model, algorithm, n_particles, seed=seed, observer=observer, history=history,
                     scheduler=scheduler, max_steps=max_steps)
