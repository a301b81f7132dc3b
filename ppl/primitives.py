"""Module-level primitives: ``ppl.sample``, ``ppl.observe``, ``ppl.condition``,
``ppl.factor``, ``ppl.twist``.

They act on the particle whose step is running, found through
:mod:`ppl.running` (each particle's step runs in its own asyncio task, so
concurrent particles never see each other's state), and do exactly what the
particle's own methods do (:class:`ppl.Model`). A primitive on a distribution
that extends a context (a next token, a text) first passes the step boundary:
in a ``@ppl.program`` function, a step holds one such primitive. Called
outside a running program they raise :class:`~ppl.errors.ModelError`.
"""

from __future__ import annotations

from typing import Any

from .running import current_particle, step_boundary

__all__ = ["condition", "factor", "observe", "sample", "twist"]


async def sample(dist, proposal=None) -> Any:
    """``x ~ proposal`` (default: ``dist``), weighted to target ``dist``."""
    if getattr(dist, "extends_context", False):
        await step_boundary()
    return await current_particle("ppl.sample()").sample(dist, proposal)


async def observe(dist, value) -> float:
    """Multiply the weight by ``dist``'s probability of ``value``."""
    if getattr(dist, "extends_context", False):
        await step_boundary()
    return await current_particle("ppl.observe()").observe(dist, value)


def condition(ok) -> None:
    """Keep the particle only if ``ok`` holds."""
    current_particle("ppl.condition()").condition(ok)


def factor(log_w: float) -> None:
    """Multiply the weight by ``exp(log_w)``."""
    current_particle("ppl.factor()").factor(log_w)


def twist(log_w: float) -> None:
    """Add ``log_w`` now, taking back the previous twist (and this one at the end)."""
    current_particle("ppl.twist()").twist(log_w)
