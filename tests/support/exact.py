"""Exact answers for steering programs on toy language models.

The programs in the statistical tests are small enough that every string they
can produce can be listed. For each, the test states the unnormalised target
``gamma(s) = p_LM(s) * prod potentials(s)`` directly (independently of the
primitives' code), and :func:`exact_target` sums it over every string to get
``Z = sum_s gamma(s)`` and the posterior ``P(s) = gamma(s) / Z``.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np


def sequences(lm, prompt_ids: tuple[int, ...], max_len: int) -> Iterator[tuple[tuple[int, ...], float]]:
    """Every generated token sequence (ending at EOS, or cut at ``max_len``
    tokens) with its log-probability under ``lm``, by depth-first search."""

    def walk(generated: tuple[int, ...], log_p: float):
        if (generated and generated[-1] == lm.eos_token_id) or len(generated) == max_len:
            yield generated, log_p
            return
        probs = np.asarray(lm.next_probs(prompt_ids + generated), dtype=np.float64)
        for t, p in enumerate(probs):
            if p > 0:
                yield from walk(generated + (t,), log_p + math.log(p))

    yield from walk((), 0.0)


def exact_target(
    lm,
    max_len: int,
    log_potential: Callable[[tuple[int, ...]], float],
    key: Callable[[tuple[int, ...]], object] | None = None,
    prompt_ids: tuple[int, ...] = (),
) -> tuple[float, dict]:
    """``Z = sum_s p(s) exp(log_potential(s))`` over every sequence ``s`` and the
    posterior aggregated by ``key(s)`` (default: the decoded text)."""
    key = key or (lambda s: lm.decode(s))
    weights: dict = {}
    for s, log_p in sequences(lm, prompt_ids, max_len):
        lg = log_p + log_potential(s)
        if lg == -math.inf:
            continue
        k = key(s)
        weights[k] = weights.get(k, 0.0) + math.exp(lg)
    Z = sum(weights.values())
    return Z, {k: w / Z for k, w in weights.items()}
