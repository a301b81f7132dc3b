"""Module-level primitives: ``ppl.sample``, ``ppl.observe``, ``ppl.condition``,
``ppl.factor``, ``ppl.twist``, ``ppl.intervene``, and ``ppl.step()``, a block of them that is one
step.

They act on the particle whose step is running, found through
:mod:`ppl.running` (each particle's step runs in its own asyncio task, so
concurrent particles never see each other's state), and do exactly what the
particle's own methods do (:class:`ppl.Model`). A primitive on a distribution
that extends a context (a next token, a text) first passes the step boundary:
in a ``@ppl.program`` function, a step holds one such primitive, or one
``async with ppl.step():`` block of any number of them. Called outside a
running program they raise :class:`~ppl.errors.ModelError`.

A ``@ppl.program`` clone that is replaying its parent's trace answers each
primitive at once from the trace (``particle._replay_site``): no site object,
no step boundary, no model.
"""

from __future__ import annotations

from typing import Any

from .running import current_or_none, current_particle, step_boundary

__all__ = ["apply_potential", "condition", "factor", "intervene", "observe", "sample", "step", "twist"]


async def sample(dist, proposal=None) -> Any:
    """``x ~ proposal`` (default: ``dist``), weighted to target ``dist``."""
    state = current_or_none()
    if state is not None and getattr(state.particle, "_replaying", False):
        return state.particle._replay_site("sample", dist)
    del state  # a suspended step holds no reference to its particle
    particle = current_particle("ppl.sample()")
    if getattr(dist, "extends_context", False):
        del particle
        await step_boundary()
        particle = current_particle("ppl.sample()")
    return await particle.sample(dist, proposal)


async def observe(dist, value) -> float:
    """Multiply the weight by ``dist``'s probability of ``value``."""
    state = current_or_none()
    if state is not None and getattr(state.particle, "_replaying", False):
        return state.particle._replay_site("observe", dist, value)
    del state
    particle = current_particle("ppl.observe()")
    if getattr(dist, "extends_context", False):
        del particle
        await step_boundary()
        particle = current_particle("ppl.observe()")
    return await particle.observe(dist, value)


async def intervene(dist, value) -> Any:
    """Commit ``value`` to ``dist`` (a next token: append it to its context)
    without weighting: the weight does not change (see
    :meth:`ppl.Model.intervene`). It passes no step boundary: a forced token
    belongs to the step the program is in."""
    particle = current_particle("ppl.intervene()")
    if getattr(particle, "_replaying", False):
        return particle._replay_site("intervene", dist, value)
    return await particle.intervene(dist, value)


def _scored(kind: str, value) -> None:
    particle = current_particle(f"ppl.{kind}()")
    if getattr(particle, "_replaying", False):
        particle._replay_site(kind, None, bool(value) if kind == "condition" else float(value))
    else:
        getattr(particle, kind)(value)


def condition(ok) -> None:
    """Keep the particle only if ``ok`` holds."""
    _scored("condition", ok)


def factor(log_w: float) -> None:
    """Multiply the weight by ``exp(log_w)``."""
    _scored("factor", log_w)


def twist(log_w: float) -> None:
    """Add ``log_w`` now, taking back the previous twist (and this one at the end)."""
    _scored("twist", log_w)


async def apply_potential(potential, ctx, *, finished: bool) -> float:
    """A soft ``potential`` on ``ctx``'s text: ``twist(prefix score)`` while
    it grows, ``factor(score)`` once ``finished`` (see :meth:`ppl.Model.apply_potential`)."""
    if finished:
        value = await potential(ctx)
        factor(value)
    else:
        value = await potential.prefix_score(ctx)
        twist(value)
    return value


class step:
    """``async with ppl.step(): ...``: every primitive in the block belongs to
    one SMC step. In a ``@ppl.program`` function the step boundary comes
    before the block (when the step already had a token primitive), never
    inside it, so resampling never separates, say, the ``sample`` of a token
    on one context from its ``observe`` on another. Blocks nest (the outer
    one counts). In a class's ``step()``, which is one step already, the
    block changes nothing."""

    async def __aenter__(self) -> "step":
        current_particle("ppl.step()")  # outside a running step: ModelError
        await step_boundary()
        particle = current_particle("ppl.step()")
        if hasattr(particle, "_open_group"):
            particle._open_group()
        return self

    async def __aexit__(self, *exc) -> bool:
        particle = current_particle("ppl.step()")
        if hasattr(particle, "_close_group"):
            particle._close_group()
        return False
