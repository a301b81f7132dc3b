"""Module-level primitives: ``ppl.sample``, ``ppl.observe``, ``ppl.condition``,
``ppl.factor``, ``ppl.twist``.

They act on the particle whose step is running, found through a
``contextvars.ContextVar`` (each particle's step runs in its own asyncio task,
so concurrent particles never see each other's state). Called outside a
running program they raise :class:`~ppl.errors.ModelError`.
"""

from __future__ import annotations

from typing import Any

from .distributions import NextToken
from .model import _current_particle
from .program import step_boundary


async def sample(dist, proposal=None) -> Any:
    """``x ~ proposal`` (default: ``dist``), weighted to target ``dist``."""
    if isinstance(dist, NextToken):
        await step_boundary()
    return await _current_particle("ppl.sample()").sample(dist, proposal)


async def observe(dist, value) -> float:
    """Multiply the weight by ``dist``'s probability of ``value``."""
    if isinstance(dist, NextToken):
        await step_boundary()
    return await _current_particle("ppl.observe()").observe(dist, value)


def condition(ok) -> None:
    """Keep the particle only if ``ok`` holds."""
    _current_particle("ppl.condition()").condition(ok)


def factor(log_w: float) -> None:
    """Multiply the weight by ``exp(log_w)``."""
    _current_particle("ppl.factor()").factor(log_w)


def twist(log_w: float) -> None:
    """Add ``log_w`` now, taking back the previous twist (and this one at the end)."""
    _current_particle("ppl.twist()").twist(log_w)
