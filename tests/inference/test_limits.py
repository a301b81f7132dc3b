"""Step limits, result statuses, method defaults and option errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ppl
from ppl.errors import ArgumentError

METHODS = [("steer", {"expand": 2}), ("smc", {}), ("is", {})]


def flat_lm(vocab=("a", "b", "<eos>"), eos_p=0.0) -> ppl.ToyLM:
    n = len(vocab) - 1
    probs = [(1 - eos_p) / n] * n + [eos_p]
    return ppl.ToyLM(list(vocab), lambda prefix: probs)


class Forever(ppl.Model):
    """Never calls finish(): without a step limit it would never end."""

    def __init__(self, lm):
        super().__init__()
        self.ctx = lm.context("")

    async def step(self):
        await self.sample(self.ctx.next_token())


@ppl.program
async def forever_fn(lm):
    ctx = lm.context("")
    while True:
        await ppl.sample(ctx.next_token())


@ppl.program
async def two_tokens(lm):
    ctx = lm.context("")
    for _ in range(2):
        await ppl.sample(ctx.next_token())
    return ctx.text


@pytest.mark.parametrize("method,options", METHODS)
@pytest.mark.parametrize("program", [Forever, forever_fn])
def test_max_steps_stops_an_endless_program(program, method, options):
    r = ppl.infer(program(flat_lm()), method=method, n_particles=4, seed=0, max_steps=5, **options)
    assert r.status == "max_steps"
    assert r.n_steps == 5 and r.n_unfinished == 4
    assert r.settings["max_steps"] == 5
    assert r.describe_status() == "stopped at max_steps=5: 4 of 4 particles unfinished"
    assert math.isfinite(r.log_Z)
    assert r.detached().status == "max_steps"  # records keep `done`
    assert r.to_dict()["n_unfinished"] == 4


@pytest.mark.parametrize("method,options", METHODS)
def test_a_program_that_finishes_first_is_ok(method, options):
    r = ppl.infer(two_tokens(flat_lm()), method=method, n_particles=4, seed=0, max_steps=50, **options)
    assert r.status == "ok" and r.n_unfinished == 0 and r.n_steps == 2
    assert r.last_alive_step is None and r.last_alive_texts == []
    assert r.describe_status() == "finished after 2 steps"


def test_some_unfinished_are_counted():
    """Particles that drew EOS finish; the others are cut off at the limit."""
    class UntilEos(Forever):
        async def step(self):
            tok = await self.sample(self.ctx.next_token())
            if tok.is_eos:
                self.finish()

    r = ppl.infer(UntilEos(flat_lm(eos_p=0.5)), method="is", n_particles=40, seed=1, max_steps=2)
    unfinished = sum(not p.done for p in r.particles)
    assert r.status == "max_steps" and r.n_unfinished == unfinished
    assert 0 < unfinished < 40  # P(all or none of 40 finish within 2 steps) is below 1e-5


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True])
def test_max_steps_must_be_a_positive_int(bad):
    with pytest.raises(ArgumentError, match="max_steps must be an integer >= 1"):
        ppl.infer(two_tokens(flat_lm()), n_particles=2, max_steps=bad)


def test_expand_defaults_to_3():
    r = ppl.infer(two_tokens(flat_lm()), n_particles=8, seed=0)
    assert r.method == "smc_steer" and r.settings["expand"] == 3 and r.status == "ok"


def test_an_option_of_another_method_is_an_argument_error():
    with pytest.raises(ArgumentError, match=r"method 'smc' takes no option 'expand'; its options: "
                       r"ess_threshold=0.5, resampling='systematic', max_steps=None"):
        ppl.infer(two_tokens(flat_lm()), method="smc", n_particles=4, expand=3)
    with pytest.raises(ArgumentError, match=r"method 'is' takes no option 'ess_threshold'"):
        ppl.infer(two_tokens(flat_lm()), method="is", n_particles=4, ess_threshold=0.5)


def test_missing_n_particles_is_an_argument_error():
    with pytest.raises(ArgumentError, match=r"method 'steer'.*n_particles is required"):
        ppl.infer(two_tokens(flat_lm()))


def test_when_all_die_the_last_live_population_is_kept():
    """Every particle dies at step 3 (condition on the length): the result
    says that the last population with a live particle was the one after step
    2, and gives its texts."""

    class DiesAtThree(Forever):
        async def step(self):
            await self.sample(self.ctx.next_token())
            self.condition(len(self.ctx) < 3)

    for method, options in METHODS:
        r = ppl.infer(DiesAtThree(flat_lm()), method=method, n_particles=4, seed=0, **options)
        assert r.status == "all particles died" and r.n_steps == 3
        assert r.last_alive_step == 2
        assert len(r.last_alive_texts) == 4
        assert all(len(t) == 2 and set(t) <= {"a", "b"} for t in r.last_alive_texts)
        assert r.describe_status() == "all particles died (the last live one at step 3)"
        assert r.to_dict()["last_alive_texts"] == r.last_alive_texts


def test_dying_in_the_first_step():
    class DiesAtOnce(Forever):
        async def step(self):
            self.condition(False)

    r = ppl.infer(DiesAtOnce(flat_lm()), method="is", n_particles=3, seed=0)
    assert r.status == "all particles died" and r.last_alive_step == 0
    assert len(r.last_alive_texts) == 3  # the starting population (empty texts)


def test_map_passes_max_steps_through():
    lm = flat_lm()

    @ppl.program
    async def forever_from(lm, prompt):
        ctx = lm.context(prompt)
        while True:
            await ppl.sample(ctx.next_token())

    outcomes = sorted(ppl.map(forever_from, [{"prompt": "a"}, {"prompt": "b"}], lm=lm, n_particles=3,
                              expand=2, max_steps=4), key=lambda o: o.index)
    assert [o.status for o in outcomes] == ["max_steps", "max_steps"]
    assert all(o.result.n_steps == 4 for o in outcomes)


def test_smc_steer_takes_max_steps_directly():
    import asyncio

    r = asyncio.run(ppl.smc_steer(Forever(flat_lm()), 3, 2, max_steps=3, seed=0))
    assert r.status == "max_steps" and r.n_steps == 3
    np.testing.assert_array_equal(r.log_weights, [p.log_weight for p in r.particles])
