"""Many runs over many processes (or machines): the Ray engine.

:class:`RayPool` is a pool of ``num_workers`` actors
(:class:`~.ray_worker.MapWorker`), each of which builds its model once from
the zero-argument ``setup`` it is sent (pickled with cloudpickle; the modules
named in ``by_value`` travel by value, for programs defined in files a
worker could not import). Its :meth:`RayPool.map` runs one map's inputs on
those workers, with that map's settings (method, particle count, seed,
options) sent with every chunk: an evaluation runs each of its
configurations as one map on one pool, so each worker loads the model once
for the whole evaluation. :class:`RayMap` (what ``ppl.map(...,
engine="ray")`` returns) is one map on a pool of its own, started at its
first ``next()`` and stopped after it.

A map hands the workers its inputs in chunks: each worker holds at most
:data:`CHUNKS_PER_WORKER` chunks of at most ``max_concurrent`` inputs, so it
always has its next runs queued behind those running, and a fast worker
takes more chunks than a slow one. Each chunk is a streaming call: outcomes
come back one by one as runs finish, and the map yields them at once (the
caller writes them: the driver is the only writer of an output file).

Results equal the local engine's: input ``i`` runs with
:func:`~.seeds.run_seed` ``(seed, i)`` wherever it runs.

Faults:

- a worker that dies (killed, out of memory, its machine gone) has every
  input it had not sent back put at the front of the queue and run again on
  the others and on a fresh worker started in its place; the map keeps
  the first outcome of each input, so none is lost and none is yielded
  twice. An input that may have been running (a worker admits its inputs in
  order, ``max_concurrent`` at a time) each time its worker died, more than
  ``max_retries`` times (default 2), becomes an error outcome: a poison
  input does not loop forever, and inputs queued behind it are not counted;
- a worker whose ``setup`` raises (the model cannot be loaded, the program
  cannot be unpickled) fails the whole map (or evaluation) at once with
  :class:`~ppl.errors.WorkerError` carrying its message; one that dies
  while loading is replaced, and fails the map after ``max_retries`` deaths
  in a row;
- a map left before its end (its caller stopped, or raised) kills the
  workers that still hold its chunks; the pool starts fresh ones in their
  place at its next map.

Ray is optional (``pip install 'ppl-steer[ray]'``) and imported only here,
when a map starts. Without an ``address`` (or ``RAY_ADDRESS``) and with Ray
not yet initialised, a local cluster of ``num_workers * threads_per_worker``
CPUs is started with the pool and shut down with it; a Ray already
initialised is used as it is, and the cluster at ``address`` is joined for
the pool's lifetime.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import Counter, deque
from typing import Any, Callable, Iterator, Self, Sequence

from ppl.errors import ArgumentError, WorkerError

from ..inference.driver import positive_int
from .local import Job, plan
from .outcome import RunOutcome
from .ray_worker import MapWorker

__all__ = ["CHUNKS_PER_WORKER", "RayMap", "RayPool", "map_models_ray", "start_ray"]

#: chunks a worker holds at once: one running, one queued behind it
CHUNKS_PER_WORKER = 2
_END = object()


def import_ray():
    """The ``ray`` module, or an ``ArgumentError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ArgumentError(
            "engine='ray' needs Ray, which is not installed: pip install 'ppl-steer[ray]'"
        ) from None
    return ray


def _pickle_setup(ray, setup: Callable[[], Any], by_value: Sequence[str]) -> bytes:
    """``setup`` pickled for the workers, with the modules ``by_value``
    pickled by value (a worker cannot import a file loaded under a synthetic
    name); an ``ArgumentError`` if it cannot be pickled."""
    cloudpickle = ray.cloudpickle
    modules = [sys.modules[name] for name in by_value if name in sys.modules]
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(setup)
    except Exception as exc:
        raise ArgumentError(
            f"the program and its model factory cannot be sent to Ray workers: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)


def start_ray(ray, address: str | None, num_workers: int | None, threads: int) -> bool:
    """Initialise Ray unless it is already: join the cluster at ``address``
    (or ``RAY_ADDRESS``, Ray's own convention), else start a local one of
    ``num_workers * threads`` CPUs (default: every CPU). True if this call
    initialised Ray (the caller shuts it down)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        n = num_workers or max(1, (os.cpu_count() or 1) // threads)
        ray.init(num_cpus=n * threads, include_dashboard=False, logging_level=logging.WARNING)
    return True


class _Slot:
    """One worker: its actor (``None`` once killed, until the pool starts a
    fresh one), its ``ready`` call until its model is loaded, and its chunks
    in flight (streaming call -> its jobs not yet back, in the order the
    worker admits them)."""

    def __init__(self, number: int, actor, ready):
        self.number, self.actor, self.ready = number, actor, ready
        self.where = f"worker {number}"
        self.chunks: dict[Any, dict[int, Job]] = {}
        self.load_deaths = 0  # deaths in a row before the model was loaded


class RayPool:
    """Ray workers, each with the model ``setup()`` builds, for one map or
    many (see the module docstring). Every setting is checked when it is
    made; :meth:`start` joins or starts Ray and starts the workers, and
    :meth:`close` kills them (and shuts down the Ray it started); also a
    context manager. ``stats`` counts ``workers_started``,
    ``workers_replaced`` and ``runs_retried`` over the pool's maps."""

    def __init__(self, setup: Callable[[], Any], *, num_workers: int | None = None, address: str | None = None,
                 threads_per_worker: int = 1, max_concurrent: int = 8, max_retries: int = 2,
                 by_value: Sequence[str] = ()):
        self._ray = import_ray()
        self.threads = positive_int(threads_per_worker, "threads_per_worker")
        self.num_workers = None if num_workers is None else positive_int(num_workers, "num_workers")
        self.max_concurrent = positive_int(max_concurrent, "max_concurrent")
        if address is not None and not isinstance(address, str):
            raise ArgumentError(f"address must be a Ray cluster address (a string), got {address!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ArgumentError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.address, self.max_retries = address, max_retries
        self._blob = _pickle_setup(self._ray, setup, by_value)
        self.slots: list[_Slot] = []
        self.stats = {"workers_started": 0, "workers_replaced": 0, "runs_retried": 0}
        self._started_ray = False
        self._open = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def workers(self) -> list:
        """The workers' actors, in order (a dead one's replacement takes its place)."""
        return [slot.actor for slot in self.slots]

    def in_flight(self) -> list[list[int]]:
        """For each worker, the indices of the inputs it holds (sent, not back)."""
        return [[i for chunk in slot.chunks.values() for i in chunk] for slot in self.slots]

    # -- the cluster and its workers ---------------------------------------------------
    def start(self) -> None:
        """Join or start Ray, fix the number of workers and start them (once)."""
        if self._open:
            return
        ray = self._ray
        self._started_ray = start_ray(ray, self.address, self.num_workers, self.threads)
        self._open = True
        cpus = ray.cluster_resources().get("CPU", 0)
        if self.num_workers is None:
            self.num_workers = max(1, int(cpus // self.threads))
        if self.num_workers * self.threads > cpus:
            self.close()
            raise ArgumentError(
                f"{self.num_workers} workers of {self.threads} threads need {self.num_workers * self.threads} "
                f"CPUs; the Ray cluster has {cpus:g}: ask for fewer workers or threads"
            )
        self._actor_class = ray.remote(MapWorker)
        self._blob_ref = ray.put(self._blob)
        self.slots = [self._start(k) for k in range(self.num_workers)]

    def close(self) -> None:
        """Kill the workers, and shut down Ray if :meth:`start` started it."""
        if not self._open:
            return
        self._open = False
        for slot in self.slots:
            if slot.actor is not None:
                self._ray.kill(slot.actor)
                slot.actor = None
        if self._started_ray:
            self._started_ray = False
            self._ray.shutdown()

    def _start(self, number: int) -> _Slot:
        actor = self._actor_class.options(num_cpus=self.threads).remote(
            self._blob_ref, self.threads, self.max_concurrent)
        self.stats["workers_started"] += 1
        return _Slot(number, actor, actor.ready.remote())

    def _renew(self, slot: _Slot) -> None:
        """A fresh worker in ``slot``'s place (its old actor killed or dead)."""
        if slot.actor is not None:
            self._ray.kill(slot.actor)
        fresh = self._start(slot.number)
        slot.actor, slot.ready, slot.chunks = fresh.actor, fresh.ready, fresh.chunks
        self.stats["workers_replaced"] += 1

    def _on_ready(self, slot: _Slot, pending: deque, tries: Counter) -> None:
        """A worker answered ``ready``: loaded, or the map fails with its
        setup's error. One that died while loading is replaced, up to
        ``max_retries`` times in a row."""
        ray = self._ray
        try:
            info = ray.get(slot.ready)
        except ray.exceptions.RayActorError as exc:
            slot.load_deaths += 1
            if slot.load_deaths > self.max_retries:
                raise WorkerError(f"{slot.where} died {slot.load_deaths} times before its model was loaded; "
                                  f"last: {exc}") from None
            self._replace(slot, exc, pending, tries)
            return
        slot.ready, slot.load_deaths = None, 0
        slot.where = f"worker {slot.number} (pid {info['pid']} on {info['host']})"
        if info["error"] is not None:
            raise WorkerError(f"{slot.where} could not load the model and program: {info['error']}")

    def _replace(self, slot: _Slot, exc: Exception, pending: deque, tries: Counter) -> list[RunOutcome]:
        """``slot``'s worker died: requeue what it had not sent back (at the
        front, in input order) and start a fresh worker in its place. The
        worker admits its jobs in order, ``max_concurrent`` at a time, so only
        the first ``max_concurrent`` not back may have been running: those
        count a try, and one with more than ``max_retries`` is given up
        (returned as an error outcome)."""
        lost = [job for chunk in slot.chunks.values() for job in chunk.values()]
        slot.chunks.clear()
        given_up = []
        for job in lost[:self.max_concurrent]:
            tries[job.index] += 1
            self.stats["runs_retried"] += 1
            if tries[job.index] > self.max_retries:
                given_up.append(RunOutcome(job.index, job.id, job.input,
                                           error=f"its worker died {tries[job.index]} times while running it; "
                                                 f"last: {exc}"))
        gave_up = {o.index for o in given_up}
        for job in sorted(lost, key=lambda j: j.index, reverse=True):
            if job.index not in gave_up:
                pending.appendleft(job)
        self._renew(slot)
        return given_up

    # -- one map -----------------------------------------------------------------------
    def map(self, jobs: Sequence[Job], *, method: str, n_particles: int, seed: int,
            options: dict) -> Iterator[RunOutcome]:
        """Run ``jobs`` (checked by :func:`~.local.plan`) on the workers with
        these settings; yield each outcome once, as runs finish. Left before
        its end, the workers holding its chunks are killed (and renewed at
        the next map)."""
        self.start()
        for slot in self.slots:
            if slot.actor is None:
                self._renew(slot)
        settings = (method, n_particles, seed, options)
        try:
            yield from self._drive(deque(jobs), settings)
        finally:
            for slot in self.slots:
                if slot.chunks and slot.actor is not None:
                    self._ray.kill(slot.actor)
                    slot.actor, slot.ready, slot.chunks = None, None, {}

    def _fill(self, pending: deque, settings: tuple) -> None:
        """Give every loaded worker chunks until it holds CHUNKS_PER_WORKER."""
        left_per_worker = -(-len(pending) // max(1, len(self.slots)))
        size = max(1, min(self.max_concurrent, left_per_worker))
        for slot in self.slots:
            while slot.ready is None and pending and len(slot.chunks) < CHUNKS_PER_WORKER:
                chunk = [pending.popleft() for _ in range(min(size, len(pending)))]
                call = slot.actor.run_chunk.options(num_returns="streaming").remote(chunk, *settings)
                slot.chunks[call] = {job.index: job for job in chunk}

    def _drive(self, pending: deque, settings: tuple) -> Iterator[RunOutcome]:
        ray = self._ray
        tries, done = Counter(), set()
        while pending or any(slot.chunks for slot in self.slots):
            self._fill(pending, settings)
            owner = {slot.ready: (slot, True) for slot in self.slots if slot.ready is not None}
            owner.update({call: (slot, False) for slot in self.slots for call in slot.chunks})
            [ready], _ = ray.wait(list(owner), num_returns=1)
            slot, is_ready_call = owner[ready]
            if is_ready_call:
                self._on_ready(slot, pending, tries)
                continue
            for outcome in self._receive(slot, ready, pending, tries):
                if outcome.index not in done:
                    done.add(outcome.index)
                    yield outcome

    def _receive(self, slot: _Slot, call, pending: deque, tries: Counter) -> list[RunOutcome]:
        """The next outcome of ``slot``'s streaming ``call`` (none when the
        chunk is over; the error outcomes of inputs given up when the worker died)."""
        ray = self._ray
        try:
            item = ray.get(next(call))
        except StopIteration:
            for job in sorted(slot.chunks.pop(call).values(), key=lambda j: j.index, reverse=True):
                pending.appendleft(job)  # (a chunk ends with every job back; nothing is dropped)
            return []
        except ray.exceptions.RayActorError as exc:
            return self._replace(slot, exc, pending, tries)
        except ray.exceptions.RayError as exc:
            raise WorkerError(f"{slot.where} failed: {exc}") from None
        slot.chunks[call].pop(item.index, None)
        return [item]


class RayMap:
    """An iterator of :class:`~ppl.runtime.many.RunOutcome` s, in the order
    runs finish, computed by Ray workers: one map on a :class:`RayPool` of
    its own (started at the first ``next()``, closed at the end), or on
    ``pool``, which it leaves open. Every setting is checked when it is
    made. ``workers``, ``in_flight()`` and ``stats`` are the pool's. Also an
    async iterator (each step waits in a thread)."""

    def __init__(self, setup: Callable[[], Any] | None, inputs: Sequence[dict], *, method: str = "steer",
                 n_particles: int = 16, seed: int = 0, max_concurrent: int = 8, ids: Sequence | None = None,
                 skip=frozenset(), num_workers: int | None = None, address: str | None = None,
                 threads_per_worker: int = 1, max_retries: int = 2, by_value: Sequence[str] = (),
                 pool: RayPool | None = None, **options):
        self.jobs = plan(inputs, method=method, n_particles=n_particles, seed=seed,
                         max_concurrent=max_concurrent, ids=ids, skip=skip, options=options)
        self._own = pool is None
        if pool is None:
            pool = RayPool(setup, num_workers=num_workers, address=address, threads_per_worker=threads_per_worker,
                           max_concurrent=max_concurrent, max_retries=max_retries, by_value=by_value)
        self.pool = pool
        self._settings = {"method": method, "n_particles": n_particles, "seed": seed, "options": options}
        self._stream = self._run()

    # -- iteration ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[RunOutcome]:
        return self

    def __next__(self) -> RunOutcome:
        return next(self._stream)

    def __aiter__(self):
        return self

    async def __anext__(self) -> RunOutcome:
        outcome = await asyncio.to_thread(next, self._stream, _END)
        if outcome is _END:
            raise StopAsyncIteration
        return outcome

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop: kill the workers holding this map's runs (all of them, and
        the local cluster the map started, when the pool is its own)."""
        self._stream.close()

    @property
    def workers(self) -> list:
        return self.pool.workers

    @property
    def stats(self) -> dict:
        return self.pool.stats

    def in_flight(self) -> list[list[int]]:
        return self.pool.in_flight()

    def _run(self) -> Iterator[RunOutcome]:
        try:
            yield from self.pool.map(self.jobs, **self._settings)
        finally:
            if self._own:
                self.pool.close()


def map_models_ray(setup: Callable[[], Any], inputs: Sequence[dict], **kwargs) -> RayMap:
    """Run every input on Ray workers; see :class:`RayMap` for the settings.
    ``setup`` is a picklable zero-argument callable each worker calls once,
    returning ``make_model(input) -> model``."""
    return RayMap(setup, inputs, **kwargs)
