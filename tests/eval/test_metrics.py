"""The built-in metrics against hand-computed answers, and the posterior
expectation against the exact posterior of a toy program."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import MAX_LEN, Lip
from ppl.runtime.result import InferenceResult, ParticleRecord
from support.exact import exact_target
from support.stats import check_mean
from support.toy_programs import VOCAB

import ppl
from ppl.errors import ArgumentError, UsageError
from ppl.evaluation import any_satisfies, expectation, resolve_metric, top, valid
from ppl.evaluation.metrics import score


def result_of(values, log_weights):
    particles = [ParticleRecord(v, str(v), lw, dead=lw == -math.inf) for v, lw in zip(values, log_weights)]
    return InferenceResult("test", particles, np.array(log_weights, dtype=float))


#: W = (0.5, 0.25, 0.25, 0): "bb" twice, "a" once, "ccc" dead
RESULT = result_of(["bb", "a", "bb", "ccc"], [math.log(2), math.log(1), math.log(1), -math.inf])
DEAD = result_of(["x", "y"], [-math.inf, -math.inf])


def test_builtins_on_a_known_result():
    assert expectation(len)({}, RESULT) == pytest.approx(0.75 * 2 + 0.25 * 1)
    assert top(len)({}, RESULT) == 2.0  # "bb" has W = 0.75
    assert any_satisfies(lambda s: s == "a")({}, RESULT) == 1.0
    assert any_satisfies(lambda s: s == "ccc")({}, RESULT) == 0.0  # dead: weight 0
    assert valid()({}, RESULT) == 1.0 and valid(lambda s: s == "a")({}, RESULT) == 0.0


def test_builtins_when_every_particle_died():
    assert math.isnan(expectation(len)({}, DEAD)) and math.isnan(top(len)({}, DEAD))
    assert any_satisfies(lambda s: True)({}, DEAD) == 0.0 and valid()({}, DEAD) == 0.0


def exact_mean_length(lm):
    """E_P[len(text)] for Lip (no "c", at most MAX_LEN tokens), by enumeration."""
    c = VOCAB.index("c")
    _, post = exact_target(lm, MAX_LEN, lambda s: -math.inf if c in s else 0.0)
    return sum(p * len(text) for text, p in post.items())


def test_posterior_expectation_is_unbiased_in_the_limit(lm):
    """The mean over seeded IS runs of sum_i W_i f(x_i) approaches E_P[f];
    self-normalised IS has an O(1/N) bias, below the tolerance with N = 64
    (the tolerance is z * sd / sqrt(M) over the M runs)."""
    exact = exact_mean_length(lm)
    metric = expectation(len)
    values = [metric({}, ppl.infer(Lip(lm), method="is", n_particles=64, seed=s)) for s in range(60)]
    check_mean(values, exact, what="E_W[len]")


def test_score_names_values():
    assert score(lambda i, r: 0.5, {}, RESULT) == {"metric": 0.5}
    assert score(lambda i, r: {"a": 1, "b": True}, {}, RESULT) == {"a": 1.0, "b": 1.0}
    got = {}
    score(lambda i, r, lm: got.setdefault("lm", lm) and 0.0, {}, RESULT, lm="the model")
    assert got["lm"] == "the model"
    with pytest.raises(ArgumentError, match="returned str 'high'"):
        score(lambda i, r: "high", {}, RESULT)
    with pytest.raises(ArgumentError, match="returned NoneType"):
        score(lambda i, r: {"a": None}, {}, RESULT)


def test_resolve_metric(tmp_path):
    assert resolve_metric("valid")({}, RESULT) == 1.0
    assert resolve_metric("math:isfinite") is math.isfinite
    f = tmp_path / "my_metric.py"
    f.write_text("def m(input, result):\n    return 1.0\n")
    assert resolve_metric(f"{f}:m")({}, RESULT) == 1.0
    with pytest.raises(UsageError, match="expected MODULE:FUNCTION"):
        resolve_metric("nonsense")
    with pytest.raises(UsageError, match="has no function 'nope'"):
        resolve_metric(f"{f}:nope")
    with pytest.raises(UsageError, match="no such file"):
        resolve_metric(f"{tmp_path / 'missing.py'}:m")
    with pytest.raises(UsageError, match="cannot import"):
        resolve_metric("no_such_module_xyz:f")
