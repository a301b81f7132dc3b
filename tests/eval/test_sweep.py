"""``ppl.evaluate``: configurations, seeds, resumption, the summary's counts
and compute, and the files it writes."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from conftest import Flaky, Lip
from support.toy_programs import toy_lm

import ppl
from ppl.errors import ArgumentError
from ppl.evaluation import evaluate, expectation, valid

INPUTS = [{}, {"banned": "b"}, {"banned": "ab"}]


def metric(input, result):
    return {"length": expectation(len)(input, result), "valid": valid()(input, result)}


def run(tmp_path, name, **kw):
    kw = {"methods": ("lcd", "is", "smc", "steer"), "particles": (1, 4), "expand": 2, **kw}
    return evaluate(Lip, INPUTS, lm=toy_lm(), metric=metric, output=tmp_path / name, **kw)


def records(path):
    return {r["id"]: r for r in map(json.loads, (path / "results.jsonl").read_text().splitlines())}


def without_times(recs):
    return {k: {f: v for f, v in r.items() if f != "wall_time"} for k, r in recs.items()}


def test_two_evaluations_give_the_same_table(tmp_path):
    a, b = run(tmp_path, "a", seeds=2), run(tmp_path, "b", seeds=2)
    assert a.ran == b.ran == 4 * 2 * 2 * len(INPUTS)
    assert (tmp_path / "a" / "summary.csv").read_bytes() == (tmp_path / "b" / "summary.csv").read_bytes()
    assert without_times(records(tmp_path / "a")) == without_times(records(tmp_path / "b"))
    header = (tmp_path / "a" / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["method", "particles", "runs", "ok", "died", "errors"] and "wall_s" not in header
    assert "length_lo" in header and "tokens_computed" in header


def test_a_rerun_resumes(tmp_path):
    first = run(tmp_path, "x", particles=(1,))
    assert first.ran == 4 * len(INPUTS)
    again = run(tmp_path, "x", particles=(1, 4))
    assert again.ran == 4 * len(INPUTS)  # only N = 4 ran
    assert run(tmp_path, "x", particles=(1, 4)).ran == 0
    run(tmp_path, "fresh", particles=(1, 4))
    assert (tmp_path / "x" / "summary.csv").read_text() == (tmp_path / "fresh" / "summary.csv").read_text()
    assert len(records(tmp_path / "x")) == 8 * len(INPUTS)


def test_replicates_are_maps_with_consecutive_seeds(tmp_path):
    ev = run(tmp_path, "s", methods=("steer",), particles=(3,), seeds=2, seed=5)
    recs = records(tmp_path / "s")
    for r in (0, 1):
        for i, inp in enumerate(INPUTS):
            rec = recs[f"steer/N=3/seed={r}/{i}"]
            alone = ppl.infer(Lip(toy_lm(), **inp), method="steer", n_particles=3, expand=2,
                              seed=ppl.run_seed(5 + r, i))
            assert rec["log_Z"] == pytest.approx(alone.log_Z, abs=1e-12)
            assert rec["metrics"]["length"] == pytest.approx(expectation(len)(inp, alone))
    assert ev.rows[0]["runs"] == 2 * len(INPUTS)


def test_summary_means_and_compute(tmp_path):
    ev = run(tmp_path, "m", methods=("is",), particles=(4,))
    row = ev.rows[0]
    recs = records(tmp_path / "m")
    values = [recs[f"is/N=4/seed=0/{i}"]["metrics"]["length"] for i in range(len(INPUTS))]
    assert row["length_mean"] == pytest.approx(sum(values) / len(values))
    assert row["length_lo"] <= row["length_mean"] <= row["length_hi"]
    rows_alone = []
    for i, inp in enumerate(INPUTS):
        lm = toy_lm()
        ppl.infer(Lip(lm, **inp), method="is", n_particles=4, seed=ppl.run_seed(0, i))
        rows_alone.append(lm.rows)
        assert recs[f"is/N=4/seed=0/{i}"]["tokens_computed"] == lm.rows
    assert row["tokens_computed"] == pytest.approx(sum(rows_alone) / len(rows_alone))
    assert row["forward_passes"] > 0 and row["requests"] >= row["forward_passes"]


def test_errors_and_deaths_are_counted(tmp_path):
    inputs = [{"mode": "ok"}, {"mode": "die"}, {"mode": "raise"}]
    ev = evaluate(Flaky, inputs, lm=toy_lm(), metric=metric, methods=("is", "steer"), particles=(2,),
                  output=tmp_path / "f")
    for row in ev.rows:
        assert (row["runs"], row["ok"], row["died"], row["errors"]) == (3, 1, 1, 1)
        assert row["length_n"] == 1  # nan for the dead run, nothing for the one that raised
        assert row["valid_n"] == 2 and row["valid_mean"] == 0.5
    recs = records(tmp_path / "f")
    assert recs["is/N=2/seed=0/2"]["metrics"] is None and "flaky program" in recs["is/N=2/seed=0/2"]["error"]


def test_bad_settings_fail_before_anything_runs(tmp_path):
    with pytest.raises(ArgumentError, match="unknown method 'nope'"):
        run(tmp_path, "bad", methods=("is", "nope"))
    with pytest.raises(ArgumentError, match="particle counts"):
        run(tmp_path, "bad", particles=(0,))
    with pytest.raises(ArgumentError, match="seeds"):
        run(tmp_path, "bad", seeds=0)
    with pytest.raises(ArgumentError, match="bogus"):
        run(tmp_path, "bad", options={"resampling": "bogus"})
    with pytest.raises(ArgumentError, match="expand must be an integer >= 1"):
        run(tmp_path, "bad", expand=0)
    assert not (tmp_path / "bad").exists()


def test_a_metric_that_raises_names_the_run(tmp_path):
    def broken(input, result):
        raise KeyError("score")

    with pytest.raises(ArgumentError, match=r"metric broken raised KeyError on run lcd/N=1/seed=0/0"):
        evaluate(Lip, INPUTS, lm=toy_lm(), metric=broken, methods=("lcd",), particles=(1,),
                 output=tmp_path / "b")


def test_without_output_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ev = evaluate(Lip, INPUTS, lm=toy_lm(), metric="valid", methods=("lcd", "is"), particles=(2,))
    assert ev.files == {} and list(tmp_path.iterdir()) == []
    assert [r["method"] for r in ev.rows] == ["lcd", "is"] and ev.metric_names == ["metric"]
    assert all(r["metric_mean"] == 1.0 for r in ev.rows)


def test_the_output_files(tmp_path):
    ev = run(tmp_path, "o")
    folder = tmp_path / "o"
    assert (folder / "summary.md").read_text().count("\n") == 2 + len(ev.rows)
    page = (folder / "report.html").read_text()
    assert page.count("<tr>") >= len(ev.rows) + len(INPUTS) * 4
    if importlib.util.find_spec("matplotlib") is not None:
        assert (folder / "metric_vs_compute.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "data:image/png;base64," in page
    assert "http" not in page.split("<body>")[1]
    assert not math.isnan(ev.rows[0]["length_mean"])
