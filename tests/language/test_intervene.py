"""``intervene(dist, value)``: a value forced into the generative process, not
weighted. A forced token changes what follows (the target is
``p(rest | forced)`` with the forced token in the text), never the weight;
``observe`` of the same token would weigh by its probability instead."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from support.exact import exact_target
from support.stats import check_mean, check_posterior
from support.toy_programs import EOS, LACKS_C, MAX_LEN, A, B, C, toy_lm, toy_next_probs

import ppl


class ForcedStart(ppl.Model):
    """"b" forced first, then free tokens with a factor per "a"."""

    def __init__(self, lm, how="intervene"):
        super().__init__()
        self.ctx, self.how = lm.context(""), how

    async def start(self):
        await getattr(self, self.how)(self.ctx.next_token(), B)

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        self.factor(0.5 * (tok.text == "a"))
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            self.finish()


@ppl.program
async def forced_start_fn(lm):
    ctx = lm.context("")
    await ppl.intervene(ctx.next_token(), B)
    while True:
        tok = await ppl.sample(ctx.next_token())
        ppl.factor(0.5 * (tok.text == "a"))
        if tok.is_eos or len(ctx) == MAX_LEN:
            return ctx.text


def forced_start_exact(lm):
    """``gamma(b rest) = p(rest | b) exp(0.5 #a(rest))``: no ``p(b)``."""
    return exact_target(lm, MAX_LEN - 1, lambda s: 0.5 * s.count(A), key=lambda s: "b" + lm.decode(s),
                        prompt_ids=(B,))


class ForceCAfterA(ppl.Model):
    """Lipogram tokens (no "c" drawn), but every "a" is followed by a forced "c"."""

    def __init__(self, lm):
        super().__init__()
        self.ctx = lm.context("")

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(LACKS_C))
        if tok.text == "a":
            await self.intervene(self.ctx.next_token(), C)
        if tok.is_eos or len(self.ctx) >= MAX_LEN:
            self.finish()


@ppl.program
async def force_c_after_a_fn(lm):
    ctx = lm.context("")
    while True:
        tok = await ppl.sample(ctx.next_token().where(LACKS_C))
        if tok.text == "a":
            await ppl.intervene(ctx.next_token(), C)
        if tok.is_eos or len(ctx) >= MAX_LEN:
            return ctx.text


def force_c_after_a_exact():
    """By enumeration of the generative process: each drawn token ``t`` (not
    "c") contributes ``p(t | prefix)`` (``p(no c)`` for the mass times
    ``p(t)/p(no c)`` for the draw); a forced "c" contributes 1."""
    weights = {}

    def walk(prefix, gamma):
        if (prefix and prefix[-1] == EOS) or len(prefix) >= MAX_LEN:
            text = "".join("abc"[t] for t in prefix if t != EOS)
            weights[text] = weights.get(text, 0.0) + gamma
            return
        probs = toy_next_probs(prefix)
        for t in (A, B, EOS):
            walk(prefix + ((t, C) if t == A else (t,)), gamma * probs[t])

    walk((), 1.0)
    Z = sum(weights.values())
    return Z, {k: w / Z for k, w in weights.items()}


def _key(particle):
    if particle.dead:
        return None
    return particle.ctx.text if isinstance(particle, ppl.Model) and hasattr(particle, "ctx") else particle.value


def _runs(program, lm, runs=150, **options):
    out = []
    for m in range(runs):
        r = ppl.infer(program(lm), method="steer", n_particles=6, expand=3, seed=30_000 + m, **options)
        out.append((math.exp(r.log_Z), r.posterior(key=_key)))
    return out


@pytest.mark.parametrize("program,exact", [(ForcedStart, forced_start_exact), (forced_start_fn, forced_start_exact),
                                           (ForceCAfterA, lambda lm: force_c_after_a_exact()),
                                           (force_c_after_a_fn, lambda lm: force_c_after_a_exact())],
                         ids=["start-class", "start-fn", "after-a-class", "after-a-fn"])
def test_intervened_programs_have_the_exact_target(program, exact):
    lm = toy_lm()
    Z, posterior = exact(lm)
    runs = _runs(program, lm)
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, posterior, 6)


@pytest.mark.parametrize("cls,fn", [(ForcedStart, forced_start_fn), (ForceCAfterA, force_c_after_a_fn)])
@pytest.mark.parametrize("method,options", [("steer", {"expand": 3}), ("smc", {"ess_threshold": 0.8})])
def test_class_and_function_forms_agree_run_for_run(cls, fn, method, options):
    """Clones replay the interventions; an intervention is no step of its own."""
    lm = toy_lm()
    for seed in range(4):
        a = ppl.infer(cls(lm), method=method, n_particles=4, seed=seed, **options)
        b = ppl.infer(fn(lm), method=method, n_particles=4, seed=seed, **options)
        assert [_key(p) for p in a.particles] == [_key(p) for p in b.particles]
        assert np.array_equal(a.log_weights, b.log_weights)
        assert (a.log_Z, a.n_steps, a.resampled_at) == (b.log_Z, b.n_steps, b.resampled_at)


def test_observe_weighs_what_intervene_forces():
    """Run for run (one particle: the same seed gives the same draws; with
    several, the order in which particles take draws from the shared generator
    follows the model's waits, which ``observe`` adds), observing the forced
    "b" instead multiplies the weight by ``p(b)``, and only that."""
    lm = toy_lm()
    log_p_b = math.log(toy_next_probs(())[B])
    texts = set()
    for seed in range(12):
        forced = ppl.infer(ForcedStart(lm), method="is", n_particles=1, seed=seed)
        observed = ppl.infer(ForcedStart(lm, how="observe"), method="is", n_particles=1, seed=seed)
        assert forced.particles[0].ctx.text == observed.particles[0].ctx.text
        assert forced.particles[0].ctx.text.startswith("b")
        assert observed.log_Z == pytest.approx(forced.log_Z + log_p_b, abs=1e-12)
        texts.add(forced.particles[0].ctx.text)
    assert len(texts) > 3  # the seeds explored several texts


def test_intervening_a_text_leaves_the_weight_alone():
    class ForcedText(ppl.Model):
        def __init__(self, lm):
            super().__init__()
            self.ctx = lm.context("")

        async def start(self):
            forced = await self.intervene(ppl.TextContinuation(self.ctx), "ab")
            assert forced == "ab"

        async def step(self):
            tok = await self.sample(self.ctx.next_token())
            if tok.is_eos or len(self.ctx) == MAX_LEN:
                self.finish()

    r = ppl.infer(ForcedText(toy_lm()), method="is", n_particles=8, seed=0)
    assert all(p.ctx.text.startswith("ab") for p in r.particles)
    assert np.array_equal(r.log_weights, np.zeros(8))  # unconstrained draws weigh 1; the forced text too
    assert r.log_Z == 0.0


def test_replay_checks_the_forced_value(replay_cloning):
    calls = {"n": 0}

    @ppl.program
    async def flaky(lm):
        calls["n"] += 1
        ctx = lm.context("")
        await ppl.intervene(ctx.next_token(), A if calls["n"] <= 4 else B)  # replays force another token
        for _ in range(3):
            await ppl.sample(ctx.next_token())
        return ctx.text

    lm = ppl.ToyLM(["a", "b", "<eos>"], lambda p: [0.5, 0.5, 0.0])
    with pytest.raises(ppl.InferenceError, match=r"diverged at primitive #1: the original run called "
                       r"intervene.*\(value 0\).*\(value 1\).*deterministic"):
        ppl.infer(flaky(lm), method="steer", n_particles=2, expand=2, seed=0)


def test_intervene_errors():
    lm = toy_lm()
    ctx = lm.context("")
    with pytest.raises(ppl.ModelError, match=r"ppl.intervene\(\) was called outside a running step"):
        asyncio.run(ppl.intervene(ctx.next_token(), A))

    class BadValue(ppl.Model):
        def __init__(self, lm):
            super().__init__()
            self.ctx = lm.context("")

        async def step(self):
            await self.intervene(self.ctx.next_token(), "a")
            self.finish()

    with pytest.raises(ppl.InferenceError, match=r"value must be a Token or a token id, got 'a'"):
        ppl.infer(BadValue(lm), method="is", n_particles=1, seed=0)
