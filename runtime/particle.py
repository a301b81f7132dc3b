"""The particle protocol the inference algorithms rely on.

A particle is a program state of a Feynman-Kac model. The algorithms need
only this of it; :class:`ppl.Model` (class programs), ``@ppl.program``
functions and compiled ``.steer`` programs all provide it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Particle"]


@runtime_checkable
class Particle(Protocol):
    """``log_weight``: ``log w`` (float64; ``-inf`` is a dead particle, never
    NaN); ``done``: finished (EOS, ``finish()``, or dead)."""

    log_weight: float
    done: bool

    def clone(self) -> "Particle":
        """An independent copy that shares what is immutable (the model, token
        sequences, constraints): cheap, no tensors copied."""

    async def advance(self, rng: np.random.Generator) -> None:
        """Apply one kernel ``M_t`` and potential ``G_t``: ``log_weight +=
        log G_t``; draws use ``rng``; model requests go through the running
        scheduler. A particle whose weight reaches zero sets ``done`` and
        ``log_weight = -inf`` instead of raising."""
