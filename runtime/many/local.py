"""Many runs in one process, batched together.

:func:`map_models_async` starts a run for each input (at most
``max_concurrent`` at once, in input order) in one event loop, all on one
:class:`~ppl.runtime.scheduler.Scheduler`: when every particle of every
running run waits on the model, their requests go out as one batch, and
identical prefixes across runs are computed once (a few-shot prompt shared
by every input is stored once in the KV trie). Outcomes are yielded as runs
finish. Input ``i`` runs with :func:`~ppl.runtime.many.seeds.run_seed`
``(seed, i)``, so its result is the one ``ppl.infer(model_i,
seed=run_seed(seed, i))`` gives alone.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from ppl.errors import ArgumentError, NestedEventLoopError, PPLError

from ..inference.driver import positive_int
from ..inference.registry import get_method
from ..scheduler import Scheduler
from .outcome import RunOutcome
from .seeds import run_seed

__all__ = ["Job", "check_options", "check_settings", "map_models", "map_models_async", "plan", "run_one"]

MakeModel = Callable[[dict], Any]


def check_options(method: str, options: dict) -> None:
    """``ArgumentError`` for an option ``method`` does not take (listing those it takes)."""
    chosen = get_method(method)
    unknown = sorted(set(options) - set(chosen.options))
    if unknown:
        valid = ", ".join(chosen.options) or "none"
        raise ArgumentError(
            f"method {method!r} takes no option {', '.join(map(repr, unknown))}; its options: {valid}"
        )


@dataclass(frozen=True)
class Job:
    """One input to run: its position ``index`` in the inputs (which seeds it),
    its ``id`` and its arguments."""

    index: int
    id: Any
    input: dict


class _Finished:
    """A particle that is already done: running a method on it checks the
    method's settings (option values included) without a model or a program."""

    log_weight, done = 0.0, True

    def clone(self) -> "_Finished":
        return self

    async def advance(self, rng) -> None:  # pragma: no cover - a finished particle never steps
        pass


def check_settings(method: str, n_particles: int, options: dict) -> None:
    """``ArgumentError`` for a bad setting of ``method`` (an unknown option,
    ``resampling="bogus"``, ``ess_threshold=2``): found once, before anything
    runs, rather than as an error outcome for every input. The method runs on
    a finished particle, which returns at once without waiting on anything."""
    check_options(method, options)
    chosen = get_method(method)
    try:
        inspect.signature(chosen.run).bind(_Finished(), n_particles, **options)
    except TypeError as exc:
        raise ArgumentError(f"method {method!r}: {exc}") from None
    coro = chosen.run(_Finished(), n_particles, **options)
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError(f"method {method!r} waited on something for a finished particle")


def plan(inputs: Sequence[dict], *, method: str, n_particles: int, seed: int, max_concurrent: int,
         ids: Sequence | None, skip, options: dict) -> list[Job]:
    """Check a map's settings (``ArgumentError`` naming the bad one) and list
    the inputs to run, in order: those whose id (default: the index) is not
    in ``skip``."""
    positive_int(n_particles, "n_particles")
    check_settings(method, n_particles, options)
    positive_int(max_concurrent, "max_concurrent")
    run_seed(seed, 0)  # a bad seed fails here, before anything runs
    ids = list(range(len(inputs))) if ids is None else list(ids)
    if len(ids) != len(inputs):
        raise ArgumentError(f"{len(ids)} ids for {len(inputs)} inputs")
    return [Job(i, ids[i], inputs[i]) for i in range(len(inputs)) if ids[i] not in skip]


async def run_one(run, make_model: MakeModel, job: Job, seed: int, n_particles: int,
                  scheduler: Scheduler, options: dict) -> RunOutcome:
    """Build input ``job``'s model and run it with its seed on ``scheduler``;
    a run that raises becomes an error outcome."""
    index, id_, inp = job.index, job.id, job.input
    t0 = time.perf_counter()
    try:
        model = make_model(inp)
        result = await run(model, n_particles, seed=run_seed(seed, index), scheduler=scheduler, **options)
    except PPLError as exc:
        return RunOutcome(index, id_, inp, error=str(exc), wall_time=time.perf_counter() - t0)
    except Exception as exc:  # a program's own bug: this run's error, not the map's
        return RunOutcome(index, id_, inp, error=f"{type(exc).__name__}: {exc}",
                          wall_time=time.perf_counter() - t0)
    return RunOutcome(index, id_, inp, result=result, wall_time=time.perf_counter() - t0)


async def map_models_async(
    make_model: MakeModel,
    inputs: Sequence[dict],
    *,
    method: str = "steer",
    n_particles: int = 16,
    seed: int = 0,
    max_concurrent: int = 8,
    ids: Sequence | None = None,
    skip: set | frozenset = frozenset(),
    scheduler: Scheduler | None = None,
    **options,
) -> AsyncIterator[RunOutcome]:
    """Run ``make_model(inputs[i])`` for every ``i`` whose id is not in
    ``skip`` (ids default to the indices); yield :class:`RunOutcome` s as the
    runs finish. ``options`` go to the method (``expand`` for ``steer`` ...)."""
    todo = plan(inputs, method=method, n_particles=n_particles, seed=seed, max_concurrent=max_concurrent,
                ids=ids, skip=skip, options=options)
    run = get_method(method).run
    scheduler = scheduler if scheduler is not None else Scheduler()
    running: set[asyncio.Task] = set()
    try:
        while todo or running:
            while todo and len(running) < max_concurrent:
                job = todo.pop(0)
                running.add(asyncio.ensure_future(
                    run_one(run, make_model, job, seed, n_particles, scheduler, options)))
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: t.result().index):
                yield task.result()
    finally:
        for task in running:
            task.cancel()


def map_models(make_model: MakeModel, inputs: Sequence[dict], **kwargs) -> Iterator[RunOutcome]:
    """:func:`map_models_async` from synchronous code: a generator driving its
    own event loop (inside a running loop, use the async form)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise NestedEventLoopError(
            "ppl.map() cannot run inside a running event loop (for example in Jupyter or an "
            "async function); use `async for outcome in ppl.map_async(...)` instead"
        )
    loop = asyncio.new_event_loop()
    agen = map_models_async(make_model, inputs, **kwargs)
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(agen.aclose())
        loop.close()
