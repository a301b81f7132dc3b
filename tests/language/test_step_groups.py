"""``async with ppl.step():``: several primitives in one SMC step, so that a
``@ppl.program`` function is the same Feynman-Kac model as its class form."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from support.gallery_helpers import load_example

import ppl

VOCAB = ["a", "b", "c", ".", "<eos>"]


def keyed_probs(prefix: tuple[int, ...]) -> np.ndarray:
    """A prefix-dependent next-token distribution (Dirichlet draws keyed by the prefix)."""
    seed = 3 + sum((t + 1) * 7**i for i, t in enumerate(prefix))
    return np.random.default_rng(seed).dirichlet(np.full(len(VOCAB), 1.5))


def toy() -> ppl.ToyLM:
    return ppl.ToyLM(VOCAB, keyed_probs)


def _forms(lm, n=5):
    cls = load_example("prompt_intersection").PromptIntersection
    fn = load_example("prompt_intersection_fn").intersect
    return cls(lm, "ab", "ba", n), fn(lm, "ab", "ba", n)


@pytest.mark.parametrize("method,options", [("steer", {"expand": 3}), ("smc", {"ess_threshold": 0.9}),
                                            ("is", {})])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prompt_intersection_class_and_function_agree_run_for_run(method, options, seed):
    lm = toy()
    class_form, fn_form = _forms(lm)
    r_class = ppl.infer(class_form, method=method, n_particles=6, seed=seed, **options)
    r_fn = ppl.infer(fn_form, method=method, n_particles=6, seed=seed, **options)
    assert [p.result_key() for p in r_class.particles] == [p.result_key() for p in r_fn.particles]
    assert np.array_equal(r_class.log_weights, r_fn.log_weights)
    assert r_class.log_Z == r_fn.log_Z
    assert r_class.n_steps == r_fn.n_steps
    assert r_class.resampled_at == r_fn.resampled_at


def test_without_the_block_every_token_primitive_is_a_step():
    @ppl.program
    async def ungrouped(lm, n=5):
        a, b = lm.context("ab"), lm.context("ba")
        for _ in range(n):
            tok = await ppl.sample(a.next_token())
            await ppl.observe(b.next_token(), tok)
            if tok.is_eos:
                break
        return a.text

    @ppl.program
    async def grouped(lm, n=5):
        a, b = lm.context("ab"), lm.context("ba")
        for _ in range(n):
            async with ppl.step():
                tok = await ppl.sample(a.next_token())
                await ppl.observe(b.next_token(), tok)
            if tok.is_eos:
                break
        return a.text

    lm = ppl.ToyLM(["a", "b", "<eos>"], lambda p: [0.45, 0.45, 0.1])
    r_un = ppl.infer(ungrouped(lm, 3), method="smc", n_particles=2, seed=0, ess_threshold=0.0)
    r_gr = ppl.infer(grouped(lm, 3), method="smc", n_particles=2, seed=0, ess_threshold=0.0)
    assert max(len(p.value) for p in r_gr.particles) == 3
    assert r_gr.n_steps == 3  # one step per token
    assert r_un.n_steps == 6  # the sample and the observe of a token are two steps


def test_nested_blocks_and_scores_stay_in_one_step():
    """Clones replay through blocks: steering with K > 1 from a grouped
    program equals the class form that does the same work in step()."""

    class Twice(ppl.Model):
        def __init__(self, lm):
            super().__init__()
            self.ctx = lm.context("")

        async def step(self):
            t1 = await self.sample(self.ctx.next_token().where(ppl.not_eos()))
            self.factor(-0.5 * (t1.text == "a"))
            t2 = await self.sample(self.ctx.next_token())
            if t2.is_eos or len(self.ctx) >= 4:
                self.finish()

    @ppl.program
    async def twice(lm):
        ctx = lm.context("")
        while True:
            async with ppl.step():
                t1 = await ppl.sample(ctx.next_token().where(ppl.not_eos()))
                async with ppl.step():  # nested: still the same step
                    ppl.factor(-0.5 * (t1.text == "a"))
                    t2 = await ppl.sample(ctx.next_token())
            if t2.is_eos or len(ctx) >= 4:
                return ctx.text

    lm = toy()
    for seed in range(3):
        r_class = ppl.infer(Twice(lm), method="steer", n_particles=4, expand=3, seed=seed)
        r_fn = ppl.infer(twice(lm), method="steer", n_particles=4, expand=3, seed=seed)
        assert [p.ctx.text for p in r_class.particles] == [p.value for p in r_fn.particles]
        assert np.array_equal(r_class.log_weights, r_fn.log_weights)


def test_step_outside_a_running_program():
    async def go():
        async with ppl.step():
            pass

    with pytest.raises(ppl.ModelError, match=r"ppl.step\(\) was called outside a running step"):
        asyncio.run(go())
