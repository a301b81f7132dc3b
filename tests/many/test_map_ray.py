"""``ppl.map(..., engine="ray")``: the same results as the local engine, on
worker processes that each build the model once.

One local Ray cluster (2 CPUs) serves the whole module; every map starts its
own workers on it. The programs and model factories come from
``support.many_programs`` (the workers find ``tests/`` on their
``PYTHONPATH``) or from a temporary file (sent by value).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray engine needs the optional extra: pip install 'ppl-steer[ray]'")

from support.many_programs import (  # noqa: E402
    Fatal,
    Prompted,
    broken_lm,
    slow_toy_lm,
    torch_threads,
    toy_lm,
)

import ppl  # noqa: E402
from ppl.program_files import find_program  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]
INPUTS = [{"prompt": p, "bonus": b} for p in ("", "a", "b", "ab", "ca") for b in (0.0, 0.5)]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module (starting Ray takes seconds)."""
    if ray.is_initialized():
        ray.shutdown()
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1",
                                          "PPL_TEST_RAY_WORKER": "1"}})
    yield
    ray.shutdown()


def _line(outcome) -> dict:
    """An outcome's record without what depends on timing or batching."""
    return {k: v for k, v in outcome.record().items() if k not in ("wall_time", "stats")}


def _same(got: dict, expected: dict) -> None:
    """Two maps gave the same outcomes: same particles, weights and records."""
    assert sorted(got) == sorted(expected)
    for key, o in got.items():
        x, y = o.result, expected[key].result
        assert [str(p) for p in x.particles] == [str(p) for p in y.particles]
        np.testing.assert_allclose(x.log_weights, y.log_weights, rtol=0, atol=1e-12)
        assert x.ess == pytest.approx(y.ess, abs=1e-12)
        assert _line(o) == _line(expected[key])


def _by_index(outcomes) -> dict:
    out = {}
    for o in outcomes:
        assert o.index not in out, f"input {o.index} came back twice"
        out[o.index] = o
    return out


METHODS = [("steer", {"expand": 2}), ("smc", {"ess_threshold": 1.0, "resampling": "systematic"})]


@pytest.mark.parametrize("method,options", METHODS, ids=[m for m, _ in METHODS])
def test_ray_results_equal_the_local_run(method, options):
    settings = dict(method=method, n_particles=4, seed=11, max_concurrent=3, **options)
    local = _by_index(ppl.map(Prompted, INPUTS, lm=toy_lm(), **settings))
    mapped = ppl.map(Prompted, INPUTS, lm=toy_lm, engine="ray", num_workers=2, **settings)
    _same(_by_index(mapped), local)
    assert mapped.stats["workers_started"] == 2 and mapped.stats["workers_replaced"] == 0
    assert all(o.status == "ok" for o in local.values())


def test_a_killed_worker_s_inputs_are_run_again_elsewhere():
    inputs = [{"prompt": p} for p in ("", "a", "b", "c")] * 5
    settings = dict(n_particles=4, expand=2, seed=5, max_concurrent=2)
    local = _by_index(ppl.map(Prompted, inputs, lm=toy_lm(), **settings))
    mapped = ppl.map(Prompted, inputs, lm=slow_toy_lm, engine="ray", num_workers=2, **settings)
    seen = []
    for outcome in mapped:  # until worker 0 holds inputs it has not finished
        seen.append(outcome)
        if mapped.in_flight()[0]:
            break
    victim, held = mapped.workers[0], mapped.in_flight()[0]
    ray.kill(victim)
    seen.extend(mapped)
    _same(_by_index(seen), local)  # none lost, none twice, the same results
    assert set(held) <= {o.index for o in seen}
    assert mapped.stats["workers_replaced"] == 1 and mapped.stats["runs_retried"] >= 1
    assert victim not in mapped.workers


def test_an_input_that_kills_every_worker_it_runs_on_becomes_an_error():
    inputs = [{"prompt": p} for p in ("", "a", "cc", "b", "ab")]
    mapped = ppl.map(Fatal, inputs, lm=toy_lm, engine="ray", num_workers=2, max_concurrent=1, max_retries=1,
                     n_particles=2, expand=2, seed=0)
    got = _by_index(mapped)
    assert sorted(got) == list(range(5))
    assert got[2].status == "error" and "its worker died 2 times while running it" in got[2].error
    clean = [0, 1, 3, 4]  # inputs queued behind the poison one are never counted against
    local = _by_index(ppl.map(Prompted, inputs, lm=toy_lm(), max_concurrent=1, n_particles=2, expand=2, seed=0))
    _same({i: got[i] for i in clean}, {i: local[i] for i in clean})
    assert mapped.stats["workers_replaced"] >= 2


def test_a_worker_that_cannot_load_the_model_fails_the_map_at_once():
    t0 = time.perf_counter()
    with pytest.raises(ppl.WorkerError, match=r"worker \d \(pid \d+ on .+\) could not load the model and "
                                              r"program: ModelLoadError: no model at /nowhere/model.gguf"):
        list(ppl.map(Prompted, INPUTS, lm=broken_lm, engine="ray", num_workers=2, n_particles=4, expand=2))
    assert time.perf_counter() - t0 < 60  # not a hang
    assert isinstance(ppl.WorkerError("x"), ppl.BackendError)


def test_a_program_workers_cannot_import_fails_with_the_import_error(tmp_path, monkeypatch):
    (tmp_path / "only_here.py").write_text(textwrap.dedent('''
        from support.many_programs import Prompted

        class Here(Prompted):
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))  # the driver imports it; workers cannot
    from only_here import Here

    with pytest.raises(ppl.WorkerError, match="could not load the model and program: "
                                              "ModuleNotFoundError: No module named 'only_here'"):
        list(ppl.map(Here, INPUTS[:2], lm=toy_lm, engine="ray", num_workers=1, n_particles=2, expand=2))
    sys.modules.pop("only_here", None)


USER_FILE = textwrap.dedent('''
    import ppl

    BANNED = "c"

    def banned(text):
        return BANNED in text

    class Echo(ppl.Model):
        def __init__(self, lm, prompt: str = "", n: int = 3):
            super().__init__()
            self.ctx, self.n = lm.context(prompt), n

        async def step(self):
            tok = await self.sample(self.ctx.next_token())
            self.condition(not banned(self.ctx.text))
            if tok.is_eos or len(self.ctx) >= self.n:
                self.finish()

    @ppl.program
    async def echo(lm, prompt: str = "", n: int = 3):
        ctx = lm.context(prompt)
        for _ in range(n):
            tok = await ppl.sample(ctx.next_token())
            ppl.condition(not banned(ctx.text))
            if tok.is_eos:
                break
        return ctx.text
''')


@pytest.mark.parametrize("name", ["Echo", "echo"])
def test_programs_defined_in_a_user_file_reach_the_workers(tmp_path, name):
    path = tmp_path / f"user_program_{name}.py"
    path.write_text(USER_FILE)
    _, _, program, module = find_program(f"{path}:{name}")
    assert module.__name__.startswith("ppl_user_")  # a name the workers cannot import
    inputs = [{"prompt": p, "n": n} for p in ("", "a", "b") for n in (2, 3)]
    settings = dict(n_particles=4, expand=2, seed=3, max_concurrent=2)
    local = _by_index(ppl.map(program, inputs, lm=toy_lm(), **settings))
    _same(_by_index(ppl.map(program, inputs, lm=toy_lm, engine="ray", num_workers=2, **settings)), local)


def test_resuming_with_skip_gives_the_rest_with_the_same_results():
    ids = [f"q{i}" for i in range(len(INPUTS))]
    settings = dict(n_particles=4, expand=2, seed=9, ids=ids)
    full = {o.id: o for o in ppl.map(Prompted, INPUTS, lm=toy_lm(), **settings)}
    skip = set(ids[::3])
    rest = {o.id: o for o in ppl.map(Prompted, INPUTS, lm=toy_lm, engine="ray", num_workers=2, skip=skip,
                                     **settings)}
    assert set(rest) == set(ids) - skip
    _same(rest, {k: full[k] for k in rest})


def test_map_async_with_ray():
    async def main():
        return [o async for o in ppl.map_async(Prompted, INPUTS[:4], lm=toy_lm, engine="ray", num_workers=1,
                                               n_particles=2, expand=2, seed=1)]

    got = _by_index(asyncio.run(main()))
    _same(got, _by_index(ppl.map(Prompted, INPUTS[:4], lm=toy_lm(), n_particles=2, expand=2, seed=1)))


def test_each_worker_runs_with_threads_per_worker_torch_threads():
    [outcome] = ppl.map(torch_threads, [{}], lm=toy_lm, engine="ray", num_workers=1, threads_per_worker=2,
                        n_particles=1, expand=1)
    assert list(outcome.result.posterior()) == ["2 threads"]


def test_bad_settings_fail_before_any_worker_starts():
    with pytest.raises(ppl.PPLError, match=r"engine='ray' needs lm= a zero-argument function .*got ToyLM"):
        ppl.map(Prompted, INPUTS, lm=toy_lm(), engine="ray")
    with pytest.raises(ppl.PPLError, match="engine='ray' needs lm= .*got nothing"):
        ppl.map(Prompted, INPUTS, engine="ray")
    with pytest.raises(ppl.PPLError, match=r"input 1: got an unexpected keyword argument 'promt'"):
        ppl.map(Prompted, [{}, {"promt": "a"}], lm=toy_lm, engine="ray")
    with pytest.raises(ppl.PPLError, match="method 'smc' takes no option 'expand'"):
        ppl.map(Prompted, INPUTS, lm=toy_lm, engine="ray", method="smc", expand=2)
    with pytest.raises(ppl.PPLError, match="threads_per_worker must be an integer >= 1"):
        ppl.map(Prompted, INPUTS, lm=toy_lm, engine="ray", threads_per_worker=0)
    with pytest.raises(ppl.PPLError, match="unknown engine 'dask'; the engines: local, ray"):
        ppl.map(Prompted, INPUTS, lm=toy_lm(), engine="dask")
    with pytest.raises(ppl.PPLError, match="num_workers configure Ray workers: pass engine='ray'"):
        ppl.map(Prompted, INPUTS, lm=toy_lm(), num_workers=2)
    with pytest.raises(ppl.PPLError, match="3 workers of 1 threads need 3 CPUs; the Ray cluster has 2"):
        next(ppl.map(Prompted, INPUTS, lm=toy_lm, engine="ray", num_workers=3))
