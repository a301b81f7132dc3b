"""``@ppl.program``: decorated async functions as steering programs."""

from __future__ import annotations

import asyncio
import gc

import pytest
from support.toy_programs import LACKS_C, MAX_LEN, lipogram_fn, toy_lm

import ppl


def test_value_is_the_result_and_posterior_key():
    r = ppl.infer(lipogram_fn(toy_lm()), method="steer", n_particles=6, expand=2, seed=0)
    assert all(p.done and isinstance(p.value, str) for p in r.particles)
    assert set(r.posterior()) <= {p.value for p in r.particles}
    assert all("c" not in v for v in r.posterior())


def test_one_batch_per_step_with_programs():
    lm = toy_lm()
    r = ppl.infer(lipogram_fn(lm), method="steer", n_particles=5, expand=3, seed=1)
    assert r.stats["scheduler"]["batches"] == r.n_steps == lm.calls


def test_clones_replay_without_model_calls():
    """A clone reaches its parent's point by replay: no model request."""
    lm = toy_lm()

    async def go():
        import numpy as np
        from ppl.runtime.scheduler import Scheduler

        rng, sched = np.random.default_rng(0), Scheduler()
        p = lipogram_fn(lm).clone()
        await sched.gather([p.advance(rng)])
        await sched.gather([p.advance(rng)])
        calls = lm.rows
        c = p.clone()
        assert c.log_weight == p.log_weight
        await sched.gather([c.advance(rng)])
        # the clone replayed two steps and ran one live: one new row only
        assert lm.rows == calls + 1
        assert c._trace[: len(p._trace)] == p._trace

    asyncio.run(go())


def test_replay_divergence_is_reported(replay_cloning):
    runs = {"n": 0}

    @ppl.program
    async def flaky(lm):
        runs["n"] += 1
        ctx = lm.context("")
        # Step 1 makes four fresh calls (2 particles x 2 children); from step 2
        # on, calls are replays of clones, and they take another branch.
        if runs["n"] > 4:
            ppl.factor(0.25)
        for _ in range(3):
            await ppl.sample(ctx.next_token())
        return ctx.text

    lm = ppl.ToyLM(["a", "b", "<eos>"], lambda p: [0.5, 0.5, 0.0])
    with pytest.raises(ppl.InferenceError, match=r"flaky raised ModelError at step 2: replay of flaky "
                       r"diverged at primitive #1.*deterministic") as e:
        ppl.infer(flaky(lm), method="steer", n_particles=2, expand=2, seed=0)
    assert isinstance(e.value.__cause__, ppl.ModelError)


def test_exception_in_body_names_program_and_step():
    @ppl.program
    async def broken(lm):
        ctx = lm.context("")
        await ppl.sample(ctx.next_token())
        await ppl.sample(ctx.next_token())
        return {}["missing"]

    lm = ppl.ToyLM(["a", "b", "<eos>"], lambda p: [0.5, 0.5, 0.0])
    with pytest.raises(ppl.InferenceError, match=r"broken raised KeyError at step 2") as e:
        ppl.infer(broken(lm), method="smc", n_particles=3, seed=0)
    assert isinstance(e.value.__cause__, KeyError)


def test_primitives_outside_a_program():
    with pytest.raises(ppl.ModelError, match=r"ppl.factor\(\) was called outside a running step"):
        ppl.factor(1.0)
    with pytest.raises(ppl.ModelError, match=r"ppl.sample\(\) was called outside a running step"):
        asyncio.run(ppl.sample(ppl.Bernoulli(0.5)))


def test_decorator_checks():
    with pytest.raises(TypeError, match="needs an `async def` function"):
        ppl.program(lambda lm: None)
    with pytest.raises(TypeError):
        lipogram_fn()  # missing argument: fails at the call, not mid-run


def test_module_primitives_work_in_class_models():
    class M(ppl.Model):
        def __init__(self, lm):
            super().__init__()
            self.ctx = lm.context("")

        async def step(self):
            await ppl.sample(self.ctx.next_token().where(LACKS_C))
            ppl.factor(-1.0)
            if len(self.ctx) == MAX_LEN or self.ctx.finished:
                self.finish()

    r = ppl.infer(M(toy_lm()), method="is", n_particles=3, seed=0)
    assert r.status == "ok"


def test_discarded_particles_are_freed():
    """Dropped program particles do not linger (their coroutines hold no
    reference back to them)."""
    import weakref

    lm = toy_lm()
    r = ppl.infer(lipogram_fn(lm), method="steer", n_particles=4, expand=3, seed=2)
    assert r.status == "ok"
    p = lipogram_fn(lm)

    async def go():
        import numpy as np
        from ppl.runtime.scheduler import Scheduler

        q = p.clone()
        await Scheduler().gather([q.advance(np.random.default_rng(0))])
        return weakref.ref(q)

    ref = asyncio.run(go())
    assert ref() is None  # freed by reference counting, without a gc pass
    gc.collect()


def test_clones_share_the_trace_until_they_record():
    """A clone reads its parent's trace without copying it; recording its
    own first site copies the prefix, so neither sees the other's sites,
    and a clone of a clone that has not run yet replays the same prefix."""
    lm = toy_lm()

    async def go():
        import numpy as np
        from ppl.runtime.scheduler import Scheduler

        rng, sched = np.random.default_rng(3), Scheduler()
        p = lipogram_fn(lm).clone()
        await sched.gather([p.advance(rng)])
        await sched.gather([p.advance(rng)])
        prefix = list(p.trace)
        c1 = p.clone()
        c2 = c1.clone()  # c1 has not replayed yet
        assert c1._trace is p._trace and c2._trace is p._trace
        await sched.gather([p.advance(rng)])
        await sched.gather([c1.advance(rng), c2.advance(rng)])
        for c in (c1, c2):  # each replayed the prefix and recorded one site of its own
            assert c.trace[: len(prefix)] == prefix and len(c.trace) == len(prefix) + 1
            assert c._trace is not p._trace
        assert p.trace[: len(prefix)] == prefix and len(p.trace) == len(prefix) + 1

    asyncio.run(go())


def test_replay_checks_scores_too(replay_cloning):
    """A replay whose factor takes another value than the parent's is a
    divergence, reported with both values."""
    runs = {"n": 0}

    @ppl.program
    async def drifting(lm):
        runs["n"] += 1
        ctx = lm.context("")
        for _ in range(3):
            await ppl.sample(ctx.next_token())
            ppl.factor(-1.0 if runs["n"] <= 4 else -2.0)
        return ctx.text

    lm = ppl.ToyLM(["a", "b", "<eos>"], lambda p: [0.5, 0.5, 0.0])
    with pytest.raises(ppl.InferenceError, match=r"diverged at primitive #2: the original run called "
                       r"factor\(\) \(value -1.0\), the replay called factor\(\) \(value -2.0\)"):
        ppl.infer(drifting(lm), method="steer", n_particles=2, expand=2, seed=0)


def test_a_program_reads_the_outcome_of_what_it_awaits():
    """A future the program awaits that fails raises in the program, where
    it can be caught, not in the driver of its steps."""

    @ppl.program
    async def catches(lm):
        loop = asyncio.get_running_loop()
        results = []
        for outcome in (KeyError("k"), "value"):
            future = loop.create_future()
            setter = future.set_exception if isinstance(outcome, BaseException) else future.set_result
            loop.call_soon(setter, outcome)
            try:
                results.append(await future)
            except KeyError:
                results.append("caught")
        await ppl.sample(lm.context("").next_token())
        return tuple(results)

    r = ppl.infer(catches(toy_lm()), method="is", n_particles=2, seed=0)
    assert r.status == "ok" and [p.value for p in r.particles] == [("caught", "value")] * 2
