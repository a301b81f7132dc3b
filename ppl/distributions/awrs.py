"""Expensive boolean constraints on the whole text: adaptive weighted rejection
sampling (AWRS; Lipkin et al., 2025, "Fast Controlled Generation from Language
Models with Adaptive Weighted Rejection Sampling").

``ctx.next_token().where_checked(pred)`` denotes the measure

    mu(x) = p(x) 1[pred(text + text(x))]          (EOS: 1[pred(text)])

whose mass ``Z = p(A)``, ``A = {x : pred(...)}``, would need ``|V|`` predicate
calls to compute exactly. AWRS instead draws tokens from ``q = p / |p|``
*without replacement* (Gumbel-top-k: the order of ``log q(x) + G_x``, ``G_x``
i.i.d. Gumbel), checks them one at a time, and returns the first accepted
token ``x`` (which is then exactly a draw from ``q(. | A)``) with the weight

    w = |p| * ( q(x) + T * 1[y in A] )

where ``T`` is the ``q``-mass of the tokens after ``x`` in the draw order and
``y`` the token right after ``x`` (``T = 0`` if there is none). So AWRS makes
one predicate call per rejected token plus two.

Why it is unbiased: write ``R`` for the mass rejected before ``x``. Each
rejected token ``r`` contributes the exact factor ``1 - q(r)/(1 - R_r)`` (it
is not in ``A``, so ``Z`` restricted to the rest, renormalised, is ``Z``
divided by that factor), and the product of those factors telescopes to
``1 - R``. At the accepted ``x``, ``Z/(1 - R) = q'(x) + (1 - q'(x)) Z''``
with ``q'(x) = q(x)/(1-R)`` and ``Z''`` the allowed mass of the rest,
renormalised; ``1[y in A]`` (``y`` is a fresh draw from the rest) is an
unbiased estimate of ``Z''``. Multiplying out gives ``w`` above, and
``E[w f(x)] = sum_{x in A} p(x) f(x)`` for every ``f`` (the AWRS tests check it by enumerating every draw order on a toy vocabulary).

**Protocol.** The primitives ask a distribution for ``log_mass()`` and then
``sample(rng)``; AWRS can only estimate its mass while drawing. So
:meth:`CheckedNextToken.propose` does both at once (the ``Distribution``
protocol's ``propose(rng) -> (value, log_w)``), and, for the primitives that
call ``log_mass()`` then ``sample()``, ``log_mass()`` performs the draw with the
running particle's random generator and returns the estimate, and the
following ``sample()`` returns the token drawn. Do not use it as a
``proposal=``: its density is unknown.
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any, Callable

import numpy as np

from ..errors import ModelError
from ..running import current_rng
from ..runtime.resampling import logsumexp
from .base import Distribution

__all__ = ["CheckedNextToken", "awrs", "awrs_draw"]


def _order(keys: np.ndarray, k: int = 64):
    """Indices of ``keys`` in decreasing order, finite keys only, lazily:
    the top ``k`` first, the full sort only if the walk goes past them."""
    n = len(keys)
    k = min(k, n)
    top = np.argpartition(-keys, k - 1)[:k] if k < n else np.arange(n)
    top = top[np.argsort(-keys[top], kind="stable")]
    for i in top:
        if keys[i] == -np.inf:
            return
        yield int(i)
    if k < n:
        rest = np.argsort(-keys, kind="stable")[k:]
        for i in rest:
            if keys[i] == -np.inf:
                return
            yield int(i)


def awrs_draw(
    log_q: np.ndarray, accept: Callable[[int], bool], rng: np.random.Generator
) -> tuple[int | None, float, int]:
    """One AWRS draw from the normalised ``log_q`` restricted to ``accept``.

    Returns ``(x, log_w, evaluations)``: ``x`` the first accepted token in a
    without-replacement order (``None`` if every token with ``q > 0`` is
    rejected), ``log_w`` the log of the unbiased estimate
    ``q(x) + T 1[y accepted]`` of ``q(A)`` (``-inf`` if nothing is accepted),
    and the number of ``accept`` calls made."""
    log_q = np.asarray(log_q, dtype=np.float64)
    keys = log_q + rng.gumbel(size=log_q.shape)
    keys[log_q == -np.inf] = -np.inf
    order = _order(keys)
    seen: list[int] = []
    evaluations = 0
    for x in order:
        seen.append(x)
        evaluations += 1
        if not accept(x):
            continue
        y = next(order, None)
        q_x = math.exp(log_q[x])
        if y is None:
            return x, math.log(q_x), evaluations
        evaluations += 1
        if not accept(y):
            return x, math.log(q_x), evaluations
        # T: the mass after x = everything not seen up to x (y included)
        q = np.exp(log_q)
        q[seen] = 0.0
        tail = float(q.sum())
        return x, math.log(q_x + tail), evaluations
    return None, -math.inf, evaluations


class CheckedNextToken(Distribution):
    """``p(x) 1[pred(text + text(x))]`` on a context, sampled by AWRS (see the
    module docstring). Created by ``ctx.next_token().where_checked(pred)``.

    It wraps a next-token distribution ``base`` (composition): the model
    side, any token mask (``.where(...)``) and the context's constraint come
    from ``base``, and AWRS draws from that restricted measure. ``pred``
    gets the whole generated text (prompt excluded) with the candidate
    token's text appended, and returns a truth value; for EOS it gets the
    text as it is. ``evaluations`` counts the calls made.
    """

    extends_context = True

    def __init__(self, base, predicate: Callable[[str], bool], *, name: str | None = None):
        if not getattr(base, "extends_context", False) or not hasattr(base, "view"):
            raise ModelError(f"where_checked() applies to a next-token distribution, got {base!r}")
        if not callable(predicate):
            raise ModelError(f"where_checked() needs a predicate on the text, got {predicate!r}")
        if inspect.iscoroutinefunction(predicate):
            raise ModelError("where_checked() needs a synchronous predicate (it is called once per drawn token)")
        self.base = base
        self.predicate = predicate
        self.name = name or getattr(predicate, "__name__", "predicate")
        self.evaluations = 0
        self._checked: dict[int, bool] = {}
        self._drawn: tuple[Any, float] | None = None

    def __deepcopy__(self, memo):
        # its base is bound to a context: follow the cloned handle; the
        # predicate's verdicts are per prefix and stay valid
        new = object.__new__(CheckedNextToken)
        new.__dict__.update(self.__dict__)
        new.base = copy.deepcopy(self.base, memo)
        new._checked = dict(self._checked)
        return new

    @property
    def context(self):
        return self.base.context

    # -- the predicate on texts ------------------------------------------------------
    def _accept_fn(self, forced):
        lm = self.context.lm
        vb = lm.vocab_bytes
        head = b"".join(vb[t] for t in list(self.context.token_ids) + list(forced))
        eos = lm.eos_token_id

        def accept(t: int) -> bool:
            hit = self._checked.get(t)
            if hit is None:
                data = head if t == eos else head + vb[t]
                hit = bool(self.predicate(data.decode("utf-8", errors="replace")))
                self.evaluations += 1
                self._checked[t] = hit
            return hit

        return accept

    # -- the Distribution protocol ---------------------------------------------------
    async def propose(self, rng):
        forced = (await self.base.view()).forced
        log_p_forced, lp = await self.base.masked_logprobs()
        log_Z = logsumexp(lp)
        if log_Z == -math.inf:
            return None, -math.inf
        x, log_est, _ = awrs_draw(lp - log_Z, self._accept_fn(forced), rng)
        if x is None:
            return None, -math.inf
        return self.base.token(x), log_p_forced + log_Z + log_est

    async def log_mass(self):
        """Draws (with the running particle's generator) and returns the log of
        the unbiased mass estimate; the next :meth:`sample` returns the draw."""
        token, log_w = await self.propose(current_rng("sampling a where_checked() distribution"))
        self._drawn = (token, log_w)
        return log_w

    async def sample(self, rng):
        if self._drawn is None:
            raise ModelError(
                "a where_checked() distribution is sampled by AWRS together with its "
                "weight: use it as `sample(dist)` (or call propose(rng)), not as a proposal"
            )
        token, _ = self._drawn
        self._drawn = None
        if token is None:
            raise ModelError(f"no token satisfies {self!r}")
        return token

    async def log_prob(self, value):
        i = self.base.token_id(value)
        forced = (await self.base.view()).forced
        lp = await self.base.log_prob(i)
        if lp == -math.inf:
            return lp
        return lp if self._accept_fn(forced)(i) else -math.inf

    def _commit(self, value):
        self.base._commit(value)

    def signature(self) -> tuple:
        return ("checked",) + self.base.signature() + (self.name,)

    def where(self, constraint) -> "CheckedNextToken":
        """The base restricted by a token constraint, still checked by ``pred``."""
        return CheckedNextToken(self.base.where(constraint), self.predicate, name=self.name)

    mask = where

    def where_checked(self, predicate, **options) -> "CheckedNextToken":
        both = lambda text: bool(self.predicate(text)) and bool(predicate(text))  # noqa: E731
        return CheckedNextToken(self.base, both, name=f"{self.name} & {getattr(predicate, '__name__', 'predicate')}")

    def __repr__(self):
        return f"{self.base!r}.where_checked({self.name})"


def awrs(dist, predicate: Callable[[str], bool], **options) -> CheckedNextToken:
    """``awrs(ctx.next_token(), pred)`` is ``ctx.next_token().where_checked(pred)``."""
    return CheckedNextToken(dist, predicate, **options)
