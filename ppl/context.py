"""Language-model contexts: a prompt plus the tokens generated after it.

An :class:`LMContext` is a small handle on an immutable token sequence. When a
primitive samples or observes ``ctx.next_token()``, the handle moves to a new,
longer sequence; the old one is never changed. Cloning a particle copies the
handle (one pointer) and shares the sequence, so clones never copy model
state. The language model's answers for the current prefix are memoised on
the handle, so several distributions on the same prefix cost one request.

A context may carry sequence constraints (``lm.context(prompt, constraint=c)``
or ``ctx.constrain(c)``, see :mod:`ppl.constraints.sequence`). Their parser
state is a :class:`~ppl.constraints.ConstraintState` held by the handle next
to the token sequence, and is treated the same way: appending a token makes a
new state (the llguidance matchers are copied with ``deep_copy`` and advanced),
the old one is never changed. Cloning therefore shares the state, together
with its cached token mask, and a clone that appends pays for its own copy.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .constraints.sequence import ConstraintError, ConstraintState, SequenceConstraint
from .distributions import NextToken, TextContinuation, Token
from .errors import ArgumentError, ModelError
from .primitives import observe


class LMContext:
    """``lm.context(prompt)``: a context on language model ``lm``.

    - ``ctx.next_token()``: the next-token distribution ``p(. | prompt, tokens)``;
    - ``ctx.next_token().where(constraint)``: the same, conditioned on a
      token-level constraint;
    - ``await ctx.observe_text(text)``: observe a whole string, token by token;
    - ``ctx.text`` / ``ctx.token_ids``: what has been generated (prompt excluded);
    - ``ctx.prefix_ids``: prompt and generated ids, as sent to the model;
    - ``constraint=`` / ``ctx.constrain(c)``: restrict the generated text to a
      language (``ppl.regex``, ``ppl.grammar``, ``ppl.json_schema``,
      ``ppl.choice``); ``ctx.accepting`` says whether the text is complete.
    """

    def __init__(
        self,
        lm,
        prompt: str = "",
        *,
        prompt_ids: Sequence[int] | None = None,
        constraint=None,
    ):
        self.lm = lm
        self.prompt = prompt
        ids = tuple(int(t) for t in (lm.prompt_ids(prompt) if prompt_ids is None else prompt_ids))
        for t in ids:
            if not 0 <= t < lm.vocab_size:
                raise ArgumentError(f"prompt token id {t} is outside the vocabulary (size {lm.vocab_size})")
        self._n_prompt = len(ids)
        self._state = None
        self._set(ids)
        if constraint is not None:
            constraints = constraint if isinstance(constraint, (list, tuple)) else [constraint]
            for c in constraints:
                self.constrain(c)

    def _set(self, ids: tuple[int, ...]) -> None:
        self._ids = ids
        self._memo: np.ndarray | None = None
        self._pin = self.lm.pin(ids)  # keeps the prefix's cache alive (None if the model has none)

    # -- cloning: share the immutable sequence, never the handle -------------
    def __deepcopy__(self, memo):
        new = object.__new__(LMContext)
        new.__dict__.update(self.__dict__)
        memo[id(self)] = new
        return new

    def __copy__(self):
        return self.__deepcopy__({})

    # -- the sequence ---------------------------------------------------------
    @property
    def prefix_ids(self) -> tuple[int, ...]:
        return self._ids

    @property
    def token_ids(self) -> list[int]:
        return list(self._ids[self._n_prompt :])

    @property
    def tokens(self) -> list[Token]:
        lm = self.lm
        return [Token(t, lm.vocab[t], t == lm.eos_token_id) for t in self.token_ids]

    @property
    def text(self) -> str:
        return self.lm.decode(self.token_ids)

    @property
    def finished(self) -> bool:
        """Whether the last generated token is EOS."""
        return len(self._ids) > self._n_prompt and self._ids[-1] == self.lm.eos_token_id

    def __len__(self) -> int:
        return len(self._ids) - self._n_prompt

    def _append(self, token_id: int) -> None:
        if not 0 <= token_id < self.lm.vocab_size:
            raise ModelError(
                f"token id {token_id} is outside the vocabulary (size {self.lm.vocab_size})"
            )
        if self.finished:
            raise ModelError(f"cannot extend a context that already ended with EOS: {self!r}")
        self._set(self._ids + (token_id,))
        if self._state is not None:
            self._state = self._state.advance(token_id)

    async def _logprobs(self) -> np.ndarray:
        """``log p(. | prefix)``, memoised for the current prefix."""
        if self._memo is None:
            ids = self._ids
            lp = await self.lm.next_token_logprobs(ids)
            if self._ids is ids:  # still the same prefix
                self._memo = lp
            return lp
        return self._memo

    # -- constraints ------------------------------------------------------------
    def constrain(self, constraint) -> "LMContext":
        """Restrict this context's generated text (from its start, including
        what was generated already) to ``constraint``'s language; returns the
        context. If the text so far is already no viable prefix, the context
        is dead: its next constrained sample weighs zero."""
        if not isinstance(constraint, SequenceConstraint):
            raise ConstraintError(
                "a context constraint must be a sequence constraint (ppl.regex(...), "
                "ppl.grammar(...), ppl.json_schema(...), ppl.choice([...])); got "
                f"{constraint!r}. Token-level constraints such as ppl.lacks() go in "
                "ctx.next_token().where(...)"
            )
        done = self.token_ids
        if self._state is None:
            self._state = ConstraintState.start(self.lm, [constraint], done)
        else:
            self._state = self._state.with_constraint(constraint, done)
        return self

    @property
    def constraint_state(self) -> ConstraintState | None:
        """The parser state of the context's sequence constraints (``None``
        without any): immutable, shared with clones."""
        return self._state

    @property
    def constraints(self) -> tuple:
        """The sequence constraints on this context."""
        return () if self._state is None else self._state.constraints

    @property
    def accepting(self) -> bool:
        """Whether the text so far is complete under every constraint (``True``
        for an unconstrained context; ``False`` for a dead one)."""
        return True if self._state is None else self._state.accepting

    @property
    def viable(self) -> bool:
        """Whether the text so far can still be extended into, or already is,
        a complete text of every constraint."""
        return self._state is None or not self._state.dead

    # -- the language -----------------------------------------------------------
    def next_token(self) -> NextToken:
        """The next-token distribution of this context."""
        if self.finished:
            raise ModelError(f"context already ended with EOS, there is no next token: {self!r}")
        return NextToken(self)

    async def observe_text(self, text: str) -> float:
        """Observe ``text``, one token after another (the model's own
        tokenisation of ``text``): the weight is multiplied by
        ``prod_i p(t_i | prefix, t_<i)``. All the token requests go to the model
        in one batch. Returns the log-probability added. The same as
        ``await ppl.observe(TextContinuation(ctx), text)``."""
        return await observe(TextContinuation(self), text)

    def __repr__(self) -> str:
        """Short enough for an error message: the prompt's start (40
        characters) and the generated text's end (60)."""
        prompt, text = self.prompt, self.text
        if len(prompt) > 40:
            prompt = prompt[:37] + "..."
        if len(text) > 60:
            text = "..." + text[-57:]
        tail = f" with {', '.join(map(repr, self.constraints))}" if self.constraints else ""
        return f"<LMContext {prompt!r} + {text!r}{tail}>"
