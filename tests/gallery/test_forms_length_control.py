"""The three forms of length control (examples/length_control.py, the class;
examples/length_control_fn.py, ``@ppl.program``; examples/length_control.steer,
the DSL) are one Feynman-Kac model (issue 11): for the same seed they give
the same run, with ``method="steer"`` and ``method="smc"``.

Each step draws one token by AWRS from the model restricted to
``lacks("\\n") & no_special() & not_eos()`` and checked by ``length_ok``
(the DSL writes the check in the language: ``where_checked text: TEST``),
then finishes at ``n`` words ending in ".", or conditions on the ``n``-th word
ending within three tokens and on the token budget. The toy vocabulary
below reaches every rule of the check: "!", "?", "\\n", "..", a lone space
and a word with a trailing space after the ``n``-th word, a special token
and EOS.

The DSL feature the ``.steer`` form needs, ``where_checked NAME: TEST``, is
tested here too: its checker messages, its exact answer by enumeration and
the same run as the Python ``where_checked(lambda ...)``.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
from support.exact import exact_target
from support.gallery_helpers import load_example, load_steer, word_lm
from support.stats import check_mean, check_posterior
from support.toy_programs import MAX_LEN, VOCAB, toy_lm

import ppl
import ppl.dsl as dsl

WORDS = [" the", " cat", " sat", " on", ".", "s", "!", "?", "\n", " ", "a ", "..", "<sp>"]
ARGS = dict(prompt="", n=4, max_tokens=12)
METHODS = [("steer", {"n_particles": 6, "expand": 3}), ("smc", {"n_particles": 6, "ess_threshold": 0.9})]


def toy():
    """``word_lm`` over WORDS, with ``<sp>`` declared a special token."""
    lm = word_lm(WORDS, eos_weight=0.2, seed=3)
    lm.special_ids = frozenset({WORDS.index("<sp>")})
    return lm


def models(lm):
    return {
        "class": load_example("length_control").LengthControl(lm, **ARGS),
        "fn": load_example("length_control_fn").exactly_n_words(lm, **ARGS),
        "steer": load_steer("length_control")(lm, **ARGS),
    }


def text_of(particle):
    if particle.dead:
        return None  # a dead function particle has no value
    return particle.ctx.text if hasattr(particle, "ctx") else particle.value


@pytest.mark.parametrize("method, options", METHODS, ids=[m for m, _ in METHODS])
def test_the_three_forms_give_the_same_run(method, options):
    lm = toy()
    finished = 0
    for seed in range(6):
        runs = {form: ppl.infer(model, method=method, seed=seed, **options)
                for form, model in models(lm).items()}
        ref = runs["class"]
        for form in ("fn", "steer"):
            r = runs[form]
            assert r.log_Z == pytest.approx(ref.log_Z, abs=1e-9), (form, seed)
            assert r.posterior() == pytest.approx(ref.posterior(), abs=1e-9), (form, seed)
            assert [text_of(p) for p in r.particles] == [text_of(p) for p in ref.particles], (form, seed)
            assert np.allclose(r.log_weights, ref.log_weights, atol=1e-9, rtol=0), (form, seed)
            assert r.n_steps == ref.n_steps, (form, seed)
        for text in ref.posterior():
            assert len(text.split()) == 4 and text.endswith(".") and "\n" not in text, text
        finished += math.isfinite(ref.log_Z)
    assert finished >= 4  # most runs end with a sentence: the comparison is not between dead runs


def test_the_toy_vocabulary_reaches_the_rules():
    """What the check rejects here happens in these runs: without it, the
    texts would break the rules (so the test above compares something)."""
    ok = load_example("length_control").length_ok
    assert not ok(" the cat!", 4) and not ok(" the..", 4) and not ok(" the cat sat on ", 4)
    assert not ok(" the. cat", 4) and not ok(" the cat sat ona ", 4) and ok(" the cat sat on.", 4)
    assert load_steer("length_control").params[1].default == 12


# -- where_checked NAME: TEST, the feature the .steer form uses ----------------------------------

LIPOGRAM = """program p(bad: str = "c"):
    ctx = lm("")
    while True:
        tok ~ ctx.next_token() where_checked text: not (bad in text)
        if tok.is_eos or len(ctx) == 4: finish
"""


def messages(source: str) -> list[tuple[int, int, str]]:
    return [(d.line, d.column, d.message) for d in dsl.check_source(source, "t.steer")]


def test_written_predicates_are_checked():
    head = 'program p(n: int = 1):\n    ctx = lm("")\n    x = 2\n'
    assert messages(head + "    tok ~ ctx.next_token() where_checked t: len(t)\n") == [
        (4, 45, "the test of 'where_checked NAME: TEST' must be True or False; got int")]
    assert messages(head + "    tok ~ ctx.next_token() where_checked n: n == \"a\"\n") == [
        (4, 42, "'n' is already a parameter of the program: name the text of 'where_checked "
                "NAME: TEST' with a new name")]
    assert messages(head + "    tok ~ ctx.next_token() where_checked x: x == \"a\"\n") == [
        (4, 42, "'x' is already a variable of the program: name the text of 'where_checked "
                "NAME: TEST' with a new name")]
    assert messages(head + "    tok ~ ctx.next_token() where_checked len: True\n") == [
        (4, 42, "cannot use the builtin function 'len' as a predicate's name; choose another name")]
    assert messages(head + "    tok ~ ctx.next_token() where_checked text: txt == \"a\"\n") == [
        (4, 48, "undefined name 'txt'; did you mean 'text'?")]
    # the name is known only in the test
    assert messages(head + "    tok ~ ctx.next_token() where_checked t: t == \"a\"\n    y = t\n") == [
        (5, 9, "undefined name 't'")]
    assert messages(head + "    tok ~ bernoulli(0.5) where_checked t: True\n") == [
        (4, 11, "'where_checked' applies only to a next-token distribution (ctx.next_token()); "
                "this is a distribution")]


def test_a_written_predicate_that_is_not_a_bool_fails_at_its_place():
    source = 'program p(xs: list = [0]):\n    ctx = lm("")\n    tok ~ ctx.next_token() where_checked t: xs[0]\n'
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(dsl.compile(source, "t.steer")(toy_lm()), method="is", n_particles=1, seed=0)
    cause = info.value.__cause__
    assert isinstance(cause, dsl.DSLRuntimeError)
    assert cause.diagnostics[0].location == "t.steer:3:45"
    assert cause.diagnostics[0].message == "the test of 'where_checked t: TEST' must be True or False; got int 0"


def test_a_written_predicate_has_the_exact_answer():
    lm = toy_lm()
    factory = dsl.compile(LIPOGRAM, "t.steer")
    Z, exact = exact_target(lm, MAX_LEN, lambda s: 0.0 if VOCAB.index("c") not in s else -math.inf)
    runs = []
    for m in range(100):
        r = ppl.infer(factory(lm), method="steer", n_particles=6, expand=3, seed=30_000 + m)
        runs.append((math.exp(r.log_Z), r.posterior()))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, exact, 6)


def lacks_text(bad: str, text: str) -> bool:
    return bad not in text


@ppl.program
async def lipogram_checked(lm, bad="c"):
    ctx = lm.context("")
    while True:
        tok = await ppl.sample(ctx.next_token().where_checked(partial(lacks_text, bad)))
        if tok.is_eos or len(ctx) == 4:
            return ctx.text


def test_a_written_predicate_gives_the_python_run():
    lm = toy_lm()
    factory = dsl.compile(LIPOGRAM, "t.steer")
    for seed in range(5):
        for bad in ("c", "ab"):
            a = ppl.infer(factory(lm, bad=bad), method="steer", n_particles=6, expand=3, seed=seed)
            b = ppl.infer(lipogram_checked(lm, bad), method="steer", n_particles=6, expand=3, seed=seed)
            assert a.log_Z == pytest.approx(b.log_Z, abs=1e-12)
            assert [p.value for p in a.particles] == [p.value for p in b.particles]
