"""Importance sampling: ``N`` independent runs of the program, never
resampled, ``Z_hat = (1/N) sum_i prod_t G_t(particle i)``. The baseline the
other algorithms are compared with."""

from __future__ import annotations

import numpy as np

from ..resampling import Weights
from ..result import InferenceResult
from .driver import Selection, positive_int, run
from .registry import register_method
from .smc import step_every_live

__all__ = ["ImportanceSampling", "importance_sampling"]


class ImportanceSampling:
    """Every live particle steps; nothing is ever resampled."""

    name = "importance_sampling"
    extend = staticmethod(step_every_live)

    def __init__(self, n_particles: int):
        self.N = positive_int(n_particles, "n_particles")
        self.settings: dict = {}

    def select(self, candidates: list, weights: Weights, rng: np.random.Generator) -> Selection:
        return Selection(candidates, list(range(len(candidates))), np.array(weights.lw))


@register_method("is", "importance sampling: independent runs, never resampled")
async def importance_sampling(model, n_particles: int, *, max_steps: int | None = None, seed=None,
                              observer=None, history: bool = False, scheduler=None) -> InferenceResult:
    """``N`` independent runs of the program, never resampled (see
    :mod:`ppl.runtime.inference.importance`)."""
    return await run(model, ImportanceSampling(n_particles), n_particles, seed=seed,
                     observer=observer, history=history, scheduler=scheduler, max_steps=max_steps)
