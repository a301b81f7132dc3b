"""The haiku, JSON-schema and SQL gallery programs in their three forms (a
``ppl.Model`` class, a ``@ppl.program`` function and a ``.steer`` file) are
one Feynman-Kac model: with the same seed they give the same run, the same
``log Z`` and the same posterior (``smc_steer`` with ``N`` particles and
expansion ``K``). The haiku runs on a ToyLM whose words make 5-7-5 lines
reachable, SQL on a ToyLM whose tokens include the grammar's keywords and
the table's columns (llguidance masks a ToyLM's vocabulary too), JSON on the
tiny random byte-level Llama (a real tokenizer).
"""

from __future__ import annotations

import importlib.util
import math
import string

import pytest
from support.gallery_helpers import EXAMPLES, load_example, load_steer, word_lm

import ppl

needs_pronouncing = pytest.mark.skipif(
    importlib.util.find_spec("pronouncing") is None,
    reason="the haiku example needs `pronouncing` (the gallery extra)",
)
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def tiny():
    from support.tiny_models import tiny_cached

    return tiny_cached()


def run(model, seed, n, k):
    return ppl.infer(model, method="steer", n_particles=n, expand=k, seed=seed)


def keys(result, key) -> list:
    """The result of every live particle, in population order (a dead one's is None)."""
    return [key(p) if lw > -math.inf else None for p, lw in zip(result.particles, result.log_weights)]


def assert_same_runs(forms: dict, *, seeds=SEEDS, n=4, k=2) -> list:
    """Every form gives, for every seed, the class form's run: the same
    particles (by result), log weights, log Z, posterior and number of steps.
    Returns the class form's results (to check they are not trivial)."""
    runs = []
    for seed in seeds:
        r_class = run(forms["class"](), seed, n, k)
        for name in ("fn", "steer"):
            r = run(forms[name](), seed, n, k)
            assert keys(r, lambda p: p.value) == keys(r_class, lambda p: p.result_key()), (name, seed)
            assert list(r.log_weights) == pytest.approx(list(r_class.log_weights), abs=1e-9), (name, seed)
            assert r.log_Z == pytest.approx(r_class.log_Z, abs=1e-9), (name, seed)
            assert r.posterior() == pytest.approx(r_class.posterior(), abs=1e-12), (name, seed)
            assert r.n_steps == r_class.n_steps, (name, seed)
        runs.append(r_class)
    return runs


def assert_not_trivial(runs) -> None:
    """At least one run has a finite log Z and several results: equal runs
    that all died, or all found one text, would prove little."""
    assert all(math.isfinite(r.log_Z) for r in runs)
    assert max(len(r.posterior()) for r in runs) > 1


# -- haiku -------------------------------------------------------------------------------------

HAIKU_WORDS = [" the", " cold", " wind", " blows", " over", " river", " and", " sea", "\n"]


@needs_pronouncing
def test_haiku_forms_agree_run_for_run():
    lm = word_lm(HAIKU_WORDS, eos_weight=0.05)
    args = {"prompt": "", "max_tokens": 25}
    forms = {
        "class": lambda: load_example("haiku").Haiku(lm, **args),
        "fn": lambda: load_example("haiku_fn").write_haiku(lm, **args),
        "steer": lambda: load_steer("haiku")(lm, **args),
    }
    runs = assert_same_runs(forms, n=8, k=3)
    assert_not_trivial(runs)
    ex = load_example("haiku")
    for r in runs:
        assert all(ex.is_haiku(text) for text in r.posterior())


# -- JSON, SQL ---------------------------------------------------------------------------------


def test_json_schema_forms_agree_run_for_run(tiny):
    args = {"prompt": "hello", "max_tokens": 120}
    forms = {
        "class": lambda: load_example("json_schema").JSONRecord(tiny, **args),
        "fn": lambda: load_example("json_schema_fn").json_record(tiny, **args),
        "steer": lambda: load_steer("json_schema")(tiny, **args),
    }
    runs = assert_same_runs(forms)
    assert all(math.isfinite(r.log_Z) for r in runs)
    ex = load_example("json_schema")
    for r in runs:
        assert all(ex.validates(text) for text in r.posterior())


# SQL keywords and the table's columns as tokens, and every printable character (the
# prompt must tokenise): queries of several shapes finish within the 40 tokens
SQL_WORDS = [" SELECT ", "name", "age", "city", "salary", " FROM people", " WHERE ", " AND ", " OR ",
             " ORDER BY ", " LIMIT ", " DESC", ", ", " > ", " = ", " < ", "30", "'Paris'", ";"]


def sql_lm() -> ppl.ToyLM:
    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c" and c not in SQL_WORDS]
    return word_lm(SQL_WORDS + chars, eos_weight=0.05)


def test_sql_forms_agree_run_for_run():
    lm = sql_lm()
    forms = {
        "class": lambda: load_example("sql").SQLQuery(lm),
        "fn": lambda: load_example("sql_fn").sql_query(lm),
        "steer": lambda: load_steer("sql")(lm),
    }
    runs = assert_same_runs(forms)
    assert_not_trivial(runs)
    ex = load_example("sql")
    for r in runs:
        assert all(ex.valid_query(" " + text) for text in r.posterior())


@needs_pronouncing
def test_a_different_model_gives_a_different_run():
    """The comparison can fail: a haiku .steer without its final condition
    is another model, with another log Z."""
    load_example("haiku")  # the builtins haiku_prefix_ok and is_haiku
    lm = word_lm(HAIKU_WORDS, eos_weight=0.05)
    text = (EXAMPLES / "haiku.steer").read_text(encoding="utf-8")
    loose = text.replace("condition is_haiku(ctx.text)", "pass")
    assert loose != text
    steer = ppl.dsl.compile(loose, "loose.steer")
    r_class = run(load_example("haiku").Haiku(lm, prompt="", max_tokens=25), 0, 8, 3)
    r_loose = run(steer(lm, prompt="", max_tokens=25), 0, 8, 3)
    assert r_loose.log_Z != pytest.approx(r_class.log_Z, abs=1e-9)


# -- slow: the default model -------------------------------------------------------------------

SLOW_FORMS = {
    "haiku": lambda lm: {
        "class": lambda: load_example("haiku").Haiku(lm, max_tokens=30),
        "fn": lambda: load_example("haiku_fn").write_haiku(lm, max_tokens=30),
        "steer": lambda: load_steer("haiku")(lm, max_tokens=30),
    },
    "json_schema": lambda lm: {
        "class": lambda: load_example("json_schema").JSONRecord(lm),
        "fn": lambda: load_example("json_schema_fn").json_record(lm),
        "steer": lambda: load_steer("json_schema")(lm),
    },
    "sql": lambda lm: {
        "class": lambda: load_example("sql").SQLQuery(lm),
        "fn": lambda: load_example("sql_fn").sql_query(lm),
        "steer": lambda: load_steer("sql")(lm),
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_FORMS))
def test_slow_forms_agree_on_the_default_model(default_lm, name):
    if name == "haiku" and importlib.util.find_spec("pronouncing") is None:
        pytest.skip("the haiku example needs `pronouncing` (the gallery extra)")
    assert_same_runs(SLOW_FORMS[name](default_lm), seeds=(0,), n=4, k=2)
