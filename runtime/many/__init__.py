"""Runs over many inputs: one program, a data set of argument dicts.

- :mod:`.seeds`: input ``i``'s generator derives from ``(seed, i)`` alone;
- :mod:`.outcome`: what one input's run gave (:class:`RunOutcome`), and its
  JSON record;
- :mod:`.local`: every run in one event loop, sharing one scheduler, so one
  forward pass serves the waiting particles of every run (cross-run
  batching); at most ``max_concurrent`` runs at once.

The language-level entry point is ``ppl.map`` (:mod:`ppl.mapping`), which
binds a program to each input; this package sees only model factories.
"""

from .local import map_models, map_models_async
from .outcome import ERROR, RunOutcome
from .seeds import run_seed

__all__ = ["ERROR", "RunOutcome", "map_models", "map_models_async", "run_seed"]
