"""``ppl.map``: one steering program over a data set of inputs.

::

    for outcome in ppl.map(lipogram, [{"prompt": p} for p in prompts], lm=lm,
                           method="steer", n_particles=8, expand=3, seed=0):
        print(outcome.index, outcome.status, outcome.result.posterior())

``program`` is anything ``ppl run`` accepts: a ``ppl.Model`` subclass (or any
factory of models), an ``@ppl.program`` function or a compiled ``.steer``
program; each input is a dict of its arguments. A program whose first
parameter is ``lm`` receives ``lm``. Every input is checked against the
program's parameters before anything runs. The runs go on concurrently in
one event loop and share one batching scheduler (see
:mod:`ppl.runtime.many`); input ``i`` runs with the seed
``ppl.runtime.many.run_seed(seed, i)``, so its result does not depend on
the others. A run that raises gives an outcome with ``status == "error"``
and the message; the others go on.
"""

from __future__ import annotations

import inspect
from typing import Any, AsyncIterator, Iterator, Sequence

from .errors import ArgumentError
from .program_files import program_parameters
from .runtime.many import RunOutcome
from .runtime.many.local import map_models, map_models_async

__all__ = ["bind_inputs", "map", "map_async"]


def bind_inputs(program, inputs: Sequence[dict], lm=None):
    """Check every input against ``program``'s parameters (``ArgumentError``
    naming the first bad input) and return ``make_model(input) -> model``."""
    wants_lm, params = program_parameters(program)
    if wants_lm and lm is None:
        raise ArgumentError(f"{getattr(program, '__name__', program)!r} takes a language model first: pass lm=")
    sig = inspect.Signature(list(params.values()))
    for i, inp in enumerate(inputs):
        if not isinstance(inp, dict):
            raise ArgumentError(f"input {i}: an input is a dict of the program's arguments, got {inp!r}")
        try:
            sig.bind(**inp)
        except TypeError as exc:
            names = ", ".join(params) or "(none)"
            raise ArgumentError(f"input {i}: {exc}; the program's parameters are: {names}") from None

    def make_model(inp: dict):
        return program(lm, **inp) if wants_lm else program(**inp)

    return make_model


def map(program, inputs: Sequence[dict], *, lm=None, method: str = "steer", n_particles: int = 16,
        seed: int = 0, max_concurrent: int = 8, ids: Sequence | None = None, skip=frozenset(),
        **options: Any) -> Iterator[RunOutcome]:  # noqa: A001 - ppl.map, like builtins.map, maps
    """Run ``program`` on every input; yield a :class:`~ppl.runtime.many.RunOutcome`
    per input as runs finish. ``options`` go to the method (``expand`` for
    ``steer``; ``ess_threshold``, ``resampling`` for ``smc``); ``ids`` name the
    inputs (default: their indices) and inputs whose id is in ``skip`` are
    not run (resuming). Inside a running event loop use :func:`map_async`."""
    inputs = list(inputs)
    make_model = bind_inputs(program, inputs, lm)
    return map_models(make_model, inputs, method=method, n_particles=n_particles, seed=seed,
                      max_concurrent=max_concurrent, ids=ids, skip=skip, **options)


def map_async(program, inputs: Sequence[dict], *, lm=None, method: str = "steer", n_particles: int = 16,
              seed: int = 0, max_concurrent: int = 8, ids: Sequence | None = None, skip=frozenset(),
              **options: Any) -> AsyncIterator[RunOutcome]:
    """:func:`map` as an async iterator: ``async for outcome in ppl.map_async(...)``."""
    inputs = list(inputs)
    make_model = bind_inputs(program, inputs, lm)
    return map_models_async(make_model, inputs, method=method, n_particles=n_particles, seed=seed,
                            max_concurrent=max_concurrent, ids=ids, skip=skip, **options)
