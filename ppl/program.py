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
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable

from .distributions import NextToken
from .errors import ModelError
from .model import Model, ParticleDied, _particle

_BOUNDARY = object()  # what a suspended step yields to the driver


class _StepBoundary:
    """Awaiting this suspends the program until the particle's next step."""

    def __await__(self):
        yield _BOUNDARY


def _signature(dist) -> tuple:
    """What replay compares to detect divergence (cheap, no model calls)."""
    if isinstance(dist, NextToken):
        constraint = getattr(dist, "constraint", None)
        return ("next_token", len(dist.context.prefix_ids), repr(constraint) if constraint else None)
    return (type(dist).__name__,)


class ProgramModel(Model):
    """A particle running a ``@ppl.program`` function (see the module docstring)."""

    def __init__(self, fn: Callable, args: tuple, kwargs: dict):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self.program_name = fn.__name__
        self.value: Any = None
        self._trace: list[tuple] = []  # (primitive, signature, value), in call order
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
        token = _particle.set((self, rng))
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
            self.dead = True
            self.done = True
            self.log_weight = float("-inf")
        except BaseException:
            self._close()
            raise
        finally:
            _particle.reset(token)

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
            if yielded is _BOUNDARY:
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

    # -- primitives: record when live, replay when cloning -------------------------
    @property
    def _replaying(self) -> bool:
        return self._pos < self._replay_to

    def _replay(self, primitive: str, signature: tuple, value: Any = None) -> Any:
        recorded = self._trace[self._pos]
        if recorded[0] != primitive or recorded[1] != signature or (
            primitive in ("factor", "twist", "condition") and recorded[2] != value
        ):
            raise ModelError(
                f"replay of {self.program_name} diverged at primitive #{self._pos + 1}: "
                f"the original run called {recorded[0]}{recorded[1]} "
                f"(value {recorded[2]!r}), the replay called {primitive}{signature}"
                + (f" (value {value!r})" if primitive in ("factor", "twist", "condition") else "")
                + "; programs must be deterministic given their sampled values"
            )
        self._pos += 1
        return recorded[2]

    def _claim_token_primitive(self) -> bool:
        """At the start of a token primitive: ``True`` if this step already
        had one, so the program must first wait for its next step."""
        if self._replaying:
            return False  # pass through the boundaries the parent already passed
        if self._token_in_step:
            return True
        self._token_in_step = True
        return False

    async def sample(self, dist, proposal=None):
        sig = _signature(dist)
        if self._replaying:
            value = self._replay("sample", sig)
            dist._commit(value)
        else:
            value = await super().sample(dist, proposal)
            self._trace.append(("sample", sig, value))
        return value

    async def observe(self, dist, value):
        sig = _signature(dist)
        if self._replaying:
            log_p = self._replay("observe", sig)
            dist._commit(value)
        else:
            log_p = await super().observe(dist, value)
            self._trace.append(("observe", sig, log_p))
        return log_p

    async def _observe_text(self, ctx, text):
        sig = ("observe_text", len(ctx.prefix_ids), text)
        if self._replaying:
            log_p = self._replay("observe_text", sig)
            for t in ctx.lm.encode(text):
                ctx._append(int(t))
        else:
            log_p = await super()._observe_text(ctx, text)
            self._trace.append(("observe_text", sig, log_p))
        return log_p

    def _scored(self, primitive: str, value, apply) -> None:
        """``condition`` / ``factor`` / ``twist``: recorded with their value
        when live, compared with the recording (and not applied) in replay."""
        if self._replaying:
            self._replay(primitive, (), value)
            return
        self._trace.append((primitive, (), value))
        apply(value)

    def condition(self, ok) -> None:
        self._scored("condition", bool(ok), super().condition)

    def factor(self, log_w: float) -> None:
        self._scored("factor", float(log_w), super().factor)

    def twist(self, log_w: float) -> None:
        self._scored("twist", float(log_w), super().twist)

    # -- results -------------------------------------------------------------------
    def result_key(self):
        return self.value

    def __str__(self) -> str:
        return str(self.value) if self.done else f"<{self.program_name} running>"

    def __repr__(self) -> str:
        state = f"value={self.value!r}" if self.done else f"{len(self._trace)} primitives"
        return f"<{self.program_name} particle, {state}, log_weight={self.log_weight:.4g}>"


async def step_boundary() -> None:
    """Called before every token primitive. When the running particle is a
    program whose step already had one, suspend it until its next step.

    While suspended, the program's coroutine holds no reference to its
    particle (only the task's context does, and only while it runs), so a
    particle dropped by resampling is freed, coroutine and all, at once.
    """
    state = _particle.get()
    if state is None or not isinstance(state[0], ProgramModel):
        return
    if not state[0]._claim_token_primitive():
        return
    del state
    await _StepBoundary()
    _particle.get()[0]._token_in_step = True


def program(fn: Callable) -> Callable[..., ProgramModel]:
    """Turn an ``async def`` steering function into a program: calling the
    result with arguments gives a model that inference routines accept."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"@ppl.program needs an `async def` function; {getattr(fn, '__name__', fn)!r} is not one"
        )

    @functools.wraps(fn)
    def make(*args, **kwargs) -> ProgramModel:
        inspect.signature(fn).bind(*args, **kwargs)  # a wrong call fails here, not mid-run
        return ProgramModel(fn, args, kwargs)

    make.__ppl_program__ = True
    return make
