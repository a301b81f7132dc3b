"""A whole text as what comes next on a context.

``TextContinuation(ctx)`` denotes the measure over strings ``s`` given by the
model's own tokenisation ``t_1 .. t_n`` of ``s``:

    mu(s) = prod_i p(t_i | prefix, t_<i)        (0 if ctx's constraint refuses s)

``observe(TextContinuation(ctx), s)`` multiplies the weight by ``mu(s)`` and
appends ``t_1 .. t_n`` to the context; ``await ctx.observe_text(s)`` is the
same. All ``n`` token requests go to the model in one batch. The three
front-ends (class programs, ``@ppl.program`` functions and ``.steer``
programs) observe text through this one distribution.

It cannot be sampled: its support is every string, and a draw would be a
generation loop of its own; sample tokens with ``ctx.next_token()``.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..errors import ModelError
from .base import ContextBound

__all__ = ["TextContinuation"]


class TextContinuation(ContextBound):
    """The texts that may follow ``context``, weighted by the model."""

    _what_it_is = "a text continuation"

    def __init__(self, context):
        super().__init__(context)
        self._ids: dict[str, tuple[int, ...]] = {}

    def token_ids(self, text) -> tuple[int, ...]:
        """The model's tokenisation of ``text``; ``ModelError`` for a non-string."""
        if not isinstance(text, str):
            raise ModelError(f"a text continuation's value must be a str, got {text!r}")
        ids = self._ids.get(text)
        if ids is None:
            ids = self._ids[text] = tuple(int(t) for t in self.context.lm.encode(text))
        return ids

    async def log_prob(self, text) -> float:
        """``sum_i log p(t_i | prefix, t_<i)``, every prefix in one batch."""
        self._check_current()
        ids = self.token_ids(text)
        if not ids:
            return 0.0
        state = self.context.constraint_state
        if state is not None and not state.allows(ids):
            return -math.inf  # the constraint refuses the text: weight zero
        prefixes: Sequence[tuple[int, ...]] = [self._prefix + ids[:i] for i in range(len(ids))]
        rows = await self.context.lm.next_token_logprobs_many(prefixes)
        return float(sum(float(row[t]) for row, t in zip(rows, ids)))

    async def sample(self, rng):
        raise ModelError(
            "a text continuation can only be observed (observe(TextContinuation(ctx), text) "
            "or await ctx.observe_text(text)); sample tokens with ctx.next_token()"
        )

    async def log_mass(self) -> float:
        raise ModelError("a text continuation can only be observed; its mass is not computed")

    def _commit(self, text) -> None:
        self._check_current()
        for t in self.token_ids(text):
            self.context._append(t)

    def signature(self) -> tuple:
        return ("text", len(self._prefix))

    def __repr__(self):
        return f"TextContinuation({self.context!r})"
