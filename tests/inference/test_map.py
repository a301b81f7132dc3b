"""``ppl.map``: many inputs in one event loop, sharing one scheduler.

The contract: input ``i``'s result equals the one-at-a-time run
``ppl.infer(model_i, seed=ppl.run_seed(seed, i))`` (run for run, for every
method, whatever the concurrency), forward passes are shared across runs, a
run that raises becomes an ``"error"`` outcome while the others go on, bad
inputs fail before anything runs, and the estimates stay exact.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from support.many_programs import Prompted
from support.stats import check_mean
from support.toy_programs import Scored, lipogram_fn, toy_lm

import ppl

METHODS = [("steer", {"expand": 2}), ("smc", {"ess_threshold": 1.0}), ("is", {})]


def _same(a, b):
    """Two results are the same run: same particles, same weights."""
    assert [str(p) for p in a.particles] == [str(p) for p in b.particles]
    np.testing.assert_allclose(a.log_weights, b.log_weights, rtol=0, atol=1e-12)
    assert a.ess == pytest.approx(b.ess, abs=1e-12)


INPUTS = [{"prompt": p, "bonus": b} for p in ("", "a", "b", "ab", "ca") for b in (0.0, 0.5)]


@pytest.mark.parametrize("method,options", METHODS, ids=[m for m, _ in METHODS])
@pytest.mark.parametrize("max_concurrent", [1, 3, 16])
def test_map_equals_one_at_a_time(method, options, max_concurrent):
    lm = toy_lm()
    outcomes = list(ppl.map(Prompted, INPUTS, lm=lm, method=method, n_particles=4, seed=11,
                            max_concurrent=max_concurrent, **options))
    assert sorted(o.index for o in outcomes) == list(range(len(INPUTS)))
    for o in outcomes:
        alone = ppl.infer(Prompted(lm, **INPUTS[o.index]), method=method, n_particles=4,
                          seed=ppl.run_seed(11, o.index), **options)
        assert o.status == "ok" and o.input == INPUTS[o.index]
        _same(o.result, alone)


def test_runs_share_forward_passes():
    lm = toy_lm()
    inputs = [{"prompt": ""}] * 8
    lm.calls = 0
    list(ppl.map(Prompted, inputs, lm=lm, n_particles=4, expand=2, seed=0, max_concurrent=8))
    together = lm.calls
    lm.calls = 0
    for i, inp in enumerate(inputs):
        ppl.infer(Prompted(lm, **inp), n_particles=4, expand=2, seed=ppl.run_seed(0, i))
    alone = lm.calls
    assert together <= alone / 4, (together, alone)  # 8 runs, about one batch per step for all


def test_decorated_programs_map_too():
    lm = toy_lm()
    outcomes = list(ppl.map(lipogram_fn, [{}] * 4, lm=lm, n_particles=3, expand=2, seed=5))
    for o in outcomes:
        _same(o.result, ppl.infer(lipogram_fn(lm), n_particles=3, expand=2, seed=ppl.run_seed(5, o.index)))


def test_steer_programs_map_too():
    source = (
        "program p(prompt: str = \"\", n: int = 3):\n"
        "    ctx = lm(prompt)\n"
        "    repeat n:\n"
        "        tok ~ ctx.next_token()\n"
        "        if tok == EOS: finish\n"
        "    return ctx.text\n"
    )
    program = ppl.compile(source)
    lm = toy_lm()
    inputs = [{"prompt": "a", "n": 2}, {"prompt": "b"}, {"n": 1}]
    for o in ppl.map(program, inputs, lm=lm, n_particles=4, expand=2, seed=2):
        _same(o.result, ppl.infer(program(lm, **inputs[o.index]), n_particles=4, expand=2,
                                  seed=ppl.run_seed(2, o.index)))


def test_map_is_exact():
    """Z_hat of every input of a map is unbiased (the same program, 200 inputs)."""
    lm = toy_lm()
    Z, _ = Scored.exact(lm)
    outcomes = list(ppl.map(Scored, [{}] * 200, lm=lm, n_particles=4, expand=2, seed=123, max_concurrent=50))
    check_mean([math.exp(o.log_Z) for o in outcomes], Z)


class Fails(Prompted):
    async def step(self):
        if self.ctx.prompt.startswith("b"):
            raise RuntimeError("no b please")
        await super().step()


def test_a_run_that_raises_is_an_error_outcome_and_the_others_go_on():
    lm = toy_lm()
    outcomes = {o.index: o for o in ppl.map(Fails, [{"prompt": "a"}, {"prompt": "b"}, {"prompt": ""}],
                                            lm=lm, n_particles=3, expand=2, seed=0)}
    assert outcomes[1].status == "error" and outcomes[1].result is None
    assert "Fails raised RuntimeError at step 1: no b please" in outcomes[1].error
    assert outcomes[0].status == outcomes[2].status == "ok"
    record = outcomes[1].record()
    assert record["status"] == "error" and record["log_Z"] is None and "no b please" in record["error"]


def test_bad_inputs_fail_before_anything_runs():
    lm = toy_lm()
    with pytest.raises(ppl.PPLError, match=r"input 1: got an unexpected keyword argument 'promt'.*prompt, bonus"):
        ppl.map(Prompted, [{"prompt": "a"}, {"promt": "b"}], lm=lm)
    with pytest.raises(ppl.PPLError, match="input 0: an input is a dict"):
        ppl.map(Prompted, ["a"], lm=lm)
    with pytest.raises(ppl.PPLError, match="pass lm="):
        ppl.map(Prompted, [{}])
    with pytest.raises(ppl.PPLError, match="method 'smc' takes no option 'expand'; its options: ess_threshold, resampling"):
        next(ppl.map(Prompted, [{}], lm=lm, method="smc", expand=3))
    with pytest.raises(ppl.PPLError, match="seed must be an integer >= 0"):
        next(ppl.map(Prompted, [{}], lm=lm, seed=-1))


def test_ids_and_skip_resume_with_the_same_results():
    lm = toy_lm()
    ids = [f"q{i}" for i in range(len(INPUTS))]
    full = {o.id: o for o in ppl.map(Prompted, INPUTS, lm=lm, n_particles=4, expand=2, seed=9, ids=ids)}
    skip = set(ids[::2])
    rest = {o.id: o for o in ppl.map(Prompted, INPUTS, lm=lm, n_particles=4, expand=2, seed=9, ids=ids, skip=skip)}
    assert set(rest) == set(ids) - skip
    for key, o in rest.items():
        _same(o.result, full[key].result)


def test_map_async_inside_an_event_loop():
    lm = toy_lm()

    async def main():
        seen = [o.index async for o in ppl.map_async(Prompted, [{}] * 3, lm=lm, n_particles=2, expand=2)]
        assert sorted(seen) == [0, 1, 2]
        with pytest.raises(ppl.NestedEventLoopError, match="map_async"):
            next(ppl.map(Prompted, [{}], lm=lm))

    asyncio.run(main())


@pytest.mark.parametrize("method,options", [("steer", {"expand": 3}), ("smc", {"ess_threshold": 1.0}), ("is", {})],
                         ids=["steer", "smc", "is"])
def test_map_on_the_tiny_model_equals_one_at_a_time(method, options):
    from support.tiny_models import tiny_cached

    lm = tiny_cached("llama")
    inputs = [{"prompt": p} for p in ("the", "the quick", "hello world", "the")]
    outcomes = list(ppl.map(Prompted, inputs, lm=lm, method=method, n_particles=4, seed=1, max_concurrent=4,
                            **options))
    for o in outcomes:
        alone = ppl.infer(Prompted(lm, **inputs[o.index]), method=method, n_particles=4,
                          seed=ppl.run_seed(1, o.index), **options)
        assert [str(p) for p in o.result.particles] == [str(p) for p in alone.particles]
        # batch composition differs, so float32 log-probs may differ in the last bits
        np.testing.assert_allclose(o.result.log_weights, alone.log_weights, rtol=0, atol=1e-4)


@pytest.mark.parametrize("options, message", [
    ({"method": "smc", "resampling": "bogus"}, "unknown resampling scheme 'bogus'"),
    ({"method": "smc", "ess_threshold": 2.0}, "ess_threshold must be a number in"),
    ({"method": "steer", "expand": 0}, "expand must be an integer >= 1"),
])
def test_bad_option_values_fail_once_before_anything_runs(options, message):
    lm = toy_lm()
    calls = lm.calls
    with pytest.raises(ppl.PPLError, match=message):
        next(ppl.map(Prompted, [{}] * 3, lm=lm, n_particles=2, **options))
    assert lm.calls == calls  # no run started
