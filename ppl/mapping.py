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

``engine="ray"`` spreads the inputs over Ray worker processes (or machines):
each builds its model once from ``lm``, which is then a zero-argument
function returning the model (a loaded model cannot be sent), and results
equal the local engine's (see :mod:`ppl.runtime.many.ray_engine`).
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any, AsyncIterator, Iterator, Sequence

from .errors import ArgumentError
from .program_files import USER_MODULE_PREFIX, program_parameters
from .runtime.lm import LanguageModel
from .runtime.many import RunOutcome
from .runtime.many.local import map_models, map_models_async

__all__ = ["ENGINES", "WorkerSetup", "bind_inputs", "check_inputs", "map", "map_async", "ray_pool"]

#: where the runs go: one event loop in this process, or Ray workers
ENGINES = ("local", "ray")


_WORKER_DEFAULTS = {"num_workers": None, "address": None, "threads_per_worker": 1}


def check_inputs(program, inputs: Sequence[dict]) -> bool:
    """Check every input against ``program``'s parameters (``ArgumentError``
    naming the first bad input); return whether the program takes ``lm`` first."""
    wants_lm, params = program_parameters(program)
    sig = inspect.Signature(list(params.values()))
    for i, inp in enumerate(inputs):
        if not isinstance(inp, dict):
            raise ArgumentError(f"input {i}: an input is a dict of the program's arguments, got {inp!r}")
        try:
            sig.bind(**inp)
        except TypeError as exc:
            names = ", ".join(params) or "(none)"
            raise ArgumentError(f"input {i}: {exc}; the program's parameters are: {names}") from None
    return wants_lm


def _build(program, lm, wants_lm: bool, inp: dict):
    return program(lm, **inp) if wants_lm else program(**inp)


def bind_inputs(program, inputs: Sequence[dict], lm=None):
    """Check every input against ``program``'s parameters (``ArgumentError``
    naming the first bad input) and return ``make_model(input) -> model``."""
    wants_lm = check_inputs(program, inputs)
    if wants_lm and lm is None:
        raise ArgumentError(f"{_name(program)!r} takes a language model first: pass lm=")
    return functools.partial(_build, program, lm, wants_lm)


def _name(program) -> str:
    return str(getattr(program, "__name__", program))


class WorkerSetup:
    """What a worker process builds its models from: calling it (once per
    worker) loads the model with ``make_lm()`` and returns ``make_model(input)``.
    It pickles as the program and the factory, never a loaded model."""

    def __init__(self, program, make_lm, wants_lm: bool):
        self.program, self.make_lm, self.wants_lm = program, make_lm, wants_lm

    def __call__(self):
        lm = self.make_lm() if self.wants_lm else None
        return functools.partial(_build, self.program, lm, self.wants_lm)


def _worker_setup(program, inputs: Sequence[dict], lm) -> WorkerSetup:
    wants_lm = check_inputs(program, inputs)
    if wants_lm and (lm is None or isinstance(lm, LanguageModel) or not callable(lm)):
        got = "nothing" if lm is None else f"{type(lm).__name__} {lm!r}"
        raise ArgumentError(
            f"engine='ray' needs lm= a zero-argument function returning the language model (each worker "
            f"loads its own; a loaded model cannot be sent), got {got}: for example "
            "lm=functools.partial(ppl.load_lm, 'path/to/model')"
        )
    return WorkerSetup(program, lm, wants_lm)


def _user_modules() -> list[str]:
    return [name for name in list(sys.modules) if name.startswith(USER_MODULE_PREFIX)]


def ray_pool(program, inputs: Sequence[dict], lm, *, max_concurrent: int = 8, **workers):
    """Ray workers for many maps of ``program`` over ``inputs`` (an
    evaluation's configurations), each building its model from ``lm`` once:
    a :class:`~ppl.runtime.many.ray_engine.RayPool`, checked, not started.
    ``workers`` are ``ppl.map``'s ``num_workers``, ``address``, ``threads_per_worker``."""
    from .runtime.many.ray_engine import RayPool

    return RayPool(_worker_setup(program, inputs, lm), by_value=_user_modules(), max_concurrent=max_concurrent,
                   **workers)


def _dispatch(program, inputs, lm, engine: str, workers: dict, kwargs: dict, asynchronous: bool):
    inputs = list(inputs)
    if engine == "ray":
        from .runtime.many.ray_engine import map_models_ray

        return map_models_ray(_worker_setup(program, inputs, lm), inputs, by_value=_user_modules(),
                              **workers, **kwargs)
    if engine != "local":
        raise ArgumentError(f"unknown engine {engine!r}; the engines: {', '.join(ENGINES)}")
    given = [k for k, v in workers.items() if v != _WORKER_DEFAULTS[k]]
    if given:
        raise ArgumentError(f"{', '.join(given)} configure Ray workers: pass engine='ray' too")
    make_model = bind_inputs(program, inputs, lm)
    return (map_models_async if asynchronous else map_models)(make_model, inputs, **kwargs)


def map(program, inputs: Sequence[dict], *, lm=None, method: str = "steer", n_particles: int = 16,
        seed: int = 0, max_concurrent: int = 8, ids: Sequence | None = None, skip=frozenset(),
        engine: str = "local", num_workers: int | None = None, address: str | None = None,
        threads_per_worker: int = 1, **options: Any) -> Iterator[RunOutcome]:  # noqa: A001 - maps
    """Run ``program`` on every input; yield a :class:`~ppl.runtime.many.RunOutcome`
    per input as runs finish. ``options`` go to the method (``expand`` for
    ``steer``; ``ess_threshold``, ``resampling`` for ``smc``); ``ids`` name the
    inputs (default: their indices) and inputs whose id is in ``skip`` are
    not run (resuming). Inside a running event loop use :func:`map_async`.

    ``engine="ray"`` runs the inputs on ``num_workers`` Ray actors (default:
    the cluster's CPUs / ``threads_per_worker``), each with
    ``threads_per_worker`` torch threads, on a local cluster started for the
    map or on the one at ``address`` (or the Ray already initialised);
    ``lm`` is then a zero-argument function returning the model."""
    workers = {"num_workers": num_workers, "address": address, "threads_per_worker": threads_per_worker}
    kwargs = dict(method=method, n_particles=n_particles, seed=seed, max_concurrent=max_concurrent,
                  ids=ids, skip=skip, **options)
    return _dispatch(program, inputs, lm, engine, workers, kwargs, asynchronous=False)


def map_async(program, inputs: Sequence[dict], *, lm=None, method: str = "steer", n_particles: int = 16,
              seed: int = 0, max_concurrent: int = 8, ids: Sequence | None = None, skip=frozenset(),
              engine: str = "local", num_workers: int | None = None, address: str | None = None,
              threads_per_worker: int = 1, **options: Any) -> AsyncIterator[RunOutcome]:
    """:func:`map` as an async iterator: ``async for outcome in ppl.map_async(...)``
    (with ``engine="ray"``, each step waits for Ray in a thread)."""
    workers = {"num_workers": num_workers, "address": address, "threads_per_worker": threads_per_worker}
    kwargs = dict(method=method, n_particles=n_particles, seed=seed, max_concurrent=max_concurrent,
                  ids=ids, skip=skip, **options)
    return _dispatch(program, inputs, lm, engine, workers, kwargs, asynchronous=True)
