"""Prefix/complete potentials (``ppl.potential(fn, prefix=g)`` applied with
``apply_potential``): the target is ``p(x) phi(x)`` whatever the prefix score
``g`` is, in the class and function forms, under every algorithm; checked
against enumeration on the toy LM."""

from __future__ import annotations

import math

import pytest
from support.exact import exact_target
from support.stats import check_mean, check_posterior
from support.toy_programs import EOS, MAX_LEN, VOCAB, toy_lm

import ppl
from ppl.errors import ArgumentTypeError

M = 80


def _text(s) -> str:
    return "".join(VOCAB[t] for t in s if t != EOS)


def phi(text: str) -> float:
    """A soft preference for the finished text: "b"s are good, length is bad."""
    return 0.8 * text.count("b") - 0.5 * len(text)


#: complete score phi, and a prefix score that is a rough guess of it
PREFERENCE = ppl.potential(phi, prefix=lambda text: 0.8 * text.count("b"))


class Preferred(ppl.Model):
    def __init__(self, lm, pot=PREFERENCE):
        super().__init__()
        self.ctx, self.pot = lm.context(""), pot

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        done = tok.is_eos or len(self.ctx) == MAX_LEN
        await self.apply_potential(self.pot, self.ctx, finished=done)
        if done:
            self.finish()

    def key(self):
        return self.ctx.text


@ppl.program
async def preferred(lm, pot=PREFERENCE):
    ctx = lm.context("")
    while True:
        tok = await ppl.sample(ctx.next_token())
        done = tok.is_eos or len(ctx) == MAX_LEN
        await ppl.apply_potential(pot, ctx, finished=done)
        if done:
            return ctx.text


def _exact():
    return exact_target(toy_lm(), MAX_LEN, lambda s: phi(_text(s)), key=_text)


@pytest.mark.parametrize("method,kw", [("steer", {"expand": 3}), ("smc", {"ess_threshold": 1.0}), ("is", {})])
@pytest.mark.parametrize("form", ["class", "function"])
def test_the_target_is_p_times_phi(method, kw, form):
    Z, post = _exact()
    lm = toy_lm()
    runs = []
    for m in range(M):
        model = Preferred(lm) if form == "class" else preferred(lm)
        r = ppl.infer(model, method=method, n_particles=6, seed=4_000 + m, **kw)
        key = (lambda p: p.key()) if form == "class" else (lambda p: p.value)
        runs.append((math.exp(r.log_Z), r.posterior(key=key)))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, post, 6)


def test_class_and_function_forms_agree_run_for_run():
    lm = toy_lm()
    for seed in range(3):
        a = ppl.infer(Preferred(lm), n_particles=6, seed=seed)
        b = ppl.infer(preferred(lm), n_particles=6, seed=seed)
        assert [p.key() for p in a.particles] == [p.value for p in b.particles]
        assert a.log_weights == pytest.approx(b.log_weights) and a.log_Z == pytest.approx(b.log_Z)


def test_prefix_scores():
    import asyncio

    same = ppl.potential(phi, prefix=True)
    none = ppl.potential(phi)
    product = PREFERENCE * same * none
    assert asyncio.run(same.prefix_score("ab")) == phi("ab")
    assert asyncio.run(none.prefix_score("ab")) == 0.0 and not none.has_prefix
    assert asyncio.run(product.prefix_score("bb")) == pytest.approx(1.6 + phi("bb"))
    assert product.has_prefix
    with pytest.raises(ArgumentTypeError, match="prefix="):
        ppl.potential(phi, prefix="yes")


def test_the_prefix_twist_is_taken_back_at_the_end():
    """Importance sampling from the model: a finished particle's log weight is
    exactly phi of its text (the prefix twists were all taken back)."""
    r = ppl.infer(Preferred(toy_lm()), method="is", n_particles=20, seed=1)
    assert {p.ctx.text for p in r.particles} != {r.particles[0].ctx.text}  # several texts
    for p in r.particles:
        assert p.done and p.log_weight == pytest.approx(phi(p.ctx.text), abs=1e-12)
