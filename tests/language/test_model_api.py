"""The modelling API: primitives, distributions, contexts, errors, results."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest
from ppl.runtime.scheduler import Scheduler
from support.toy_programs import Lipogram, Scored, toy_lm

import ppl


class Raises(ppl.Model):
    def __init__(self, at_step=2):
        super().__init__()
        self.at, self.n = at_step, 0

    async def step(self):
        self.n += 1
        if self.n == self.at:
            raise KeyError("boom")


def test_step_error_names_model_and_step():
    with pytest.raises(ppl.InferenceError, match=r"Raises raised KeyError at step 2: 'boom'") as e:
        ppl.infer(Raises(), method="steer", n_particles=3, expand=2, seed=0)
    assert isinstance(e.value.__cause__, KeyError)
    assert e.value.model == "Raises" and e.value.step == 2


@pytest.mark.parametrize("method,kw,match", [
    ("steer", {"n_particles": 0, "expand": 2}, "n_particles must be an integer >= 1"),
    ("steer", {"n_particles": 2, "expand": 0}, "expand must be an integer >= 1"),
    ("smc", {"n_particles": 2, "resampling": "nope"}, "valid names are: multinomial, residual, stratified, systematic"),
    ("smc", {"n_particles": 2, "ess_threshold": 2.0}, "ess_threshold must be"),
    ("is", {"n_particles": -1}, "n_particles must be"),
])
def test_bad_settings(method, kw, match):
    with pytest.raises(ValueError, match=match):
        ppl.infer(Lipogram(toy_lm()), method=method, **kw)


def test_unknown_method_and_non_model():
    with pytest.raises(ValueError, match="valid methods are: steer, smc, is"):
        ppl.infer(Lipogram(toy_lm()), method="beam", n_particles=2)
    with pytest.raises(TypeError, match="expected a steering program"):
        ppl.infer(object(), method="is", n_particles=2)


class NaNFactor(ppl.Model):
    async def step(self):
        self.factor(float("nan"))


def test_nan_weight_names_the_primitive():
    with pytest.raises(ppl.InferenceError, match=r"factor\(nan\) produced a log weight of nan") as e:
        ppl.infer(NaNFactor(), method="is", n_particles=2)
    assert isinstance(e.value.__cause__, ppl.WeightError)


def test_primitive_outside_a_program():
    m = Lipogram(toy_lm())
    with pytest.raises(ppl.ModelError, match="outside this particle's running step"):
        m.factor(1.0)
    with pytest.raises(ppl.ModelError, match="outside this particle's running step"):
        asyncio.run(m.sample(m.ctx.next_token()))


class Dies(ppl.Model):
    async def step(self):
        self.condition(False)
        raise AssertionError("a dead particle's step must stop at condition(False)")


@pytest.mark.parametrize("method,kw", [("steer", {"expand": 3}), ("smc", {}), ("is", {})])
def test_all_particles_die(method, kw):
    r = ppl.infer(Dies(), method=method, n_particles=4, seed=0, **kw)
    assert r.log_Z == -math.inf and r.status == "all particles died"
    assert len(r.particles) == 4 and all(p.dead for p in r.particles)
    assert not np.any(np.isnan(r.weights)) and r.weights.sum() == 0
    assert r.posterior() == {}
    d = json.loads(r.to_json())
    assert d["log_Z"] is None and d["status"] == "all particles died"
    with pytest.raises(ValueError, match="all died"):
        r.sample(1)


def test_impossible_constraint_kills_instead_of_crashing():
    class NoToken(ppl.Model):
        def __init__(self, lm):
            super().__init__()
            self.ctx = lm.context("")

        async def step(self):
            await self.sample(self.ctx.next_token().where(ppl.contains("zzz")))

    r = ppl.infer(NoToken(toy_lm()), method="steer", n_particles=3, expand=2)
    assert r.status == "all particles died"


def test_same_seed_same_result():
    a = ppl.infer(Scored(toy_lm()), method="steer", n_particles=8, expand=3, seed=42)
    b = ppl.infer(Scored(toy_lm()), method="steer", n_particles=8, expand=3, seed=42)
    assert a.log_Z == b.log_Z and [str(p) for p in a.particles] == [str(p) for p in b.particles]
    assert a.log_weights.tolist() == b.log_weights.tolist()


def test_infer_inside_event_loop_says_await():
    async def inside():
        ppl.infer(Lipogram(toy_lm()), method="is", n_particles=2)

    with pytest.raises(ppl.NestedEventLoopError, match=r"await ppl.importance_sampling"):
        asyncio.run(inside())


def test_async_api_and_result_fields():
    r = asyncio.run(ppl.smc_steer(Scored(toy_lm()), 5, 2, seed=3))
    assert r.method == "smc_steer" and r.n_steps == len(r.ess) >= 1
    assert r.resampled_at and r.wall_time > 0
    assert r.weights.sum() == pytest.approx(1.0)
    assert math.isfinite(r.log_Z)
    assert sum(r.posterior().values()) == pytest.approx(1.0)
    picks = r.sample(10, np.random.default_rng(0))
    assert len(picks) == 10 and all(p in r.particles for p in picks)
    d = json.loads(r.to_json())
    assert d["settings"] == {"n_particles": 5, "expand": 2, "seed": 3}
    assert d["stats"]["scheduler"]["batches"] >= 1


def test_one_batch_per_step():
    """All particles' requests of a step go to the model in one batch."""
    lm = toy_lm()
    r = ppl.infer(Lipogram(lm), method="steer", n_particles=6, expand=3, seed=0)
    sched = r.stats["scheduler"]
    assert sched["batches"] == r.n_steps
    assert lm.calls == r.n_steps
    # identical prefixes are computed once: at step 1 all 18 rows share the empty prefix
    assert sched["rows_requested"] > sched["rows_sent"]


def test_clones_share_context_sequences():
    lm = toy_lm()
    m = Lipogram(lm)
    c = m.clone()
    assert c.ctx is not m.ctx and c.ctx.prefix_ids is m.ctx.prefix_ids and c.ctx.lm is lm


def test_shared_attributes_are_not_copied():
    class WithScorer(Lipogram):
        shared_attributes = ("scorer",)

        def __init__(self, lm):
            super().__init__(lm)
            self.scorer = {"big": list(range(10))}
            self.history = []

    m = WithScorer(toy_lm())
    c = m.clone()
    assert c.scorer is m.scorer and c.history is not m.history


def test_context_text_tokens_and_observe_text():
    lm = toy_lm()

    class Obs(ppl.Model):
        def __init__(self):
            super().__init__()
            self.ctx = lm.context("")

        async def step(self):
            self.lp = await self.ctx.observe_text("abca")
            self.finish()

    r = ppl.infer(Obs(), method="is", n_particles=1)
    p = r.particles[0]
    expected = sum(math.log(lm.next_probs(tuple(lm.encode("abca")[:i]))[t])
                   for i, t in enumerate(lm.encode("abca")))
    assert p.lp == pytest.approx(expected) and r.log_Z == pytest.approx(expected)
    assert p.ctx.text == "abca" and p.ctx.token_ids == [0, 1, 2, 0]
    assert [t.text for t in p.ctx.tokens] == ["a", "b", "c", "a"]
    assert r.stats["scheduler"]["batches"] == 1  # the four prefixes in one batch


def test_context_errors():
    lm = toy_lm()
    ctx = lm.context("ab")
    assert ctx.prefix_ids == (0, 1) and ctx.text == "" and len(ctx) == 0
    with pytest.raises(ValueError, match="cannot tokenise"):
        lm.context("xyz")

    class Stale(ppl.Model):
        def __init__(self):
            super().__init__()
            self.ctx = lm.context("")

        async def step(self):
            d = self.ctx.next_token()
            await self.sample(d)
            await self.sample(d)

    with pytest.raises(ppl.InferenceError, match="used after its context moved on"):
        ppl.infer(Stale(), method="is", n_particles=1, seed=1)


def test_distributions():
    rng = np.random.default_rng(0)

    def run(coro):
        return asyncio.run(coro)

    cat = ppl.Categorical([0.2, 0.8], values=["x", "y"])
    assert run(cat.log_prob("y")) == pytest.approx(math.log(0.8))
    assert run(cat.log_prob("z")) == -math.inf
    draws = [run(cat.sample(rng)) for _ in range(2000)]
    assert abs(draws.count("y") / 2000 - 0.8) < 4 * math.sqrt(0.16 / 2000)
    assert run(ppl.Categorical(logits=[0.0, math.log(3)]).log_prob(1)) == pytest.approx(math.log(0.75))
    assert run(ppl.Bernoulli(0.3).log_prob(True)) == pytest.approx(math.log(0.3))
    assert run(ppl.Bernoulli(0.0).log_prob(True)) == -math.inf
    assert run(ppl.Geometric(0.25).log_prob(2)) == pytest.approx(math.log(0.75**2 * 0.25))
    g = [run(ppl.Geometric(0.5).sample(rng)) for _ in range(2000)]
    assert min(g) == 0 and abs(np.mean(g) - 1.0) < 4 * math.sqrt(2 / 2000)
    with pytest.raises(ValueError, match="sum to 1"):
        ppl.Categorical([0.5, 0.6])
    with pytest.raises(ValueError, match="exactly one of"):
        ppl.Categorical()
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        ppl.Bernoulli(1.5)


def test_token_constraints():
    lm = toy_lm()
    assert ppl.lacks("c").mask(lm).tolist() == [True, True, False, True]  # EOS allowed
    assert ppl.contains("b").mask(lm).tolist() == [False, True, False, False]
    assert (~ppl.lacks("a") | ppl.contains("b")).mask(lm).tolist() == [True, True, False, False]
    assert ppl.lacks("c") is ppl.lacks("c")  # cached: masks computed once
    pred = ppl.token_predicate(lambda t: t in ("a", ""))
    assert pred.mask(lm).tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="non-empty string"):
        ppl.lacks("")


def test_toy_lm_validates_its_function():
    bad = ppl.ToyLM(["a", "<eos>"], lambda p: [0.7, 0.7])
    with pytest.raises(ValueError, match="summing to 1"):
        bad.batch_next_token_logprobs([()])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        ppl.ToyLM(["a", "b"], lambda p: [0.5, 0.5], eos="<eos>")


def test_scheduler_failure_reaches_every_waiter():
    class Broken(ppl.ToyLM):
        def batch_next_token_logprobs(self, prefixes):
            raise RuntimeError("device on fire")

    lm = Broken(["a", "<eos>"], lambda p: [0.5, 0.5])
    with pytest.raises(ppl.InferenceError, match="device on fire"):
        ppl.infer(Lipogram(lm), method="steer", n_particles=4, expand=2)

    async def two():
        s = Scheduler()
        return await s.gather([lm.next_token_logprobs([0]), lm.next_token_logprobs([1])])

    out = asyncio.run(two())
    assert all(isinstance(o, RuntimeError) for o in out)


def test_no_special_and_not_eos():
    lm = toy_lm()
    assert ppl.no_special().mask(lm).all()  # a ToyLM has no special tokens
    assert ppl.not_eos().mask(lm).tolist() == [True, True, True, False]

    class WithSpecials(ppl.ToyLM):
        special_ids = frozenset({1, 3})  # 3 is EOS

    special = WithSpecials(["a", "b", "c", "<eos>"], lambda p: [0.25] * 4)
    assert ppl.no_special().mask(special).tolist() == [True, False, True, True]  # EOS stays
    assert (ppl.lacks("c") & ppl.no_special() & ppl.not_eos()).mask(special).tolist() == [True, False, False, False]
    assert ppl.no_special() is ppl.no_special()


def test_a_context_repr_stays_short_for_error_messages():
    lm = ppl.ToyLM(["a", "b", "<eos>"], lambda prefix: [0.4, 0.4, 0.2])
    ctx = lm.context("ab" * 2000)
    for _ in range(200):
        ctx._append(0)
    text = repr(ctx)
    assert len(text) < 140 and text.startswith("<LMContext 'ababab") and "...' + '..." in text


def test_a_particle_reprs_as_its_class_text_and_weight():
    from support.toy_programs import Lipogram, toy_lm

    fresh = Lipogram(toy_lm())
    assert repr(fresh) == "<Lipogram '' log_weight=0, step 0>"
    done = ppl.infer(Lipogram(toy_lm()), n_particles=2, seed=0).particles[0]
    assert repr(done).startswith(f"<Lipogram {done.ctx.text!r} log_weight=") and repr(done).endswith(", finished>")
