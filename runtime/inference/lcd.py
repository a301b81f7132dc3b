"""Locally constrained decoding (``lcd``): the baseline of constrained-decoding
libraries, masks and nothing else.

Definition. ``N`` independent runs of the program, exactly as importance
sampling draws them: every ``sample(dist, proposal=q)`` draws from ``q`` (for
``ctx.next_token().where(c)``: the next-token distribution renormalised over
the tokens ``c`` allows), nothing is ever resampled. Then the weights are
**ignored**: every particle that is alive at the end gets the same weight,
``W_i = 1 / N_alive``, whatever its ``observe``/``factor``/``twist``
potentials and its mask corrections ``p(C_t)`` were. A particle that died
(``condition(False)``, a mask that allows no token, a ``-inf`` factor) stays
dead: locally constrained decoding has no output there either.

So the posterior it reports is the *proposal* distribution
``q(x) = prod_t p(x_t | x_<t) / p(C_t | x_<t)`` restricted to the strings
the hard constraints accept, not the target ``P(x) ∝ p(x) prod_t G_t``: the
greedy, locally normalised choices of masking. That gap is what the
evaluation of ``ppl eval`` measures.

``log_Z``. The draws are importance sampling's, so their importance weights
``w_i = prod_t G_t`` still give the unbiased estimate
``Z_hat = (1/N) sum_i w_i``; the result reports that (it costs nothing and is
meaningful), while ``log_weights``/``weights``/``posterior()`` are the equal
weights above. ``settings["log_Z"]`` says so. ``-inf`` (status
``"all particles died"``) exactly when every particle died.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..result import InferenceResult
from .driver import positive_int, run
from .importance import ImportanceSampling
from .registry import register_method

__all__ = ["LocallyConstrainedDecoding", "equal_weights", "locally_constrained_decoding"]


class LocallyConstrainedDecoding(ImportanceSampling):
    """Importance sampling's steps (every live particle steps, no resampling);
    the weights are equalised after the run (:func:`equal_weights`)."""

    name = "locally_constrained_decoding"


def equal_weights(log_weights) -> np.ndarray:
    """``0`` for every live particle, ``-inf`` for every dead one."""
    lw = np.asarray(log_weights, dtype=np.float64)
    return np.where(np.isneginf(lw), -math.inf, 0.0)


@register_method("lcd", "locally constrained decoding: N independent masked decodes, weights ignored")
async def locally_constrained_decoding(model, n_particles: int, *, seed=None, observer=None,
                                       history: bool = False, scheduler=None,
                                       max_steps: int | None = None) -> InferenceResult:
    """``N`` masked decodes with equal weights (see :mod:`ppl.runtime.inference.lcd`);
    ``log_Z`` is the importance-sampling estimate of the same draws."""
    positive_int(n_particles, "n_particles")
    result = await run(model, LocallyConstrainedDecoding(n_particles), n_particles, seed=seed,
                       observer=observer, history=history, scheduler=scheduler, max_steps=max_steps)
    is_log_Z = result.log_Z
    equal = equal_weights(result.log_weights)
    for p, lw in zip(result.particles, equal):
        p.log_weight = float(lw)
    settings = {**result.settings, "weights": "equal (ignored)", "log_Z": "importance sampling of the same draws"}
    out = replace(result, log_weights=equal, settings=settings)
    out.log_Z = is_log_Z
    return out
