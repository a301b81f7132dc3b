"""Property tests: any text, and any mutation of a valid program, gives a
program or a DSLError, never another exception; and what compiles runs or
fails with a located ppl error."""

from __future__ import annotations

from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from support.toy_programs import toy_lm  # noqa: E402
from test_dsl_language import EVERY_CONSTRUCT  # noqa: E402

import ppl  # noqa: E402
import ppl.dsl as dsl  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VALID = [EVERY_CONSTRUCT] + [
    p.read_text() for p in sorted((ROOT / "tests" / "steer").glob("*.steer")) if not p.name.startswith("bad_")
] + [
    p.read_text() for p in sorted((ROOT / "examples").glob("*.steer"))
]

PIECES = [
    "program", "p", "(", ")", ":", "\n", "    ", "\t", "=", "==", "~", "where", "observe", "condition",
    "factor", "twist", "finish", "return", "break", "continue", "pass", "if", "elif", "else", "for",
    "in", "repeat", "while", "and", "or", "not", "True", "False", "[", "]", ",", ".", "+", "-", "*",
    "/", "//", "%", "**", "<", ">=", "!=", '"', "'", "\\", "#", "0", "1", "2.5", "1e400", "-1",
    "ctx", "tok", "lm", "EOS", "next_token", "text", "tokens", "__class__", "__import__", "open",
    "lacks", "contains", "len", "bernoulli", "categorical", "geometric", "uniform_int", "range",
    "x", "n", "\"e\"", "[1, 2]", "()", "(((", ")))", "10 ** 10", "\r\n", "\u00e9", "\x00", "{",
]

SMALL_LIMITS = {"max_steps": 40, "max_iterations": 2000}


def compile_or_error(source: str):
    try:
        return dsl.compile(source, "prop.steer", **SMALL_LIMITS)
    except dsl.DSLError as exc:
        assert exc.diagnostics, "a DSLError always lists its diagnostics"
        for d in exc.diagnostics:
            assert d.filename == "prop.steer" and d.line >= 1 and d.column >= 1 and d.message
        assert isinstance(str(exc), str)
        return None


def run_or_located_error(factory) -> None:
    try:
        model = factory(toy_lm())
    except dsl.DSLArgumentError:
        return  # a parameter without a default
    try:
        ppl.infer(model, method="steer", n_particles=2, expand=2, seed=0)
    except ppl.InferenceError as exc:
        assert isinstance(exc.__cause__, ppl.PPLError), repr(exc.__cause__)


@st.composite
def mutated(draw):
    source = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "dup_line", "drop_line", "indent"]))
        n = len(source)
        i = draw(st.integers(0, max(n - 1, 0)))
        if kind == "delete":
            j = draw(st.integers(i, min(n, i + 12)))
            source = source[:i] + source[j:]
        elif kind == "insert":
            source = source[:i] + draw(st.sampled_from(PIECES)) + source[i:]
        elif kind == "replace":
            j = draw(st.integers(i, min(n, i + 6)))
            source = source[:i] + draw(st.sampled_from(PIECES)) + source[j:]
        else:
            lines = source.split("\n")
            k = draw(st.integers(0, len(lines) - 1))
            if kind == "dup_line":
                lines.insert(k, lines[k])
            elif kind == "drop_line":
                del lines[k]
            else:
                lines[k] = draw(st.sampled_from(["", " ", "    ", "\t", "        "])) + lines[k].lstrip()
            source = "\n".join(lines)
    return source


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=300))
def test_arbitrary_text_gives_a_program_or_a_dsl_error(text):
    compile_or_error(text)
    compile_or_error("program p():\n" + text)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(PIECES), max_size=40).map(" ".join))
def test_token_soup_gives_a_program_or_a_dsl_error(text):
    compile_or_error(text)
    compile_or_error("program p(n: int = 2):\n    " + text)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_programs_give_a_program_or_a_dsl_error(source):
    factory = compile_or_error(source)
    if factory is not None:
        run_or_located_error(factory)
