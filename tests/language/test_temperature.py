"""``ctx.next_token(temperature=T)``: a tempered proposal, the same target.

Sampling draws ``x ~ q ∝ p^(1/T)`` and multiplies the weight by ``p(x)/q(x)``,
so ``Z_hat`` stays unbiased and the posterior is the untempered one; checked
against exact enumeration with tolerances from the number of runs.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from support.stats import check_mean, check_posterior
from support.toy_programs import LACKS_C, Lipogram, Scored, toy_lm

import ppl
from ppl.errors import ArgumentError

M = 200




class TemperedLipogram(Lipogram):
    T = 0.5

    async def step(self):
        tok = await self.sample(self.ctx.next_token(temperature=self.T).where(LACKS_C))
        if tok.is_eos or len(self.ctx) == 4:
            self.finish()


class HotLipogram(TemperedLipogram):
    T = 2.5


class TemperedScored(Scored):
    async def step(self):
        tok = await self.sample(self.ctx.next_token(temperature=0.6))
        self.factor(0.5 * (tok.text == "a"))
        if tok.is_eos or len(self.ctx) == 4:
            text = self.ctx.text
            self.condition("cc" not in text)
            await self.observe(ppl.Bernoulli(0.7), len(text) % 2 == 0)
            self.finish()


@ppl.program
async def tempered_lipogram_fn(lm):
    ctx = lm.context("")
    while True:
        tok = await ppl.sample(ctx.next_token(temperature=0.5).where(LACKS_C))
        if tok.is_eos or len(ctx) == 4:
            return ctx.text


tempered_lipogram_fn.exact = Lipogram.exact


def _key(p):
    return p.key() if hasattr(p, "key") else p.value


@pytest.mark.parametrize("program", [TemperedLipogram, HotLipogram, TemperedScored, tempered_lipogram_fn],
                         ids=["lipogram-T0.5", "lipogram-T2.5", "scored-T0.6", "lipogram-fn-T0.5"])
@pytest.mark.parametrize("method,kw", [("is", {"n_particles": 4}), ("steer", {"n_particles": 4, "expand": 3})],
                         ids=["is", "steer"])
def test_the_target_is_exact(program, method, kw):
    lm = toy_lm()
    Z, exact = program.exact(lm)
    runs = []
    for m in range(M):
        r = ppl.infer(program(lm), method=method, seed=20_000 + m, **kw)
        runs.append((math.exp(r.log_Z), r.posterior(key=_key)))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, exact, kw["n_particles"])


def test_one_draw_is_weighted_by_p_over_q():
    lm = toy_lm()
    T = 0.4

    class One(ppl.Model):
        def __init__(self, lm):
            super().__init__()
            self.ctx = lm.context("")

        async def step(self):
            await self.sample(self.ctx.next_token(temperature=T))
            self.finish()

    p = np.exp(lm.batch_next_token_logprobs([()])[0])
    q = p ** (1 / T) / (p ** (1 / T)).sum()
    r = ppl.infer(One(lm), method="is", n_particles=50, seed=0)
    for particle, lw in zip(r.particles, r.log_weights):
        x = particle.ctx.token_ids[0]
        assert lw == pytest.approx(math.log(p[x] / q[x]), abs=1e-12)


def test_temperature_changes_the_draws_not_the_measure():
    lm = toy_lm()

    async def go():
        ctx = lm.context("")
        cold, plain = ctx.next_token(temperature=0.3), ctx.next_token()
        assert await cold.log_prob(1) == await plain.log_prob(1)
        assert await cold.where(LACKS_C).log_mass() == await plain.where(LACKS_C).log_mass()
        assert cold.signature() != plain.signature()  # a replay notices a changed temperature

    asyncio.run(go())


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, "hot"])
def test_bad_temperatures(bad):
    with pytest.raises(ArgumentError, match="temperature must be a number > 0"):
        toy_lm().context("").next_token(temperature=bad)


def test_where_checked_takes_no_temperature():
    with pytest.raises(ArgumentError, match="where_checked\\(\\) .* takes no temperature"):
        toy_lm().context("").next_token(temperature=0.5).where_checked(lambda t: True)
