"""``ppl.evaluate(..., engine="ray")`` and ``ppl eval --workers``: the records
of a local evaluation, from Ray workers.

One local Ray cluster (2 CPUs) serves the module's Python tests, as in
``tests/many/test_map_ray.py``; every evaluation starts one pool of workers
on it, for all its configurations, and stops them at its end. The program and the model factory come from
``support`` (the workers find ``tests/`` on their ``PYTHONPATH``). The last
test, of the command line, shuts that cluster down: the command starts its
own, once for the whole evaluation, and stops it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import textwrap
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine needs the optional extra: pip install 'ppl-steer[ray]'")

from support.many_programs import Prompted, broken_lm  # noqa: E402
from support.toy_programs import VOCAB, toy_lm  # noqa: E402

import ppl  # noqa: E402
from ppl.cli import main  # noqa: E402
from ppl.errors import ArgumentError, ModelLoadError  # noqa: E402
from ppl.evaluation import evaluate, expectation  # noqa: E402
from ppl.program_files import find_program  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]
INPUTS = [{"prompt": p, "bonus": b} for p in ("", "a", "b") for b in (0.0, 0.5)]
IDS = [f"q{i}" for i in range(len(INPUTS))]
SETTINGS = dict(methods=("lcd", "smc", "steer"), particles=(1, 3), expand=2, seed=4)
RUNS = len(INPUTS) * 3 * 2

#: id -> type of every model the metric was given (it runs in this process only)
SEEN: dict[int, str] = {}


def scored(input, result, lm):
    """The posterior mean length, and the top output's log-probability under
    the model given the prompt, computed with the ``lm`` the metric gets."""
    SEEN[id(lm)] = type(lm).__name__
    outputs = list(result.posterior())
    if not outputs:
        return {"length": math.nan, "logp": math.nan}
    prefix, logp = [VOCAB.index(ch) for ch in input["prompt"]], 0.0
    for ch in outputs[0]:
        logp += float(lm.batch_next_token_logprobs([tuple(prefix)])[0][VOCAB.index(ch)])
        prefix.append(VOCAB.index(ch))
    return {"length": expectation(len)(input, result), "logp": logp}


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module's Python tests (starting Ray takes seconds)."""
    if ray.is_initialized():
        ray.shutdown()
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def records(folder: Path) -> dict:
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in lines}) == len(lines), "a run twice"
    return {r["id"]: r for r in lines}


def without_timing(recs: dict) -> dict:
    """The records but for the wall time and the counters (their batching is
    compared on its own); ``tokens_computed`` is kept."""
    return {k: {f: v for f, v in r.items() if f not in ("wall_time", "stats")} for k, r in recs.items()}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "eval"
    SEEN.clear()
    ev = evaluate(Prompted, INPUTS, ids=IDS, lm=toy_lm(), metric=scored, output=out, **SETTINGS)
    return out, ev


@pytest.fixture(scope="module")
def on_ray(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray") / "eval"
    SEEN.clear()
    ev = evaluate(Prompted, INPUTS, ids=IDS, lm=toy_lm, metric=scored, output=out, engine="ray", num_workers=2,
                  **SETTINGS)
    return out, ev, dict(SEEN)


def test_ray_gives_the_records_of_the_local_engine(local, on_ray):
    (local_dir, local_ev), (ray_dir, ray_ev, seen) = local, on_ray
    assert ray_ev.ran == local_ev.ran == RUNS
    got, expected = records(ray_dir), records(local_dir)
    assert sorted(got) == sorted(expected) and len(got) == RUNS
    assert without_timing(got) == without_timing(expected)  # status, log Z, top, metrics, tokens computed
    assert {r["status"] for r in got.values()} == {"ok", "all particles died"}  # some die ("cc")
    for key, r in got.items():
        assert len(r["top"]) <= 3  # every output of N <= 3 is in top: the whole posterior
        for counter in ("batches", "rows_requested", "rows_sent"):
            assert r["stats"]["scheduler"][counter] == expected[key]["stats"]["scheduler"][counter]
        assert r["tokens_computed"] == r["stats"]["ToyLM"]["rows"] > 0  # the worker's model, this run only
    strip = ("wall_s",)
    assert [{k: v for k, v in row.items() if k not in strip} for row in ray_ev.rows] == \
        [{k: v for k, v in row.items() if k not in strip} for row in local_ev.rows]
    assert (ray_dir / "summary.csv").read_bytes() == (local_dir / "summary.csv").read_bytes()
    assert list(seen.values()) == ["ToyLM"]  # one model built in this process for the metric


def test_common_random_numbers_hold_on_ray(on_ray):
    recs = records(on_ray[0])
    for i in IDS:  # at N = 1, lcd and smc draw the same particle from the same seed
        lcd, smc = recs[f"lcd/N=1/seed=0/{i}"], recs[f"smc/N=1/seed=0/{i}"]
        assert lcd["top"] == smc["top"] and lcd["status"] == smc["status"], i
    k = 3
    alone = ppl.infer(Prompted(toy_lm(), **INPUTS[k]), method="steer", n_particles=3, expand=2,
                      seed=ppl.run_seed(4, k))
    assert recs[f"steer/N=3/seed=0/{IDS[k]}"]["log_Z"] == pytest.approx(alone.log_Z, abs=1e-12)


def test_what_a_worker_sends_back_keeps_lcd_s_log_Z():
    """``lcd``'s ``log_Z`` is importance sampling's, not its equal weights'
    (which would give 0 with every particle alive)."""
    result = ppl.infer(Prompted(toy_lm(), prompt="a"), method="lcd", n_particles=3, seed=ppl.run_seed(4, 3))
    sent = ppl.RunOutcome(3, "q3", {"prompt": "a"}, result=result).detached()
    assert sent.log_Z == result.log_Z != 0.0 and sent.result.weights.tolist() == result.weights.tolist()


class Stop(Exception):
    pass


def test_a_half_done_ray_evaluation_resumes_with_only_the_missing_runs(local, tmp_path, cluster):
    settings = {**SETTINGS, "methods": ("smc", "steer"), "particles": (3,)}
    out, done = tmp_path / "half", []

    def stop_after_three(record):
        done.append(record["id"])
        if len(done) == 3:
            raise Stop  # killed in the middle of the first configuration

    with pytest.raises(Stop):
        evaluate(Prompted, INPUTS, ids=IDS, lm=toy_lm, metric=scored, output=out, engine="ray", num_workers=1,
                 on_record=stop_after_three, **settings)
    assert sorted(records(out)) == sorted(done)
    again = []
    ev = evaluate(Prompted, INPUTS, ids=IDS, lm=toy_lm, metric=scored, output=out, engine="ray", num_workers=1,
                  on_record=lambda r: again.append(r["id"]), **settings)
    assert ev.ran == len(again) == 2 * len(INPUTS) - 3 and not set(again) & set(done)
    got = records(out)
    expected = {k: v for k, v in records(local[0]).items() if k in got}
    assert len(got) == len(expected) == 2 * len(INPUTS)
    assert without_timing(got) == without_timing(expected)


def test_a_finished_ray_evaluation_builds_no_model(on_ray):
    """Resumed with nothing left: no worker starts and the metric's model is
    not built (a factory that fails is never called)."""
    ev = evaluate(Prompted, INPUTS, ids=IDS, lm=broken_lm, metric=scored, output=on_ray[0], engine="ray",
                  num_workers=2, **SETTINGS)
    assert ev.ran == 0 and len(ev.records) == RUNS


def test_the_metric_s_model_that_cannot_be_built_fails_before_any_run(tmp_path, cluster):
    with pytest.raises(ModelLoadError, match=r"^the metric scored takes lm, built in this process with lm\(\), "
                                             r"which raised ModelLoadError: no model at /nowhere/model.gguf$"):
        evaluate(Prompted, INPUTS, lm=broken_lm, metric=scored, output=tmp_path / "x", engine="ray",
                 num_workers=1, methods=("is",), particles=(2,))
    assert (tmp_path / "x" / "results.jsonl").read_text() == ""


@ppl.program
async def coin():
    return await ppl.sample(ppl.Bernoulli(0.5))


BAD = [
    (dict(lm=toy_lm(), engine="ray"), r"engine='ray' needs lm= a zero-argument function .*got ToyLM"),
    (dict(engine="ray"), r"engine='ray' needs lm= a zero-argument function .*got nothing"),
    (dict(lm=toy_lm(), num_workers=2), r"^num_workers configure Ray workers: pass engine='ray' too$"),
    (dict(lm=toy_lm(), address="auto", threads_per_worker=2),
     r"^address, threads_per_worker configure Ray workers: pass engine='ray' too$"),
    (dict(lm=toy_lm(), engine="dask"), r"^unknown engine 'dask'; the engines: local, ray$"),
    (dict(lm=toy_lm, engine="ray", threads_per_worker=0), r"threads_per_worker must be an integer >= 1"),
    (dict(lm=toy_lm, engine="ray", max_concurrent=0), r"max_concurrent must be an integer >= 1"),
]


@pytest.mark.parametrize("kw, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_engine_settings_fail_in_one_line_before_anything_runs(tmp_path, kw, message):
    with pytest.raises(ArgumentError, match=message) as info:
        evaluate(Prompted, INPUTS, metric=scored, output=tmp_path / "bad", **kw)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad").exists()


def test_a_metric_that_takes_lm_on_ray_needs_a_factory(tmp_path):
    """``coin`` takes no model, so ppl.map does not ask for one; the metric does."""
    for lm, got in ((toy_lm(), "got ToyLM"), (None, "got nothing")):
        with pytest.raises(ArgumentError, match=r"^the metric scored takes lm: with engine='ray' it gets a model "
                                                rf"built in this process with lm\(\), so lm= must be a zero-argument "
                                                rf"function returning the language model, {got}") as info:
            evaluate(coin, [{}], lm=lm, metric=scored, output=tmp_path / "bad", engine="ray")
        assert "\n" not in str(info.value)
    assert not (tmp_path / "bad").exists()


COUNTED = textwrap.dedent('''
    import os

    import ppl

    LOADS = {loads!r}

    def make_lm():
        """The toy model; every call appends its process's id to LOADS."""
        with open(LOADS, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        return ppl.ToyLM(["a", "b", "e", "<eos>"],
                         lambda p: [0.3, 0.3, 0.2, 0.2] if len(p) < 4 else [0, 0, 0, 1])

    @ppl.program
    async def lipogram(lm, prompt: str = "", banned="e"):
        if prompt == "bad":
            raise ValueError("no bad prompts")
        ctx = lm.context(prompt)
        for _ in range(3):
            tok = await ppl.sample(ctx.next_token().where(ppl.lacks(banned)))
            if tok.is_eos:
                break
        return ctx.text
''')
COUNTED_INPUTS = [{"prompt": p, "banned": b} for p in ("", "a", "bad") for b in ("e", "ae")]
COUNTED_SETTINGS = dict(methods=("lcd", "steer"), particles=(1, 3), expand=2, seed=2)  # 4 configurations


def length(input, result):
    return {"length": expectation(len)(input, result)}


def _counted(tmp_path):
    """The program of ``COUNTED`` (sent by value), its model factory, and the file of its loads."""
    loads = tmp_path / "loads.txt"
    path = tmp_path / "counted_program.py"
    path.write_text(COUNTED.format(loads=str(loads)))
    _, _, program, module = find_program(f"{path}:lipogram")
    return program, module.make_lm, loads


def _workers_gone() -> bool:
    """Every CPU of the module's cluster is free again: no worker of the pool is alive
    (a killed actor's CPU comes back within moments; waited for, up to a minute)."""
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) != ray.cluster_resources().get("CPU"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_each_worker_loads_the_model_once_for_the_whole_evaluation(tmp_path, cluster):
    """4 configurations on 2 workers: at most 2 loads, one per worker (a map
    per configuration, each starting its workers, made at least one per
    configuration); the records, a failing run's error record included, are
    the local ones."""
    program, make_lm, loads = _counted(tmp_path)
    local = evaluate(program, COUNTED_INPUTS, lm=make_lm(), metric=length, output=tmp_path / "local",
                     **COUNTED_SETTINGS)
    loads.unlink()
    on_ray = evaluate(program, COUNTED_INPUTS, lm=make_lm, metric=length, output=tmp_path / "ray", engine="ray",
                      num_workers=2, **COUNTED_SETTINGS)
    pids = loads.read_text().split()  # one per worker that loaded before the work was done: 1 or 2
    assert 1 <= len(pids) == len(set(pids)) <= 2 and str(os.getpid()) not in pids
    assert on_ray.ran == local.ran == 4 * len(COUNTED_INPUTS)
    got, expected = records(tmp_path / "ray"), records(tmp_path / "local")
    assert without_timing(got) == without_timing(expected)
    errors = {k: r for k, r in got.items() if r["status"] == "error"}
    assert len(errors) == 4 * 2 and {r["error"] for r in errors.values()} == \
        {"lipogram raised ValueError at step 1: no bad prompts"}
    assert ray.is_initialized() and _workers_gone()  # the workers stopped; the module's Ray kept


def test_an_evaluation_that_raises_stops_its_workers_and_resumes(tmp_path, cluster):
    program, make_lm, loads = _counted(tmp_path)
    out, done = tmp_path / "stopped", []

    def stop_in_the_second_configuration(record):
        done.append(record["id"])
        if len(done) == len(COUNTED_INPUTS) + 2:
            raise Stop

    with pytest.raises(Stop):
        evaluate(program, COUNTED_INPUTS, lm=make_lm, metric=length, output=out, engine="ray", num_workers=2,
                 on_record=stop_in_the_second_configuration, **COUNTED_SETTINGS)
    first = len(loads.read_text().split())
    assert 1 <= first <= 2 and _workers_gone()
    ev = evaluate(program, COUNTED_INPUTS, lm=make_lm, metric=length, output=out, engine="ray", num_workers=2,
                  **COUNTED_SETTINGS)
    assert ev.ran == 4 * len(COUNTED_INPUTS) - len(done) and len(records(out)) == 4 * len(COUNTED_INPUTS)
    pids = loads.read_text().split()  # at most 2 more: the second evaluation's pool
    assert first + 1 <= len(pids) == len(set(pids)) <= first + 2 and _workers_gone()


PROGRAM = textwrap.dedent('''
    import ppl

    def make_lm():
        return ppl.ToyLM(["a", "b", "e", "<eos>"],
                         lambda p: [0.3, 0.3, 0.2, 0.2] if len(p) < 4 else [0, 0, 0, 1])

    @ppl.program
    async def lipogram(lm, prompt: str = "", banned="e"):
        ctx = lm.context(prompt)
        for _ in range(3):
            tok = await ppl.sample(ctx.next_token().where(ppl.lacks(banned)))
            if tok.is_eos:
                break
        return ctx.text
''')


def test_ppl_eval_workers_writes_the_records_of_a_local_evaluation(tmp_path, monkeypatch, capsys):
    """Ray not initialised: the command starts one local cluster for both
    configurations, and stops it."""
    if ray.is_initialized():
        ray.shutdown()  # the module's cluster: the command must start its own
    (tmp_path / "lipo.py").write_text(PROGRAM)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": p, "banned": b}) + "\n"
                                               for i, (p, b) in enumerate([("", "e"), ("a", "ae"), ("b", "e")])))
    flags = [str(tmp_path / "lipo.py"), "--inputs", str(tmp_path / "in.jsonl"), "--metric", "valid",
             "--methods", "lcd,steer", "--particles", "2", "--expand", "2", "--seed", "3", "--quiet"]
    assert main(["eval", *flags, "--output", str(tmp_path / "local")]) == 0
    inits = []
    real_init = ray.init
    monkeypatch.setattr(ray, "init", lambda *a, **kw: (inits.append(kw), real_init(*a, **kw))[1])
    assert main(["eval", *flags, "--output", str(tmp_path / "ray"), "--workers", "2",
                 "--threads-per-worker", "1"]) == 0
    assert len(inits) == 1 and inits[0]["num_cpus"] == 2  # one cluster, for both configurations
    assert not ray.is_initialized()  # and it is gone
    local, mapped = records(tmp_path / "local"), records(tmp_path / "ray")
    assert sorted(mapped) == sorted(local) and len(mapped) == 2 * 3
    assert without_timing(mapped) == without_timing(local)
    assert "ppl: 6 runs, 0 died or raised" in capsys.readouterr().err
    assert main(["eval", *flags, "--output", str(tmp_path / "bad"), "--threads-per-worker", "2"]) == 2
    assert "--threads-per-worker goes with --workers or --ray-address" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
