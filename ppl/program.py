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

**Cloning by replay.** A suspended coroutine cannot be copied, so a clone
calls the function afresh and *replays* the parent's trace: every primitive
returns the value the parent recorded, without consulting the model, the
random generator or the weights, until the clone reaches the parent's point.
Programs must therefore be deterministic given their sampled values (no
``random``, no clocks, no mutation of shared arguments). A replay that calls
a different primitive, on a different distribution, or a ``factor`` with a
different value than the parent did raises :class:`~ppl.errors.ModelError`.
Replay costs time proportional to the trace, paid only by new clones;
surviving particles keep running.

Record and replay are one override of the primitives' hook,
:meth:`ProgramModel._site` (the ``trace`` and ``replay`` handlers of an
effect-handler language, fused): live, every site is applied and appended to
the trace; replaying, every site is checked against the trace and answered
from it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable, NamedTuple

from .errors import ArgumentTypeError, ModelError
from .model import Model, Site
from .running import BOUNDARY, ParticleDied, running

__all__ = ["ProgramModel", "program"]

_SCORED = ("factor", "twist", "condition")


class TraceEntry(NamedTuple):
    """One site as the live run made it: its kind, the signature of its
    distribution (what replay compares) and its recorded value (the sampled
    value, the observed log-probability, or the score)."""

    kind: str
    signature: tuple
    value: Any


def _signature(site: Site) -> tuple:
    return site.dist.signature() if site.dist is not None else ()


class ProgramModel(Model):
    """A particle running a ``@ppl.program`` function (see the module docstring)."""

    def __init__(self, fn: Callable, args: tuple, kwargs: dict):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self.program_name = fn.__name__
        self.value: Any = None
        self._trace: list[TraceEntry] = []
        self._coro = None
        self._replay_to = 0  # trace entries to replay before running live
        self._pos = 0  # next trace entry during replay
        self._token_in_step = False  # a token primitive already ran this step

    # -- cloning ---------------------------------------------------------------
    def clone(self) -> "ProgramModel":
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._trace = list(self._trace)
        new._coro = None
        new._replay_to = len(self._trace) if self._started and not self.done else 0
        new._pos = 0
        # the parent is suspended before a token primitive, after the one of
        # its last step: the replay stops at the same place
        new._token_in_step = True
        return new

    # -- driving the coroutine ----------------------------------------------------
    async def advance(self, rng) -> None:
        if self.done:
            return
        with running(self, rng):
            try:
                if self._coro is None:
                    self._coro = self._fn(*self._args, **self._kwargs)
                    self._started = True
                    if self._replay_to:
                        await self._run_until_boundary()
                        if self._pos != self._replay_to:
                            raise ModelError(
                                f"replay of {self.program_name} ended after {self._pos} of "
                                f"{self._replay_to} recorded primitives; programs must be "
                                "deterministic given their sampled values"
                            )
                self._steps += 1
                self._token_in_step = False
                await self._run_until_boundary()
            except ParticleDied:
                self._close()
                self._die()
            except BaseException:
                self._close()
                raise

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
            await asyncio.wait([yielded])

    def _close(self) -> None:
        if self._coro is not None:
            self._coro.close()
            self._coro = None

    # -- the step boundary -----------------------------------------------------------
    def _at_token_site(self) -> bool:
        if self._pos < self._replay_to:
            return False  # pass through the boundaries the parent already passed
        if self._token_in_step:
            return True
        self._token_in_step = True
        return False

    def _resumed_at_token_site(self) -> None:
        self._token_in_step = True

    # -- the hook: record when live, replay when cloning -------------------------------
    async def _site(self, site: Site) -> Any:
        if self._pos < self._replay_to:
            return self._replay(site)
        result = await super()._site(site)
        recorded = site.value if site.kind in _SCORED else result
        self._trace.append(TraceEntry(site.kind, _signature(site), recorded))
        return result

    def _replay(self, site: Site) -> Any:
        """Check ``site`` against the trace and answer it from the recording:
        the parent's sampled value, or its observed log-probability. Weights
        are not touched (the clone copied the parent's)."""
        entry = self._trace[self._pos]
        signature = _signature(site)
        scored = site.kind in _SCORED
        if entry.kind != site.kind or entry.signature != signature or (scored and entry.value != site.value):
            raise ModelError(
                f"replay of {self.program_name} diverged at primitive #{self._pos + 1}: "
                f"the original run called {entry.kind}{entry.signature} "
                f"(value {entry.value!r}), the replay called {site.kind}{signature}"
                + (f" (value {site.value!r})" if scored else "")
                + "; programs must be deterministic given their sampled values"
            )
        self._pos += 1
        if site.kind == "sample":
            site.dist._commit(entry.value)
        elif site.kind == "observe":
            site.dist._commit(site.value)
        return None if scored else entry.value

    # -- results -------------------------------------------------------------------
    def result_key(self):
        return self.value

    def __str__(self) -> str:
        return str(self.value) if self.done else f"<{self.program_name} running>"

    def __repr__(self) -> str:
        state = f"value={self.value!r}" if self.done else f"{len(self._trace)} primitives"
        return f"<{self.program_name} particle, {state}, log_weight={self.log_weight:.4g}>"


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
