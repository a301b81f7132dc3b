"""AWRS (adaptive weighted rejection sampling) is properly weighted.

1. Exactly: on a small vocabulary every without-replacement draw order can be
   listed with its probability; the AWRS estimator is a deterministic function
   of the order, so ``E[w 1[x = t]]`` is a finite sum, which must equal
   ``q(t) 1[t in A]`` for every token ``t`` (proper weighting; summed over
   ``t`` it is unbiasedness of the mass estimate).
2. Statistically: the mean of ``exp(log_w)`` over seeded draws matches the
   allowed mass (z-test, se from the draws), and SMC with
   ``where_checked`` matches the exact ``Z`` and posterior of the program.
"""

from __future__ import annotations

import asyncio
import itertools
import math

import numpy as np
import pytest
from support.exact import exact_target
from support.stats import check_mean, check_posterior
from test_constraints import text_of, toy

import ppl
from ppl.distributions.awrs import awrs_draw

MAX_LEN = 4


class _FixedOrder:
    """A stand-in generator whose Gumbel noise puts the tokens in ``order``."""

    def __init__(self, order, log_q):
        self.order, self.log_q = order, log_q

    def gumbel(self, size):
        g = np.full(size, -1e9)
        for rank, t in enumerate(self.order):
            g[t] = -1000.0 * rank - self.log_q[t]
        return g


def exact_awrs_moments(q, allowed):
    """``(E[w 1[x=t]] for each t, E[evaluations])`` by listing every order."""
    q = np.asarray(q, dtype=np.float64)
    log_q = np.log(np.where(q > 0, q, 1.0))
    log_q[q == 0] = -np.inf
    support = [i for i in range(len(q)) if q[i] > 0]
    moment = np.zeros(len(q))
    evals = 0.0
    for order in itertools.permutations(support):
        prob, left = 1.0, 1.0
        for t in order:
            prob *= q[t] / left
            left -= q[t]
        x, log_w, n = awrs_draw(log_q, lambda t: bool(allowed[t]), _FixedOrder(order, log_q))
        evals += prob * n
        if x is not None:
            moment[x] += prob * math.exp(log_w)
    return moment, evals


@pytest.mark.parametrize(
    "allowed",
    [
        [1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 1, 0, 1, 0],
        [1, 0, 1, 0, 1],
        [0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1],
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proper_weighting_by_enumerating_every_order(allowed, seed):
    q = np.random.default_rng(seed).dirichlet([1.0] * 5)
    if seed == 2:
        q[3] = 0.0  # a zero-probability token is never drawn
        q /= q.sum()
    allowed = np.array(allowed, dtype=bool)
    moment, _ = exact_awrs_moments(q, allowed)
    np.testing.assert_allclose(moment, np.where(allowed, q, 0.0), rtol=1e-12, atol=1e-14)


def test_mean_weight_matches_the_allowed_mass():
    rng = np.random.default_rng(5)
    V = 200
    q = rng.dirichlet([0.3] * V)
    allowed = rng.uniform(size=V) < 0.3
    log_q = np.log(q)
    draws = [awrs_draw(log_q, lambda t: bool(allowed[t]), np.random.default_rng(1000 + m)) for m in range(4000)]
    check_mean([math.exp(w) for _, w, _ in draws], float(q[allowed].sum()), what="AWRS weight")
    # the accepted token is a draw from q(. | allowed): weighted frequencies
    # E[w 1[x=t]] = q(t) 1[t in A], checked on the five likeliest allowed tokens
    top = np.argsort(-np.where(allowed, q, 0))[:5]
    for t in top:
        check_mean([math.exp(w) * (x == t) for x, w, _ in draws], float(q[t]), alpha=1e-4 / 5, what=f"w 1[x={t}]")
    # far fewer checks than the vocabulary
    assert np.mean([n for _, _, n in draws]) < V / 4


def no_bb_at_most_two_a(text: str) -> bool:
    return "bb" not in text and text.count("a") <= 2


class Checked(ppl.Model):
    def __init__(self, lm):
        super().__init__()
        self.ctx = lm.context("")

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where_checked(no_bb_at_most_two_a))
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            self.finish()

    def key(self):
        return self.ctx.text


@ppl.program
async def checked_fn(lm):
    ctx = lm.context("")
    while True:
        tok = await ppl.sample(ppl.awrs(ctx.next_token(), no_bb_at_most_two_a))
        if tok.is_eos or len(ctx) == MAX_LEN:
            return ctx.text


def _key(p):
    return p.key() if hasattr(p, "key") else p.value


@pytest.mark.parametrize(
    "make,method,kw",
    [
        (Checked, "steer", {"n_particles": 6, "expand": 3}),
        (Checked, "smc", {"n_particles": 6, "ess_threshold": 1.0}),
        (checked_fn, "steer", {"n_particles": 6, "expand": 3}),
    ],
    ids=["class-steer", "class-smc", "decorated-steer"],
)
def test_smc_with_awrs_matches_exact_target(make, method, kw):
    """The predicate is prefix-closed, so the target is
    ``p(s) 1[pred(text(s))]`` over sequences cut at MAX_LEN or at EOS."""
    lm = toy()
    Z, post = exact_target(lm, MAX_LEN, lambda s: 0.0 if no_bb_at_most_two_a(text_of(s)) else -math.inf)
    assert 0.2 < Z < 0.95
    runs = []
    for m in range(200):
        r = ppl.infer(make(lm), method=method, seed=30_000 + m, **kw)
        runs.append((math.exp(r.log_Z), r.posterior(key=_key)))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, post, kw["n_particles"])


def test_awrs_on_a_constrained_context_and_observe():
    lm = toy()
    ctx = lm.context("", constraint=ppl.constraints.regex("(ab)+b?"))
    d = ctx.next_token().where_checked(lambda text: "b" in text or text == "a")

    async def go():
        tok, log_w = await d.propose(np.random.default_rng(0))
        return tok, log_w, await d.log_prob(2), await d.log_prob(0)

    tok, log_w, lp_ab, lp_a = asyncio.run(go())
    p = np.exp(lm.batch_next_token_logprobs([()])[0])
    assert tok.id in (0, 2)  # "a" or "ab": viable and passing
    assert lp_ab == pytest.approx(math.log(p[2])) and lp_a == pytest.approx(math.log(p[0]))
    assert d.evaluations <= 3


def test_awrs_refuses_to_be_a_proposal():
    lm = toy()
    d = lm.context("").next_token().where_checked(lambda t: True)
    with pytest.raises(ppl.ModelError, match="not as a proposal"):
        asyncio.run(d.sample(np.random.default_rng(0)))
