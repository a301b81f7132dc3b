"""The language model's next-token distribution on a context, and its
conditioned form.

``ctx.next_token()`` denotes ``p(. | context)``; ``.where(C)`` denotes the
unnormalised measure ``p(x) 1[x in C]``, whose mass is ``p(C)``: sampling it
is exact conditioning with the locally optimal proposal, and the weight is
multiplied by ``p(C)``. On a context with a sequence constraint the measure
is further restricted to the tokens that keep the text viable (see
:mod:`ppl.constraints.sequence`). Values are :class:`Token` objects.

``ctx.next_token(temperature=T)`` denotes the same measure ``mu`` (the
target does not change) but is *proposed* from the tempered distribution
``q(x) ∝ mu(x)^(1/T)`` over the same tokens: ``sample`` through a primitive
draws ``x ~ q`` and multiplies the weight by ``mu(x) / q(x)``, an unbiased
(properly weighted) estimate, so SMC still targets ``mu``; ``T < 1``
concentrates the draws on likely tokens, ``T > 1`` spreads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..constraints.token import as_token_constraint
from ..errors import ArgumentError, ModelError
from ..runtime.resampling import logsumexp
from .awrs import CheckedNextToken
from .base import ContextBound, draw_index

__all__ = ["ConditionedNextToken", "NextToken", "NextTokenView", "Token"]


@dataclass(frozen=True)
class Token:
    """A token drawn from or observed on a language-model context."""

    id: int
    text: str
    is_eos: bool = False

    def __int__(self) -> int:
        return self.id

    def __str__(self) -> str:
        return self.text


class NextTokenView(NamedTuple):
    """What a next-token distribution denotes, once the model has answered:
    the tokens the context's constraint forces first (``forced``), their log
    probability, the mask of allowed next free tokens (``None``: all) and
    ``log p(. | prefix, forced)`` over the whole vocabulary."""

    forced: tuple[int, ...]
    log_p_forced: float
    mask: np.ndarray | None
    logprobs: np.ndarray


class NextToken(ContextBound):
    """``p(. | context)``: the language model's next-token distribution.

    Sampling or observing it through a primitive appends the token to the
    context. Created by :meth:`ppl.LMContext.next_token`.

    On a context with a sequence constraint (``lm.context(p, constraint=c)``)
    it denotes ``p(x) 1[x viable]``: only tokens that keep the text a viable
    prefix of the constraint's language, EOS only where the text is complete;
    its mass is ``p(viable)`` (see :mod:`ppl.constraints.sequence`). When the
    constraint forces tokens (``fast_forward=True``), the distribution is over
    the next *free* token ``x`` after the forced tokens ``f_1 .. f_k``, with
    measure ``prod_i p(f_i | ...) * p(x | ..., f) 1[x viable]``; committing
    ``x`` appends ``f_1 .. f_k, x``.
    """

    _what_it_is = "a next_token() distribution"
    _remedy = "call ctx.next_token() again"
    _temperature = 1.0  # of the proposal (see the module docstring)

    def __init__(self, context):
        self.context = context
        self._prefix = context._ids  # (ContextBound's fields, set directly: a hot path)
        self._state = context._state
        self._view_memo: NextTokenView | None = None

    async def _logprobs(self) -> np.ndarray:
        self._check_current()
        return await self.context._logprobs()

    def _static_mask(self) -> np.ndarray | None:
        """A token-level mask (``.where(C)``); ``None`` for none."""
        return None

    async def view(self) -> NextTokenView:
        """The measure, once the model has answered (memoised)."""
        if self._view_memo is not None:
            return self._view_memo
        state = self._state
        mask = self._static_mask()
        forced: tuple[int, ...] = ()
        log_p_forced = 0.0
        if state is None:
            lp = await self._logprobs()
        else:
            forced = state.forced()
            if forced:
                self._check_current()
                prefixes = [self._prefix + forced[:i] for i in range(len(forced) + 1)]
                rows = await self.context.lm.next_token_logprobs_many(prefixes)
                log_p_forced = float(sum(float(r[t]) for r, t in zip(rows, forced)))
                lp = rows[-1]
                state = state.advance_many(forced)
            else:
                lp = await self._logprobs()
            seq = state.mask()
            mask = seq if mask is None else (mask & seq)
        self._view_memo = NextTokenView(forced, log_p_forced, mask, lp)
        return self._view_memo

    async def masked_logprobs(self) -> tuple[float, np.ndarray]:
        """``(log p(forced), log of the measure over the next free token)``,
        as a full vocabulary-sized array (``-inf`` where not allowed)."""
        _, log_p_forced, mask, lp = await self.view()
        lp = lp.astype(np.float64)
        if mask is not None:
            lp = np.where(mask, lp, -np.inf)
        return log_p_forced, lp

    async def _sparse(self) -> tuple[float, np.ndarray | None, np.ndarray]:
        """``(log p(forced), allowed ids or None for all, their log-probabilities)``:
        work proportional to the allowed tokens, not the vocabulary, once
        the mask is known (sequence constraints usually allow few tokens)."""
        _, log_p_forced, mask, lp = await self.view()
        if mask is None:
            return log_p_forced, None, lp.astype(np.float64)
        idx = np.flatnonzero(mask)
        return log_p_forced, idx, lp[idx].astype(np.float64)

    def token(self, token_id: int) -> Token:
        """The :class:`Token` of ``token_id`` on this context's model."""
        lm = self.context.lm
        return Token(int(token_id), lm.vocab[token_id], token_id == lm.eos_token_id)

    def token_id(self, value) -> int:
        """The id of a value (a :class:`Token` or an id); ``ModelError`` otherwise."""
        if isinstance(value, Token):
            return value.id
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        raise ModelError(
            f"a next-token distribution's value must be a Token or a token id, got {value!r}"
        )

    def tempered(self, temperature: float) -> "NextToken":
        """The same measure, proposed at ``temperature`` (see the module docstring)."""
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) \
                or not 0.0 < float(temperature) < math.inf:
            raise ArgumentError(f"temperature must be a number > 0 (and finite), got {temperature!r}")
        new = self.__copy__()
        new._temperature = float(temperature)
        new._view_memo = self._view_memo
        return new

    async def propose(self, rng):
        """``(x, log w)``: exact for ``temperature=1`` (``x ~ mu/|mu|``,
        ``w = |mu|``); otherwise ``x ~ q = mu^(1/T) / sum mu^(1/T)`` and
        ``w = mu(x) / q(x)``, so that ``E_q[w f(x)] = sum_x mu(x) f(x)``."""
        T = self._temperature
        if T == 1.0:
            return await super().propose(rng)
        log_p_forced, idx, lp = await self._sparse()
        finite = lp > -np.inf
        if not finite.any():
            return None, -math.inf
        z = np.where(finite, lp / T, -np.inf)
        z -= z[finite].max()
        log_q = z - logsumexp(z)
        j = draw_index(np.exp(log_q), rng)
        x = j if idx is None else int(idx[j])
        return self.token(x), log_p_forced + float(lp[j]) - float(log_q[j])

    def _restricted(self) -> bool:
        return self._state is not None or self._static_mask() is not None

    async def log_mass(self):
        if not self._restricted():
            return 0.0
        log_p_forced, _, lp = await self._sparse()
        return log_p_forced + (logsumexp(lp) if len(lp) else -math.inf)

    async def sample(self, rng):
        if not self._restricted():
            lp = await self._logprobs()
            return self.token(draw_index(np.exp(lp.astype(np.float64)), rng))
        _, idx, lp = await self._sparse()
        top = lp.max() if len(lp) else -np.inf
        if top == -np.inf:
            raise ModelError(f"no token allowed by {self._what()} has non-zero probability")
        w = np.exp(lp - top)
        j = draw_index(w / w.sum(), rng)
        return self.token(j if idx is None else int(idx[j]))

    async def log_prob(self, value):
        i = self.token_id(value)
        if not self._restricted():
            lp = await self._logprobs()
            return float(lp[i]) if 0 <= i < len(lp) else -math.inf
        _, log_p_forced, mask, lp = await self.view()
        if not 0 <= i < len(lp) or (mask is not None and not mask[i]):
            return -math.inf
        return log_p_forced + float(lp[i])

    def _commit(self, value):
        if self.context._ids is not self._prefix:
            self._check_current()  # raises
        if self._state is not None:
            for t in self._state.forced():
                self.context._append(t)
        self.context._append(value.id if type(value) is Token else self.token_id(value))

    def signature(self) -> tuple:
        if self._temperature != 1.0:
            return ("next_token", len(self._prefix), None, self._temperature)
        return ("next_token", len(self._prefix), None)

    def _what(self) -> str:
        if self._state is not None:
            return f"the context's constraint {self._state!r}"
        return "the model"

    def where(self, constraint) -> "ConditionedNextToken":
        """The next-token distribution restricted to tokens allowed by
        ``constraint`` (a :class:`ppl.TokenConstraint`, a boolean mask over the
        vocabulary, or a predicate on the token's text): the measure
        ``p(x) 1[x allowed]``, of mass ``p(allowed)``."""
        return ConditionedNextToken._of(self, constraint)

    mask = where

    def where_checked(self, predicate, **options) -> CheckedNextToken:
        """The next-token distribution restricted to tokens ``x`` for which
        ``predicate(text + text(x))`` holds, ``text`` being everything generated
        so far: the measure ``p(x) 1[predicate(...)]``. Sampled by adaptive
        weighted rejection sampling (AWRS), which checks only the tokens it
        draws; see :class:`ppl.distributions.CheckedNextToken`."""
        if self._temperature != 1.0:
            raise ArgumentError(
                "where_checked() draws its tokens by AWRS from the model itself and takes no "
                f"temperature (got temperature={self._temperature}): drop one of the two"
            )
        return CheckedNextToken(self, predicate, **options)

    def __repr__(self):
        return f"NextToken({self.context!r})"


class ConditionedNextToken(NextToken):
    """``p(x | context) 1[x in C]``: sampling draws from ``p(. | C)`` and
    multiplies the weight by ``p(C)``; used as a proposal its density is
    ``p(x | C) = p(x) 1[x in C] / p(C)``. On a constrained context ``C`` is
    intersected with the viable tokens."""

    def __init__(self, context, constraint):
        super().__init__(context)
        self.constraint = as_token_constraint(constraint)
        self._allowed = self.constraint.mask(context.lm)

    @classmethod
    def _of(cls, base: NextToken, constraint) -> "ConditionedNextToken":
        """``base.where(constraint)`` without redoing ``base``'s set-up."""
        new = object.__new__(cls)
        new.context, new._prefix, new._state = base.context, base._prefix, base._state
        new._view_memo = None
        if base._temperature != 1.0:
            new._temperature = base._temperature
        new.constraint = as_token_constraint(constraint)
        new._allowed = new.constraint.mask(base.context.lm)
        return new

    def _static_mask(self):
        return self._allowed

    def signature(self) -> tuple:
        if self._temperature != 1.0:
            return ("next_token", len(self._prefix), repr(self.constraint), self._temperature)
        return ("next_token", len(self._prefix), repr(self.constraint))

    def _what(self) -> str:
        rest = super()._what()
        return f"{self.constraint!r}" + ("" if rest == "the model" else f" and {rest}")

    def where(self, constraint) -> "ConditionedNextToken":
        return ConditionedNextToken._of(self, self.constraint & as_token_constraint(constraint))

    mask = where

    def __repr__(self):
        return f"NextToken({self.context!r}).where({self.constraint!r})"
