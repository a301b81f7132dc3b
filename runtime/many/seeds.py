"""Seeds of runs over many inputs.

Input ``i`` of a map with seed ``s`` runs with the generator of
``numpy.random.SeedSequence(s, spawn_key=(i,))``, which is what
``SeedSequence(s).spawn(n)[i]`` gives for every ``n > i``. So a run's result
depends only on ``(s, i)`` and the input: not on how many inputs there are,
the order they finish in, how many run at once, how many workers share them,
or whether the map was resumed. ``ppl.infer(model, seed=run_seed(s, i))``
reproduces input ``i`` on its own.
"""

from __future__ import annotations

import numpy as np

from ppl.errors import ArgumentError

__all__ = ["run_seed"]


def run_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of input ``index`` in a map with seed ``seed`` (an int >= 0)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ArgumentError(f"a map's seed must be an integer >= 0, got {seed!r}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ArgumentError(f"an input index must be an integer >= 0, got {index!r}")
    return np.random.SeedSequence(int(seed), spawn_key=(int(index),))
