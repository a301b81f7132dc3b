"""Deterministic batching of language-model requests from concurrent particles.

Each SMC iteration runs one coroutine per particle step. A coroutine that needs
``log p(. | prefix)`` calls :meth:`Scheduler.request` and waits. The scheduler
counts the coroutines that are still running; at the moment every one of them
is waiting on the language model (or has finished), it sends all waiting
requests to their model as **one** call of ``batch_next_token_logprobs``,
identical prefixes computed once. There are no timers and no sleeps: which
requests share a batch depends only on the programs, so a fixed seed gives a
fixed result.

Several inferences may share one scheduler (``ppl.map`` runs many inputs
at once): then one flush holds every waiting particle of every run. Each
run's driver *joins* the scheduler for its lifetime (:meth:`Scheduler.joined`);
a driver between two steps (resampling, which is synchronous but not yet
finished) counts as busy, and nothing is flushed while one is busy, so a
batch is never sent without the requests the next step of a run is about to
make. A run's particles see the same waves of answers whether it runs alone
or with others.

If a batch raises, every request waiting on it receives the exception, so no
coroutine is left waiting forever. A request whose coroutine is cancelled
(the run was cancelled, or Ctrl-C) leaves the queue at once: nothing is
computed for it and no future is left pending.

**Threads.** One loaded model may serve inferences running in several
threads (each with its own event loop): every batch call holds the model's
lock (:func:`model_lock`, one re-entrant lock per model), so two threads
never run a forward pass, or change the model's cache, at the same time.
Inside one thread the scheduler is single-threaded asyncio and needs no lock.

The running scheduler is found through a ``contextvars.ContextVar``: tasks
created by :meth:`Scheduler.gather` inherit it, and code outside an inference
sees ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Awaitable, Sequence

_current: contextvars.ContextVar["Scheduler | None"] = contextvars.ContextVar(
    "ppl_scheduler", default=None
)


def current_scheduler() -> "Scheduler | None":
    """The scheduler of the inference this code runs in, or ``None``."""
    return _current.get()


_locks: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_locks_by_id: dict[int, threading.RLock] = {}  # models that cannot be weakly referenced
_locks_guard = threading.Lock()


def model_lock(lm) -> threading.RLock:
    """The lock held around every batch call of ``lm`` (one per model, made
    on first use): inferences in several threads may share a loaded model,
    and their forward passes and cache updates take turns. Re-entrant, so
    that code running inside a batch (a pin released by the garbage
    collector, say) may take it again."""
    with _locks_guard:
        try:
            lock = _locks.get(lm)
            if lock is None:
                lock = _locks[lm] = threading.RLock()
        except TypeError:  # not weakly referenceable, or not hashable
            lock = _locks_by_id.setdefault(id(lm), threading.RLock())
    return lock


@dataclass
class _Request:
    lm: Any
    prefix: tuple[int, ...]
    future: asyncio.Future
    task: asyncio.Task | None


@dataclass
class SchedulerStats:
    """Counters of the batches a scheduler has sent."""

    batches: int = 0
    rows_requested: int = 0
    rows_sent: int = 0
    batch_sizes: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        sizes = self.batch_sizes
        return {
            "batches": self.batches,
            "rows_requested": self.rows_requested,
            "rows_sent": self.rows_sent,
            "mean_rows_per_batch": (sum(sizes) / len(sizes)) if sizes else 0.0,
            "max_rows_per_batch": max(sizes) if sizes else 0,
        }


class Scheduler:
    """Runs particle coroutines together and batches their model requests."""

    def __init__(self) -> None:
        self._pending: list[_Request] = []
        self._running = 0  # particle tasks started and not finished
        self._busy = 0  # joined drivers between two steps
        self._step_of: dict[int, int] = {}  # id(task) -> id of the gather (one run's step) it belongs to
        self._last_event: dict[int | None, int | None] = {}  # step -> the task that requested last, or None
        self.stats = SchedulerStats()
        self.models: dict[int, object] = {}  # every model asked, for its counters
        #: each model's counters when this scheduler first saw it, by model name: the
        #: baseline of the runs that began before then (see the driver's counters)
        self.first_stats: dict[str, dict] = {}

    @contextlib.contextmanager
    def joined(self):
        """For the lifetime of one inference's driver: while the driver is
        between steps (not waiting in :meth:`gather`), nothing is flushed."""
        self._busy += 1
        try:
            yield self
        finally:
            self._busy -= 1
            self._maybe_flush()

    async def gather(self, coros: Sequence[Awaitable]) -> list:
        """Run ``coros`` concurrently; return their results in order, with an
        exception object in place of the result of any that raised. The
        caller waits meanwhile: it is not busy until every one has finished."""
        if not coros:
            return []
        left = [len(coros)]
        token = _current.set(self)
        try:
            self._running += len(coros)
            self._busy -= 1
            tasks = [asyncio.ensure_future(self._run_one(c, left)) for c in coros]
        finally:
            _current.reset(token)
        for task, coro in zip(tasks, coros):
            task.add_done_callback(functools.partial(self._if_never_started, coro, left))
        return await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_one(self, coro: Awaitable, left: list[int]):
        task = id(asyncio.current_task())
        self._step_of[task] = id(left)
        try:
            return await coro
        finally:
            del self._step_of[task]
            self._ended(left)

    def _ended(self, left: list[int]) -> None:
        self._running -= 1
        left[0] -= 1
        self._last_event[id(left)] = None  # a task that ends goes on with nothing
        if left[0] == 0:  # the caller's step is over: it is busy again
            del self._last_event[id(left)]
            self._busy += 1
        self._maybe_flush()

    def _if_never_started(self, coro, left: list[int], task: asyncio.Task) -> None:
        """A task cancelled before it ran (the run was cancelled) never
        reached :meth:`_run_one`'s ``finally``: count it as ended, and close
        its coroutine (which holds a particle, and so its pins)."""
        if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            coro.close()
            self._ended(left)

    def _see(self, lm) -> None:
        if id(lm) not in self.models:
            self.models[id(lm)] = lm
            self.first_stats.setdefault(lm.name, dict(lm.stats()))

    async def request(self, lm, prefix: tuple[int, ...]):
        """Wait for ``log p(. | prefix)`` from ``lm``, answered in a batch."""
        future = asyncio.get_running_loop().create_future()
        task = asyncio.current_task()
        self._pending.append(_Request(lm, prefix, future, task))
        self._last_event[self._step_of.get(id(task))] = id(task)
        self._see(lm)
        self._maybe_flush()
        try:
            return await future
        except asyncio.CancelledError:
            self._withdraw([future])
            raise

    async def request_many(self, lm, prefixes: list[tuple[int, ...]]) -> list:
        """Wait for ``log p(. | prefix)`` for every prefix, all in one batch."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        futures = [loop.create_future() for _ in prefixes]
        self._pending.extend(_Request(lm, p, f, task) for p, f in zip(prefixes, futures))
        self._last_event[self._step_of.get(id(task))] = id(task)
        self._see(lm)
        self._maybe_flush()
        try:
            return [await f for f in futures]
        except asyncio.CancelledError:
            self._withdraw(futures)
            raise

    def _withdraw(self, futures: list[asyncio.Future]) -> None:
        """A cancelled waiter's requests leave the queue (and their futures
        are cancelled): nothing is computed for them."""
        gone = {id(f) for f in futures}
        for f in futures:
            f.cancel()
        self._pending = [r for r in self._pending if id(r.future) not in gone]

    @property
    def waiting(self) -> int:
        """Requests queued and not answered yet."""
        return len(self._pending)

    def _maybe_flush(self) -> None:
        if not self._pending or self._busy > 0:
            return
        waiting_tasks = {id(r.task) for r in self._pending}
        if len(waiting_tasks) >= self._running:
            self.flush()

    def flush(self) -> None:
        """Answer every waiting request now: one batch per language model,
        then every waiter is woken (in :meth:`_wake_order`)."""
        pending, self._pending = [r for r in self._pending if not r.future.done()], []  # cancelled: dropped
        by_lm: dict[int, list[_Request]] = {}
        for r in pending:
            by_lm.setdefault(id(r.lm), []).append(r)
        answers: dict[int, tuple[bool, Any]] = {}  # id(request) -> (ok, row or exception)
        fatal: BaseException | None = None
        for requests in by_lm.values():
            try:
                rows = self._batch(requests)
            except BaseException as exc:  # every waiter must hear of it
                answers.update((id(r), (False, exc)) for r in requests)
                if not isinstance(exc, Exception):
                    fatal = exc
                continue
            answers.update((id(r), (True, row)) for r, row in zip(requests, rows))
        for r in self._wake_order(pending, by_lm):
            ok, value = answers[id(r)]
            if not r.future.done():
                (r.future.set_result if ok else r.future.set_exception)(value)
        self._last_event.pop(None, None)  # requests made outside any gather: answered, forgotten
        if fatal is not None:
            raise fatal

    def _batch(self, requests: list[_Request]) -> list:
        """One ``batch_next_token_logprobs`` call for one model's requests,
        identical prefixes computed once; the row of each request, in order."""
        unique: dict[tuple[int, ...], int] = {}
        for r in requests:
            unique.setdefault(r.prefix, len(unique))
        prefixes = list(unique)
        lm = requests[0].lm
        with model_lock(lm):  # other threads' inferences on the same model wait their turn
            rows = lm.batch_next_token_logprobs(prefixes)
        if len(rows) != len(prefixes):
            raise RuntimeError(
                f"{type(lm).__name__}.batch_next_token_logprobs returned {len(rows)} rows "
                f"for {len(prefixes)} prefixes"
            )
        self.stats.batches += 1
        self.stats.rows_requested += len(requests)
        self.stats.rows_sent += len(prefixes)
        self.stats.batch_sizes.append(len(prefixes))
        return [rows[unique[r.prefix]] for r in requests]

    def _wake_order(self, pending: list[_Request], by_lm: dict[int, list[_Request]]) -> list[_Request]:
        """The order in which waiters are answered, and so woken: what a run
        would see alone. Alone, the flush is triggered by the run's last
        request and that task goes on at once, before the others wake in
        request order (model by model); when it is triggered by a task that
        ends, everyone wakes in that order. With runs sharing the scheduler,
        the task whose request completed each run's step (if any) is woken
        first, then everyone else as before, so the particles of every run wake in the
        same order, and draw from their run's generator in the same order,
        as they would alone."""
        leaders = {t for t in self._last_event.values() if t is not None}
        first = [r for r in pending if id(r.task) in leaders]
        rest = [r for requests in by_lm.values() for r in requests if id(r.task) not in leaders]
        return first + rest
