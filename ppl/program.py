"""Steering programs written as decorated async functions.

::

    @ppl.program
    async def lipogram(lm, prompt, n=30):
        ctx = lm.context(prompt)
        for _ in range(n):
            tok = await ppl.sample(ctx.next_token().where(ppl.lacks("e")))
            if tok.is_eos:
                break
        return ctx.text

    result = await ppl.smc_steer(lipogram(lm, "My favourite writer is"), 16, 3)

Calling the decorated function gives a :class:`ProgramModel`, a particle every
inference routine accepts. The function body runs as one coroutine per
particle, driven step by step. Each step holds exactly one ``sample`` or
``observe`` of a language-model token (or one ``ctx.observe_text``) and
everything the program does after it: the coroutine is suspended just before
its next token primitive, until the particle's next step. So a ``factor``
written right after a token is drawn weighs in the same step, before
resampling, as it would in a class's ``step()``. The
function's return value is the particle's ``value``; returning finishes the
particle.

**Step groups.** ``async with ppl.step():`` puts every primitive inside the
block into one step: the boundary comes before the block (if the step
already had a token), never inside it. A class's ``step()`` that samples
from one context and observes the same token on another is, as a function,
one ``ppl.step()`` block around the two primitives.

**Cloning.** A clone of a suspended particle gets a *copy of its
coroutine* (:mod:`ppl.coroutine_copy`): the chain of suspended frames, each
with its code position and copies of its local variables and value stack,
copied as a class's attributes are (``copy.deepcopy`` with one memo: the
function's arguments and the language model are shared, contexts copy only
their handle, lists and dicts are the clone's own). It costs time
proportional to the frames' live state, not to the particle's history, so
a run of ``T`` tokens clones in ``O(T)`` work in all, as the class and
``.steer`` forms do.

Where a coroutine cannot be copied (not CPython 3.11; a local captured by
a living closure such as a ``lambda``; suspended inside an ``except``
block; an async generator or a pending future in a frame), the clone falls
back to *replay*, and the first such clone of a function says why
(:class:`ReplayWarning`): it calls the function afresh and replays the
parent's trace, every primitive returning the value the parent recorded,
without consulting the model, the random generator or the weights, until
the clone reaches the parent's point. Replay needs the program to be
deterministic given its sampled values (no ``random``, no clocks, no
mutation of shared arguments); a replay that calls a different primitive,
on a different distribution, or a ``factor`` (or an ``intervene``) with a
different value than the parent did raises :class:`~ppl.errors.ModelError`.
It costs time proportional to the trace (with expansion ``K > 1`` the
total replay work of a run grows like ``N (K-1) T^2 / 2`` sites), kept
small: the trace is shared with the parent, not copied (a clone copies the
recorded prefix only when it first records a site of its own), and while
replaying the module-level primitives take a fast path
(:meth:`ProgramModel._replay_site`). Copy and replay reach the same state:
with the same seed a run is the same either way (tested).

Record and replay are one override of the primitives' hook,
:meth:`ProgramModel._site` (the ``trace`` and ``replay`` handlers of an
effect-handler language, fused): live, every site is applied and appended to
the trace; replaying, every site is checked against the trace and answered
from it.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import warnings
from typing import Any, Callable, NamedTuple

from .context import LMContext
from .coroutine_copy import NotCopyable, copy_coroutine
from .errors import ArgumentTypeError, ModelError
from .model import Model, Site
from .running import BOUNDARY, ParticleDied, running

__all__ = ["ProgramModel", "ReplayWarning", "program"]

_SCORED = ("factor", "twist", "condition")


class ReplayWarning(RuntimeWarning):
    """A program's particles are cloned by replay, not by copying (the message says why)."""


_WARNED: set = set()  # functions whose replay was already reported


class TraceEntry(NamedTuple):
    """One site as the live run made it: its kind, the signature of its
    distribution (what replay compares) and its recorded value (the sampled
    value, the observed log-probability, or the score)."""

    kind: str
    signature: tuple
    value: Any


def _signature(dist) -> tuple:
    return dist.signature() if dist is not None else ()


class ProgramModel(Model):
    """A particle running a ``@ppl.program`` function (see the module docstring)."""

    def __init__(self, fn: Callable, args: tuple, kwargs: dict):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self.program_name = fn.__name__
        self.value: Any = None
        self._trace: list[TraceEntry] = []
        self._n = 0  # this particle's trace is self._trace[:self._n]
        self._owns_trace = True  # False while the list is shared with a parent
        self._coro = None
        self._replay_to = 0  # trace entries to replay before running live
        self._pos = 0  # next trace entry during replay
        self._replaying = False  # self._pos < self._replay_to
        self._token_in_step = False  # a token primitive already ran this step
        self._group = 0  # depth of `async with ppl.step()` blocks now open

    # -- cloning ---------------------------------------------------------------
    #: Clone suspended particles by copying their coroutine (:mod:`ppl.coroutine_copy`)
    #: where it can; ``False`` always replays (what the tests of replay set).
    copy_frames = True

    def clone(self) -> "ProgramModel":
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._owns_trace = False  # shares self._trace[:self._n]; copied on first record
        new._coro = None
        new._replay_to = self._n if self._started and not self.done else 0
        new._pos = 0
        new._replaying = False
        # the parent is suspended before a token primitive (or a step block),
        # after the one of its last step: the copy or the replay resumes there
        new._token_in_step = True
        new._group = 0
        if new._replay_to and self._coro is not None and self.copy_frames:
            self._copy_coroutine_into(new)
        return new

    def _copy_coroutine_into(self, new: "ProgramModel") -> None:
        """Give ``new`` a copy of this particle's suspended coroutine, its
        locals copied as a class's attributes are (the arguments shared), so
        it needs no replay; if the coroutine cannot be copied, ``new`` keeps
        its replay and the first such clone of the function warns why."""
        memo = {id(value): value for value in (*self._args, *self._kwargs.values())}
        memo[id(self)] = new
        try:
            new._coro = copy_coroutine(self._coro, memo)
        except NotCopyable as exc:
            if self._fn not in _WARNED:
                _WARNED.add(self._fn)
                warnings.warn(
                    f"{self.program_name}: particles are cloned by replaying their trace, in time "
                    f"that grows with the trace, because {exc}",
                    ReplayWarning,
                    stacklevel=2,
                )
            return
        new._replay_to = 0
        new._display_context = copy.deepcopy(self._display_context, memo)

    @property
    def trace(self) -> list[TraceEntry]:
        """The sites this particle has made so far (recorded or replayed)."""
        return self._trace[: self._n]

    def _record(self, entry: TraceEntry) -> None:
        if not self._owns_trace:
            self._trace = self._trace[: self._n]
            self._owns_trace = True
        self._trace.append(entry)
        self._n += 1

    # -- driving the coroutine ----------------------------------------------------
    async def advance(self, rng) -> None:
        if self.done:
            return
        with running(self, rng):
            try:
                if self._coro is None:
                    await self._start()
                self._steps += 1
                self._token_in_step = False
                await self._run_until_boundary()
            except ParticleDied:
                self._close()
                self._die()
            except BaseException:
                self._close()
                raise

    async def _start(self) -> None:
        """Create the coroutine and, in a clone, replay it to its parent's point."""
        # a context passed as an argument: each particle extends its own handle
        args = [copy.copy(a) if isinstance(a, LMContext) else a for a in self._args]
        kwargs = {k: copy.copy(v) if isinstance(v, LMContext) else v for k, v in self._kwargs.items()}
        self._coro = self._fn(*args, **kwargs)
        self._started = True
        if self._replay_to:
            self._n = self._replay_to
            self._replaying = True
            await self._run_until_boundary()
            if self._pos != self._replay_to:
                raise ModelError(
                    f"replay of {self.program_name} ended after {self._pos} of "
                    f"{self._replay_to} recorded primitives; programs must be "
                    "deterministic given their sampled values"
                )

    async def _run_until_boundary(self) -> None:
        """Run the coroutine until it reaches a step boundary or returns,
        waiting on whatever it awaits (model requests, other futures)."""
        coro = self._coro
        while True:
            try:
                yielded = coro.send(None)
            except StopIteration as stop:
                if self._pos < self._replay_to:
                    raise ModelError(
                        f"replay of {self.program_name} returned after {self._pos} of "
                        f"{self._replay_to} recorded primitives; programs must be "
                        "deterministic given their sampled values"
                    ) from None
                self.value = stop.value
                self._coro = None
                self.finish()
                return
            if yielded is BOUNDARY:
                return
            if yielded is None:  # a bare yield, e.g. asyncio.sleep(0)
                continue
            if not asyncio.isfuture(yielded):
                raise ModelError(
                    f"{self.program_name} awaited {yielded!r}, which is not an asyncio future"
                )
            yielded._asyncio_future_blocking = False
            await _until_done(yielded)

    def _close(self) -> None:
        if self._coro is not None:
            self._coro.close()
            self._coro = None

    # -- the step boundary -----------------------------------------------------------
    def _at_token_site(self) -> bool:
        if self._pos < self._replay_to:
            return False  # pass through the boundaries the parent already passed
        if self._group:
            return False  # inside a step block: one step
        if self._token_in_step:
            return True
        self._token_in_step = True
        return False

    def _resumed_at_token_site(self) -> None:
        self._token_in_step = True

    def _open_group(self) -> None:
        self._group += 1

    def _close_group(self) -> None:
        self._group -= 1

    # -- the hook: record when live, replay when cloning -------------------------------
    async def _site(self, site: Site) -> Any:
        if self._replaying:
            return self._replay_site(site.kind, site.dist, site.value)
        result = await super()._site(site)
        recorded = site.value if site.kind in _SCORED else result
        self._record(TraceEntry(site.kind, _signature(site.dist), recorded))
        return result

    def _replay_site(self, kind: str, dist=None, value: Any = None) -> Any:
        """Check a site against the trace and answer it from the recording:
        the parent's sampled value, or its observed log-probability. Weights
        are not touched (the clone copied the parent's). The module-level
        primitives call this directly while ``_replaying`` (no ``Site``, no
        step boundary)."""
        pos = self._pos
        entry = self._trace[pos]
        signature = dist.signature() if dist is not None else ()
        scored = kind in _SCORED
        diverged = entry.kind != kind or entry.signature != signature or (scored and entry.value != value)
        if diverged or (kind == "intervene" and _differs(entry.value, value)):
            raise ModelError(
                f"replay of {self.program_name} diverged at primitive #{pos + 1}: "
                f"the original run called {entry.kind}{entry.signature} "
                f"(value {entry.value!r}), the replay called {kind}{signature}"
                + (f" (value {value!r})" if scored or kind == "intervene" else "")
                + "; programs must be deterministic given their sampled values"
            )
        self._pos = pos = pos + 1
        if pos == self._replay_to:
            self._replaying = False
        if scored:
            return None
        context = getattr(dist, "context", None)
        if isinstance(context, LMContext):
            self._display_context = context  # as a live site records it (Model._site)
        dist._commit(entry.value if kind == "sample" else value)
        return entry.value

    # -- called as a submodel ------------------------------------------------------
    def _as_submodel(self, where: str):
        """A fresh run of this program's body (its function called on its
        arguments), to run inline on the calling particle
        (``ppl.call(fn(args))``, :mod:`ppl.submodel`); this particle's own
        state is neither used nor changed."""
        return self._fn(*self._args, **self._kwargs)

    # -- results -------------------------------------------------------------------
    def result_key(self):
        return self.value

    def __str__(self) -> str:
        return str(self.value) if self.done else f"<{self.program_name} running>"

    def __repr__(self) -> str:
        state = f"value={self.value!r}" if self.done else f"{self._n} primitives"
        return f"<{self.program_name} particle, {state}, log_weight={self.log_weight:.4g}>"


async def _until_done(future) -> None:
    """Wait until ``future`` is done; its outcome (a result or an exception)
    is the program's to read when it resumes, not this driver's. (Cheaper
    than ``asyncio.wait``: the future is awaited directly.)"""
    try:
        await future
    except BaseException:
        if not future.done():
            raise  # this particle's own task was cancelled while waiting


def _differs(a: Any, b: Any) -> bool:
    """Whether two forced values differ (values that cannot be compared to a
    truth value, like arrays, are not checked)."""
    try:
        return not bool(a == b)
    except Exception:  # noqa: BLE001 - an uncomparable value is not a divergence
        return False


def program(fn: Callable) -> Callable[..., ProgramModel]:
    """Turn an ``async def`` steering function into a program: calling the
    result with arguments gives a model that inference routines accept."""
    if not inspect.iscoroutinefunction(fn):
        raise ArgumentTypeError(
            f"@ppl.program needs an `async def` function; {getattr(fn, '__name__', fn)!r} is not one"
        )

    @functools.wraps(fn)
    def make(*args, **kwargs) -> ProgramModel:
        inspect.signature(fn).bind(*args, **kwargs)  # a wrong call fails here, not mid-run
        return ProgramModel(fn, args, kwargs)

    make.__ppl_program__ = True
    return make
