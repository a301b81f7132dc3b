"""The Ray actor of multi-process maps: one worker process, one model.

A :class:`MapWorker` receives a pickled zero-argument ``setup`` and calls it
once: ``setup()`` loads the language model inside the worker and returns
``make_model(input) -> model`` (the model's *spec* travels, never its
weights). It then runs chunks of inputs, each chunk with its own settings
(method, particle count, seed, options: the chunks of one map share them, an
evaluation's maps differ), all in the actor's one event loop on
one :class:`~ppl.runtime.scheduler.Scheduler` (cross-run batching, as
:mod:`.local` does in one process), at most ``max_concurrent`` runs at once
across its chunks (admitted in the order they arrive), and streams each
:class:`~ppl.runtime.many.RunOutcome` back as its run finishes, detached
from its program states (so it pickles small, without the model).

A ``setup`` that raises does not kill the actor: :meth:`MapWorker.ready`
reports the error, and the driver fails the whole map with it.

This module imports Ray only through the driver (:mod:`.ray_engine`), which
wraps the class with ``ray.remote``; it can be imported without Ray.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import sys
from typing import Any

from ppl.errors import WorkerError

from ..inference.registry import get_method
from ..scheduler import Scheduler
from .local import Job, run_one
from .outcome import RunOutcome

__all__ = ["MapWorker"]


def _set_threads(threads: int) -> None:
    """At most ``threads`` torch threads in this process: through the
    environment for a torch imported later, directly if it is loaded (a
    model that needs no torch, such as a ``ToyLM``, never imports it)."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class MapWorker:
    """One worker: ``setup_blob`` (a pickled zero-argument callable returning
    ``make_model``) is unpickled and called once, with torch limited to
    ``threads`` threads; each :meth:`run_chunk` runs its inputs with its own
    ``method`` (``n_particles``, ``options``) and input ``i``'s seed
    ``run_seed(seed, i)``, at most ``max_concurrent`` runs at once over every
    chunk. ``loads`` counts the models built (1, or 0 if ``setup`` raised)."""

    def __init__(self, setup_blob: bytes, threads: int, max_concurrent: int):
        self.threads, self.max_concurrent = threads, max_concurrent
        self.scheduler: Scheduler | None = None
        self.gate: asyncio.Semaphore | None = None
        self.error: str | None = None
        self.make_model: Any = None
        self.loads = 0
        _set_threads(threads)
        try:
            self.make_model = pickle.loads(setup_blob)()
            self.loads += 1
        except Exception as exc:  # reported by ready(): the map fails with it
            self.error = f"{type(exc).__name__}: {exc}"
        _set_threads(threads)  # again, if setup imported torch

    async def ready(self) -> dict:
        """Where this worker runs, the models it built, and the error its setup
        raised (``None`` if the model is loaded)."""
        return {"error": self.error, "pid": os.getpid(), "host": socket.gethostname(), "loads": self.loads}

    async def run_chunk(self, jobs: list[Job], method: str, n_particles: int, seed: int, options: dict):
        """Run ``jobs`` with ``method`` (an async generator, called with
        ``num_returns="streaming"``): yield each job's detached outcome as its
        run finishes. Runs of every chunk in flight share the scheduler and
        the ``max_concurrent`` gate, which admits them in the order they arrived."""
        if self.error is not None:
            raise WorkerError(self.error)
        _set_threads(self.threads)  # the event loop's thread runs the forward passes
        if self.scheduler is None:
            self.scheduler = Scheduler()
            self.gate = asyncio.Semaphore(self.max_concurrent)
        run = get_method(method).run
        tasks = [asyncio.ensure_future(self._gated(job, run, n_particles, seed, options)) for job in jobs]
        try:
            for finished in asyncio.as_completed(tasks):
                yield await finished
        finally:
            for task in tasks:
                task.cancel()

    async def _gated(self, job: Job, run, n_particles: int, seed: int, options: dict) -> RunOutcome:
        async with self.gate:
            try:
                outcome = await run_one(run, self.make_model, job, seed, n_particles, self.scheduler, options)
                return outcome.detached()
            except Exception as exc:  # never leave the chunk without this job's outcome
                return RunOutcome(job.index, job.id, job.input, error=f"{type(exc).__name__}: {exc}")
