"""Submodels (``self.call(sub)``, ``ppl.call(sub)``, ``ppl.Submodel``): a
piece of a step whose primitives act on the calling particle. A program that
uses one is the same Feynman-Kac model as the program with the body written
inline: same exact target, and the same particles, weights and ``log Z`` run
for run with the same seed, in the class and the function forms."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from support.stats import check_mean, check_posterior
from support.toy_programs import (
    MAX_LEN,
    Ending,
    Scored,
    ScoredNested,
    ScoredToken,
    scored_call_fn,
    scored_fn,
    scored_nested_fn,
    toy_lm,
)

import ppl


class ScoredWithSubmodels(Scored):
    """Scored, its step a submodel call plus the caller's own code."""

    async def step(self):
        tok = await self.call(ScoredToken(self.ctx))
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            await self.call(Ending(self.ctx))
            self.finish()


class ScoredHeldSubmodel(Scored):
    """A submodel kept as an attribute across steps: cloning copies it with the
    context it holds (one deepcopy, so it holds the clone's own context)."""

    def __init__(self, lm):
        super().__init__(lm)
        self.scorer = ScoredToken(self.ctx)

    async def step(self):
        tok = await self.call(self.scorer)
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            await self.call(Ending(self.ctx))
            self.finish()


@ppl.program
async def scored_token_fn(ctx):
    """ScoredToken as a @ppl.program body, called as a submodel."""
    tok = await ppl.sample(ctx.next_token())
    ppl.factor(0.5 * (tok.text == "a"))
    return tok


@ppl.program
async def scored_program_sub_fn(lm):
    ctx = lm.context("")
    while True:
        # a call is a step block: a second call in the same step needs an enclosing block
        async with ppl.step():
            tok = await ppl.call(scored_token_fn(ctx))
            if tok.is_eos or len(ctx) == MAX_LEN:
                text = await ppl.call(Ending(ctx).forward())  # a coroutine is accepted too
        if tok.is_eos or len(ctx) == MAX_LEN:
            return text


async def _plain_helper(ctx):
    """An ordinary async helper: its primitives act on the running particle."""
    tok = await ppl.sample(ctx.next_token())
    ppl.factor(0.5 * (tok.text == "a"))
    return tok


@ppl.program
async def scored_helper_fn(lm):
    ctx = lm.context("")
    while True:
        tok = await _plain_helper(ctx)
        if tok.is_eos or len(ctx) == MAX_LEN:
            text = ctx.text
            ppl.condition("cc" not in text)
            await ppl.observe(ppl.Bernoulli(0.7), len(text) % 2 == 0)
            return text


class ScoredProgramSub(Scored):
    """A @ppl.program body called from a class's step."""

    async def step(self):
        tok = await self.call(scored_token_fn(self.ctx))
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            await self.call(Ending(self.ctx))
            self.finish()


FORMS = [ScoredWithSubmodels, ScoredNested, ScoredHeldSubmodel, ScoredProgramSub,
         scored_call_fn, scored_nested_fn, scored_program_sub_fn, scored_helper_fn]
IDS = ["class-call", "class-nested", "class-held", "class-program-sub",
       "fn-call", "fn-nested", "fn-program-sub", "fn-plain-helper"]


def _key(particle):
    if particle.dead:
        return None  # a dead function particle has no value; a dead class one still has its text
    return particle.ctx.text if isinstance(particle, ppl.Model) and hasattr(particle, "ctx") else particle.value


def _same_run(a, b):
    assert [_key(p) for p in a.particles] == [_key(p) for p in b.particles]
    assert np.array_equal(a.log_weights, b.log_weights)
    assert a.log_Z == b.log_Z
    assert a.n_steps == b.n_steps
    assert a.resampled_at == b.resampled_at


@pytest.mark.parametrize("form", FORMS, ids=IDS)
@pytest.mark.parametrize("method,options", [("steer", {"n_particles": 4, "expand": 3}),
                                            ("smc", {"n_particles": 4, "ess_threshold": 0.8})])
def test_submodel_programs_equal_the_inline_program_run_for_run(form, method, options):
    lm = toy_lm()
    for seed in range(4):
        inline = ppl.infer(Scored(lm), method=method, seed=seed, **options)
        inline_fn = ppl.infer(scored_fn(lm), method=method, seed=seed, **options)
        with_sub = ppl.infer(form(lm), method=method, seed=seed, **options)
        _same_run(inline, with_sub)
        _same_run(inline_fn, with_sub)


M = 150  # runs for the exact checks


@pytest.mark.parametrize("form", [ScoredNested, scored_call_fn], ids=["class-nested", "fn-call"])
def test_submodel_program_has_the_exact_target(form):
    """Against enumeration: Z and the posterior of Scored's target."""
    lm = toy_lm()
    Z, exact = Scored.exact(lm)
    runs = []
    for m in range(M):
        r = ppl.infer(form(lm), method="steer", n_particles=6, expand=3, seed=20_000 + m)
        runs.append((math.exp(r.log_Z), r.posterior(key=_key)))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, exact, 6)


class TwoTokens(ppl.Submodel):
    """Two token primitives: one step inside a call, two without it."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def forward(self):
        t1 = await self.sample(self.ctx.next_token().where(ppl.not_eos()))
        self.factor(-0.5 * (t1.text == "a"))
        return await self.sample(self.ctx.next_token())


def test_a_call_is_one_step_in_both_forms():
    class Twice(ppl.Model):
        def __init__(self, lm):
            super().__init__()
            self.ctx = lm.context("")

        async def step(self):
            t2 = await self.call(TwoTokens(self.ctx))
            if t2.is_eos or len(self.ctx) >= 4:
                self.finish()

    @ppl.program
    async def twice(lm, grouped=True):
        ctx = lm.context("")
        while True:
            sub = TwoTokens(ctx)
            t2 = await (ppl.call(sub) if grouped else sub.forward())
            if t2.is_eos or len(ctx) >= 4:
                return ctx.text

    lm = toy_lm()
    for seed in range(3):
        r_class = ppl.infer(Twice(lm), method="steer", n_particles=4, expand=3, seed=seed)
        r_fn = ppl.infer(twice(lm), method="steer", n_particles=4, expand=3, seed=seed)
        assert [p.ctx.text for p in r_class.particles] == [p.value for p in r_fn.particles]
        assert np.array_equal(r_class.log_weights, r_fn.log_weights)
        assert r_class.n_steps == r_fn.n_steps == 2
    # awaited without ppl.call, each of its token primitives is a step of its own
    r_plain = ppl.infer(twice(lm, grouped=False), method="smc", n_particles=2, seed=0, ess_threshold=0.0)
    assert r_plain.n_steps == 4


def test_call_errors():
    lm = toy_lm()
    with pytest.raises(ppl.ModelError, match=r"ppl.call\(\) was called outside a running step"):
        asyncio.run(ppl.call(ScoredToken(lm.context(""))))
    with pytest.raises(ppl.ModelError, match=r"outside a running step"):
        asyncio.run(ScoredToken(lm.context("")).forward())

    class Bad(ppl.Model):
        def __init__(self, lm, what):
            super().__init__()
            self.ctx, self.what = lm.context(""), what

        async def step(self):
            await self.call(self.what)
            self.finish()

    with pytest.raises(ppl.InferenceError, match=r"takes a ppl.Submodel instance.*got 3 \(int\)"):
        ppl.infer(Bad(lm, 3), method="is", n_particles=1, seed=0)
    with pytest.raises(ppl.InferenceError, match=r"got the class ScoredToken; call it with an instance"):
        ppl.infer(Bad(lm, ScoredToken), method="is", n_particles=1, seed=0)

    class NoForward(ppl.Submodel):
        pass

    with pytest.raises(ppl.InferenceError, match=r"NoForward must define `async def forward\(self\)`"):
        ppl.infer(Bad(lm, NoForward()), method="is", n_particles=1, seed=0)

    with pytest.raises(ppl.InferenceError, match=r"Scored.call\(\) was called outside this particle's running step"):
        ppl.infer(Bad(lm, Borrowed(lm)), method="is", n_particles=1, seed=0)


class Borrowed(ppl.Submodel):
    """Calls another particle's ``call``: not the running particle."""

    def __init__(self, lm):
        self.other = Scored(lm)

    async def forward(self):
        await self.other.call(ScoredToken(self.other.ctx))


def test_a_submodel_kills_its_caller():
    class Dies(ppl.Submodel):
        async def forward(self):
            self.condition(False)

    class Caller(ppl.Model):
        async def step(self):
            await self.call(Dies())
            self.finish()

    r = ppl.infer(Caller(), method="is", n_particles=2, seed=0)
    assert r.log_Z == -math.inf
    assert all(p.dead and p.death.kind == "condition" for p in r.particles)
