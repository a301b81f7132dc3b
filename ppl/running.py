"""The running particle: which program state a primitive acts on.

Each particle's step runs in its own asyncio task, and the task's
``contextvars.Context`` holds a :class:`Running` record (the particle and the
random generator of this inference), so concurrent particles never see each
other's state. A primitive called outside a running step finds nothing and
raises :class:`~ppl.errors.ModelError`.

It also owns the two control signals a step can raise or yield:

- :class:`ParticleDied`, raised when a particle's weight reaches zero: its
  step stops at once;
- the *step boundary*: a program written as a function (``@ppl.program``)
  runs as one coroutine, and a token primitive that finds the step already
  had one suspends the coroutine until the particle's next step
  (:func:`step_boundary`). Class programs never suspend: their ``step()`` is
  the step.

A leaf module: it imports nothing from ppl but the errors.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .errors import ModelError

__all__ = [
    "BOUNDARY",
    "ParticleDied",
    "Running",
    "current",
    "current_or_none",
    "current_particle",
    "current_rng",
    "running",
    "step_boundary",
]


class ParticleDied(BaseException):
    """Raised inside a step when the particle's weight becomes zero; the
    runtime catches it and marks the particle dead. A ``BaseException`` so that
    a program's own ``except Exception`` does not swallow it."""


@dataclass(frozen=True)
class Running:
    """What runs now: ``particle`` (a program state) and ``rng``."""

    particle: Any
    rng: np.random.Generator


_running: contextvars.ContextVar[Running | None] = contextvars.ContextVar("ppl_running", default=None)


#: ``current_or_none()``: the running record or ``None``, without a check (a hot path)
current_or_none = _running.get


def current() -> Running | None:
    """The running particle and its generator, or ``None`` outside a step."""
    return _running.get()


def _require(primitive: str) -> Running:
    state = _running.get()
    if state is None:
        raise ModelError(
            f"{primitive} was called outside a running step: primitives only work "
            "inside step() (or start()) while inference runs the program"
        )
    return state


def current_particle(primitive: str) -> Any:
    """The running particle; ``ModelError`` naming ``primitive`` outside a step."""
    return _require(primitive).particle


def current_rng(primitive: str) -> np.random.Generator:
    """The running inference's generator; ``ModelError`` outside a step."""
    return _require(primitive).rng


@contextlib.contextmanager
def running(particle: Any, rng: np.random.Generator) -> Iterator[None]:
    """Run the body as ``particle`` (used by a particle's ``advance``)."""
    token = _running.set(Running(particle, rng))
    try:
        yield
    finally:
        _running.reset(token)


#: What a suspended program coroutine yields to the driver of its steps.
BOUNDARY = object()


class _Boundary:
    """What :func:`step_boundary` returns for a particle that must suspend:
    an awaitable that is its own iterator (no coroutine frame of its own,
    so a suspended program is one frame shorter to copy,
    :mod:`ppl.coroutine_copy`). Awaiting it yields :data:`BOUNDARY` once;
    resumed, it tells the particle running then (the one the step's task
    runs as: a clone, if this was copied) and finishes."""

    __slots__ = ("_yielded",)

    def __init__(self) -> None:
        self._yielded = False

    def __await__(self) -> "_Boundary":
        return self

    def __iter__(self) -> "_Boundary":
        return self

    def __next__(self) -> Any:
        if not self._yielded:
            self._yielded = True
            return BOUNDARY
        _running.get().particle._resumed_at_token_site()
        raise StopIteration(None)

    def send(self, value: Any) -> Any:
        return self.__next__()

    def throw(self, *exc) -> Any:
        raise exc[1] if len(exc) > 1 and exc[1] is not None else exc[0]

    def close(self) -> None:
        self._yielded = True

    def __deepcopy__(self, memo) -> "_Boundary":
        new = _Boundary()
        new._yielded = self._yielded
        return new


class _Passed:
    """What :func:`step_boundary` returns when the particle need not suspend."""

    __slots__ = ()

    def __await__(self):
        return iter(())


_PASSED = _Passed()


def step_boundary():
    """Awaited before every token primitive of the module-level API
    (``ppl.sample``, ``ppl.observe``, ``ctx.observe_text``): ``await
    step_boundary()``. If the running particle asks for it
    (``particle._at_token_site()`` is true: a program whose step already
    had its token), this suspends until the particle's next step.

    While suspended, nothing here holds a reference to the particle (only the
    task's context does, and only while it runs), so a particle dropped by
    resampling is freed, coroutine and all, at once.
    """
    state = _running.get()
    if state is None or not state.particle._at_token_site():
        return _PASSED
    return _Boundary()
