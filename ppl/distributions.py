"""Distributions a steering program samples from and observes.

Every distribution denotes a non-negative measure ``mu`` over its values and
offers three async methods:

- ``sample(rng)``: draw ``x`` from the normalised measure ``mu / |mu|``;
- ``log_prob(x)``: ``log mu(x)`` (``-inf`` outside the support);
- ``log_mass()``: ``log |mu|``, which is ``0`` for an ordinary (normalised)
  distribution.

The primitives use them as the Feynman-Kac weights require:

- ``sample(p)`` draws ``x ~ p / |p|`` and multiplies the weight by ``|p|``;
- ``sample(p, proposal=q)`` draws ``x ~ q / |q|`` and multiplies the weight by
  ``p(x) / (q(x) / |q|)``;
- ``observe(p, x)`` multiplies the weight by ``p(x)``.

An unnormalised measure is what a *conditioned* next-token distribution is:
``ctx.next_token().where(C)`` denotes ``p(x) 1[x in C]``, whose mass is
``p(C)``; sampling it is exact conditioning with the locally optimal proposal.

Values the language model produces are :class:`Token` objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import ModelError


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


class Distribution:
    """Base class; subclasses implement ``sample`` and ``log_prob`` and, when
    the measure is not normalised, ``log_mass``."""

    async def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    async def log_prob(self, value: Any) -> float:
        raise NotImplementedError

    async def log_mass(self) -> float:
        return 0.0

    async def propose(self, rng: np.random.Generator) -> tuple[Any, float]:
        """``(x, log w)`` with ``x`` and ``w`` properly weighted for the measure:
        ``E[w f(x)] = sum_x mu(x) f(x)``. The default is exact: ``x ~ mu/|mu|``,
        ``w = |mu|`` (and ``(None, -inf)`` for a zero measure, without sampling).
        Distributions that can only *estimate* their mass (AWRS) override it."""
        log_w = float(await self.log_mass())
        if log_w == -math.inf:
            return None, -math.inf
        return await self.sample(rng), log_w

    def _commit(self, value: Any) -> None:
        """Called once a primitive has settled on ``value`` for this
        distribution (next-token distributions extend their context here)."""


def _as_probs(probs=None, logits=None, *, where: str) -> np.ndarray:
    if (probs is None) == (logits is None):
        raise ValueError(f"{where}: give exactly one of probs= or logits=")
    if probs is not None:
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 1 or len(p) == 0:
            raise ValueError(f"{where}: probs must be a non-empty 1-D sequence")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError(f"{where}: probs must be finite and non-negative, got {p}")
        total = p.sum()
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"{where}: probs must sum to 1, got sum {total:.6g}")
        return p / total
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 1 or len(z) == 0:
        raise ValueError(f"{where}: logits must be a non-empty 1-D sequence")
    if np.any(np.isnan(z)) or np.any(z == np.inf):
        raise ValueError(f"{where}: logits must not be NaN or +inf")
    top = z.max()
    if top == -np.inf:
        raise ValueError(f"{where}: every logit is -inf")
    p = np.exp(z - top)
    return p / p.sum()


def _draw(p: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw of an index from probabilities ``p`` (sum 1)."""
    cdf = np.cumsum(p)
    i = int(np.searchsorted(cdf, rng.uniform() * cdf[-1], side="right"))
    return min(i, len(p) - 1)


class Categorical(Distribution):
    """``P(values[i]) = probs[i]`` over arbitrary values (from ``probs`` or
    ``logits``; ``values`` defaults to ``0 .. n-1``)."""

    def __init__(self, probs=None, *, logits=None, values: Sequence | None = None):
        self.probs = _as_probs(probs, logits, where="Categorical")
        if values is None:
            values = range(len(self.probs))
        self.values = list(values)
        if len(self.values) != len(self.probs):
            raise ValueError(
                f"Categorical: {len(self.values)} values for {len(self.probs)} probabilities"
            )
        try:
            self._index = {v: i for i, v in enumerate(self.values)}
        except TypeError:  # unhashable values: fall back to a linear search
            self._index = None

    async def sample(self, rng):
        return self.values[_draw(self.probs, rng)]

    async def log_prob(self, value):
        if self._index is not None:
            try:
                i = self._index.get(value)
            except TypeError:
                i = None
            total = self.probs[i] if i is not None else 0.0
        else:
            total = sum(p for v, p in zip(self.values, self.probs) if v == value)
        return math.log(total) if total > 0 else -math.inf

    def __repr__(self):
        return f"Categorical(values={self.values!r}, probs={self.probs.round(4).tolist()})"


class Bernoulli(Distribution):
    """``P(True) = p``, ``P(False) = 1 - p``."""

    def __init__(self, p: float):
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Bernoulli: p must be in [0, 1], got {p}")
        self.p = p

    async def sample(self, rng):
        return bool(rng.uniform() < self.p)

    async def log_prob(self, value):
        if value is True or value == 1:
            q = self.p
        elif value is False or value == 0:
            q = 1.0 - self.p
        else:
            return -math.inf
        return math.log(q) if q > 0 else -math.inf

    def __repr__(self):
        return f"Bernoulli({self.p})"


class Geometric(Distribution):
    """Number of failures before the first success: ``P(k) = (1-p)^k p``,
    ``k = 0, 1, 2, ...``."""

    def __init__(self, p: float):
        p = float(p)
        if not 0.0 < p <= 1.0:
            raise ValueError(f"Geometric: p must be in (0, 1], got {p}")
        self.p = p

    async def sample(self, rng):
        return int(rng.geometric(self.p)) - 1

    async def log_prob(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            return -math.inf
        if self.p == 1.0:
            return 0.0 if value == 0 else -math.inf
        return value * math.log1p(-self.p) + math.log(self.p)

    def __repr__(self):
        return f"Geometric({self.p})"


class NextToken(Distribution):
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

    def __init__(self, context):
        self.context = context
        self._prefix = context.prefix_ids
        self._state = context._state
        self._view_memo = None

    def _check_current(self) -> None:
        if self.context.prefix_ids is not self._prefix:
            raise ModelError(
                "a next_token() distribution was used after its context moved on "
                f"(context is now {self.context!r}); call ctx.next_token() again"
            )

    async def _logprobs(self) -> np.ndarray:
        self._check_current()
        return await self.context._logprobs()

    def _static_mask(self) -> np.ndarray | None:
        """A token-level mask (``.where(C)``); ``None`` for none."""
        return None

    async def _view(self) -> tuple[tuple[int, ...], float, np.ndarray | None, np.ndarray]:
        """``(forced, log p(forced), allowed mask or None, log p(. | prefix, forced))``."""
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
        self._view_memo = (forced, log_p_forced, mask, lp)
        return self._view_memo

    async def _masked(self) -> tuple[float, np.ndarray]:
        """``(log p(forced), log of the measure over the next free token)``,
        as a full vocabulary-sized array (``-inf`` where not allowed)."""
        _, log_p_forced, mask, lp = await self._view()
        lp = lp.astype(np.float64)
        if mask is not None:
            lp = np.where(mask, lp, -np.inf)
        return log_p_forced, lp

    async def _sparse(self) -> tuple[float, np.ndarray | None, np.ndarray]:
        """``(log p(forced), allowed ids or None for all, their log-probabilities)``:
        work proportional to the allowed tokens, not the vocabulary, once
        the mask is known (sequence constraints usually allow few tokens)."""
        _, log_p_forced, mask, lp = await self._view()
        if mask is None:
            return log_p_forced, None, lp.astype(np.float64)
        idx = np.flatnonzero(mask)
        return log_p_forced, idx, lp[idx].astype(np.float64)

    def _token(self, token_id: int) -> Token:
        lm = self.context.lm
        return Token(int(token_id), lm.vocab[token_id], token_id == lm.eos_token_id)

    def _token_id(self, value) -> int:
        if isinstance(value, Token):
            return value.id
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        raise ModelError(
            f"a next-token distribution's value must be a Token or a token id, got {value!r}"
        )

    def _restricted(self) -> bool:
        return self._state is not None or self._static_mask() is not None

    async def log_mass(self):
        if not self._restricted():
            return 0.0
        from ppl.runtime.resampling import logsumexp

        log_p_forced, _, lp = await self._sparse()
        return log_p_forced + (logsumexp(lp) if len(lp) else -math.inf)

    async def sample(self, rng):
        if not self._restricted():
            lp = await self._logprobs()
            return self._token(_draw(np.exp(lp.astype(np.float64)), rng))
        _, idx, lp = await self._sparse()
        top = lp.max() if len(lp) else -np.inf
        if top == -np.inf:
            raise ModelError(f"no token allowed by {self._what()} has non-zero probability")
        w = np.exp(lp - top)
        j = _draw(w / w.sum(), rng)
        return self._token(j if idx is None else int(idx[j]))

    async def log_prob(self, value):
        i = self._token_id(value)
        if not self._restricted():
            lp = await self._logprobs()
            return float(lp[i]) if 0 <= i < len(lp) else -math.inf
        _, log_p_forced, mask, lp = await self._view()
        if not 0 <= i < len(lp) or (mask is not None and not mask[i]):
            return -math.inf
        return log_p_forced + float(lp[i])

    def _commit(self, value):
        self._check_current()
        forced = self._state.forced() if self._state is not None else ()
        for t in forced:
            self.context._append(t)
        self.context._append(self._token_id(value))

    def _what(self) -> str:
        parts = []
        if self._state is not None:
            parts.append(f"the context's constraint {self._state!r}")
        return " and ".join(parts) or "the model"

    def where(self, constraint) -> "ConditionedNextToken":
        """The next-token distribution restricted to tokens allowed by
        ``constraint`` (a :class:`ppl.TokenConstraint`, a boolean mask over the
        vocabulary, or a predicate on the token's text): the measure
        ``p(x) 1[x allowed]``, of mass ``p(allowed)``."""
        return ConditionedNextToken(self.context, constraint)

    mask = where

    def where_checked(self, predicate, **options):
        """The next-token distribution restricted to tokens ``x`` for which
        ``predicate(text + text(x))`` holds, ``text`` being everything generated
        so far: the measure ``p(x) 1[predicate(...)]``. Sampled by adaptive
        weighted rejection sampling (AWRS), which checks only the tokens it
        draws; see :class:`ppl.constraints.CheckedNextToken`."""
        from .constraints.awrs import CheckedNextToken

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
        from .constraints import as_token_constraint

        self.constraint = as_token_constraint(constraint)
        self._allowed = self.constraint.mask(context.lm)

    def _static_mask(self):
        return self._allowed

    def _what(self) -> str:
        rest = super()._what()
        return f"{self.constraint!r}" + ("" if rest == "the model" else f" and {rest}")

    def where(self, constraint) -> "ConditionedNextToken":
        from .constraints import as_token_constraint

        return ConditionedNextToken(
            self.context, self.constraint & as_token_constraint(constraint)
        )

    mask = where

    def __repr__(self):
        return f"NextToken({self.context!r}).where({self.constraint!r})"
