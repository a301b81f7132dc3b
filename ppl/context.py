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
from .primitives import observe, sample, step


def _check_max_tokens(value, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{where}(): max_tokens must be an integer >= 1, got {value!r}")


class LMContext:
    """``lm.context(prompt)``: a context on language model ``lm``.

    - ``ctx.next_token()``: the next-token distribution ``p(. | prompt, tokens)``;
    - ``ctx.next_token().where(constraint)``: the same, conditioned on a
      token-level constraint;
    - ``await ctx.observe_text(text)``: observe a whole string, token by token;
    - ``await ctx.sample_until(stop)`` / ``await ctx.sample_word()``: draw
      tokens up to a stop string / one word, in one step;
    - ``ctx.next_token(temperature=T)``: the same target, tempered draws;
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
        lm, ids = self.lm, self._ids
        if not 0 <= token_id < len(lm.vocab):
            raise ModelError(
                f"token id {token_id} is outside the vocabulary (size {self.lm.vocab_size})"
            )
        if len(ids) > self._n_prompt and ids[-1] == lm.eos_token_id:
            raise ModelError(f"cannot extend a context that already ended with EOS: {self!r}")
        self._set(ids + (token_id,))
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
    def next_token(self, temperature: float = 1.0) -> NextToken:
        """The next-token distribution of this context. With a ``temperature``
        other than 1 the target is the same, but a ``sample`` draws from the
        tempered distribution ``q ∝ p^(1/T)`` and weighs by ``p(x)/q(x)``
        (see :mod:`ppl.distributions.next_token`)."""
        ids = self._ids
        if len(ids) > self._n_prompt and ids[-1] == self.lm.eos_token_id:
            raise ModelError(f"context already ended with EOS, there is no next token: {self!r}")
        return NextToken(self) if temperature == 1.0 else NextToken(self).tempered(temperature)

    async def observe_text(self, text: str) -> float:
        """Observe ``text``, one token after another (the model's own
        tokenisation of ``text``): the weight is multiplied by
        ``prod_i p(t_i | prefix, t_<i)``. All the token requests go to the model
        in one batch. Returns the log-probability added. The same as
        ``await ppl.observe(TextContinuation(ctx), text)``."""
        return await observe(TextContinuation(self), text)

    async def sample_until(self, stop, max_tokens: int = 64, where=None) -> str:
        """Draw tokens (``ppl.sample(ctx.next_token())``, ``.where(where)`` if
        given) until the text drawn by this call contains ``stop`` (a string,
        or any of several), EOS is drawn, or ``max_tokens`` tokens were drawn;
        returns that text (the token that completes ``stop`` is kept whole, so
        text may follow the stop). All the draws are one step, in every
        program form (an ``async with ppl.step()`` block); the target is the
        model's own distribution (times ``where``'s masses)."""
        stops = (stop,) if isinstance(stop, str) else tuple(stop)
        if not stops or not all(isinstance(s, str) and s for s in stops):
            raise ArgumentError(f"sample_until() needs a non-empty stop string (or several), got {stop!r}")
        _check_max_tokens(max_tokens, "sample_until")
        start = len(self._ids)
        async with step():
            for _ in range(max_tokens):
                dist = self.next_token() if where is None else self.next_token().where(where)
                tok = await sample(dist)
                if tok.is_eos or any(s in self.lm.decode(self._ids[start:]) for s in stops):
                    break
        return self.lm.decode(self._ids[start:])

    async def sample_word(self, max_tokens: int = 8) -> str:
        """Draw the next word: tokens until a token that begins with
        whitespace follows some non-space text, or EOS, or ``max_tokens``
        tokens. Returns the word (its leading whitespace and trailing
        punctuation included, e.g. ``" cat."``). The token that ended the word
        is the first token of the next one: it is already in the context, and
        the next ``sample_word()`` starts with it. One step, in every program
        form; every token is drawn from the model, so the target is the
        model's own distribution."""
        _check_max_tokens(max_tokens, "sample_word")
        mark = getattr(self, "_word_mark", None)
        start = mark[0] if mark is not None and mark[1] is self._ids else len(self._ids)
        async with step():
            for _ in range(max_tokens):
                before = self.lm.decode(self._ids[start:])
                tok = await sample(self.next_token())
                if tok.is_eos:
                    break
                if before.strip() and tok.text[:1].isspace():
                    self._word_mark = (len(self._ids) - 1, self._ids)
                    return before
        self._word_mark = None
        return self.lm.decode(self._ids[start:])

    def __repr__(self) -> str:
        """Short enough for an error message, however long the context: the
        prompt's start (32 characters) and the generated text's end (48),
        with the token counts of both: ``<LMContext 'The' + ' end' (1+1 tokens)>``."""
        prompt, text = self.prompt, self.lm.decode(self._ids[self._n_prompt:][-64:])
        if len(prompt) > 32:
            prompt = prompt[:29] + "..."
        if len(text) > 48 or len(self) > 64:
            text = "..." + text[-45:]
        tail = f" with {', '.join(map(repr, self.constraints))}" if self.constraints else ""
        if len(tail) > 64:
            tail = tail[:61] + "..."
        return f"<LMContext {prompt!r} + {text!r} ({self._n_prompt}+{len(self)} tokens){tail}>"
