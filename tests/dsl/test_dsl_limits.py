"""The budgets of ``.steer`` programs (``ppl.dsl.Limits``): what a program
builds is bounded before it is built, a step's work and a run's time are
bounded, the checker refuses the work the run would refuse (and stops
folding past its own budget), and every failure is a located error naming
the limit and how to raise it. Error messages stay short whatever the size
of the prompt or of the values."""

from __future__ import annotations

import time

import pytest
from support.toy_programs import toy_lm

import ppl
import ppl.dsl as dsl
from ppl.dsl import limits as dsl_limits


def body(*lines: str, params: str = "n: int = 1") -> str:
    return f"program bomb({params}):\n" + "".join(f"    {line}\n" for line in lines)


def check_messages(source: str) -> list[str]:
    return [d.format().split("\n")[0] for d in dsl.check_source(source, "bomb.steer")]


def run_error(source: str, method: str = "steer", params: dict | None = None, **limits) -> dsl.DSLRuntimeError:
    factory = dsl.compile(source, "bomb.steer", **limits)
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(factory(toy_lm(), **(params or {})), method=method, n_particles=2,
                  **({"expand": 2} if method == "steer" else {}), seed=0)
    cause = info.value.__cause__
    assert isinstance(cause, dsl.DSLRuntimeError), repr(cause)
    return cause


# -- the checker refuses what the run would refuse, without doing it -------------
@pytest.mark.parametrize("expr,message", [
    ('"a" * 10000000', "bomb.steer:2:9: the string would have 10000000 characters, more than 1000000 "
                       "(limit: max_length; raise it with limits=Limits(max_length=...))"),
    ('str(["a" * 100000] * 100000)', "bomb.steer:2:9: the string would have 1000016 characters"),
    ("[0] * 10 ** 9", "bomb.steer:2:9: the list would have 1000000000 elements, more than 1000000"),
    ("range(10 ** 12)", "bomb.steer:2:9: the list would have 1000000000000 elements"),
    ("2 ** 99999 * 2 ** 99999", "bomb.steer:2:9: int of 100000 bits * int of 100000 bits would be an integer of "
                                "about 200000 bits, more than 100000 (limit: max_int_bits"),
    ("10 ** 10 ** 6", "bomb.steer:2:9: int 10 ** int 1000000 would be an integer of about 3321929 bits"),
])
def test_constant_folding_refuses_what_the_run_would_refuse(expr, message):
    start = time.process_time()
    messages = check_messages(body(f"x = {expr}"))
    assert time.process_time() - start < 30  # a guard against hanging only, not a timing test
    assert len(messages) == 1 and messages[0].startswith(message), messages


def test_folding_stops_quietly_past_the_checks_own_budget(monkeypatch):
    source = body('x = 1 / (len("a" * 100000) - 100000)')
    assert check_messages(source) == ["bomb.steer:2:9: division by zero"]
    monkeypatch.setattr(dsl_limits, "CHECK_OPERATIONS", 10)
    assert check_messages(source) == []  # not folded: the run will report it
    assert str(run_error(source)).startswith("bomb.steer:2:9: division by zero")


def test_round_to_a_huge_power_of_ten_is_not_built():
    assert check_messages(body("x = round(5, 0 - 10 ** 9) + 1")) == []
    assert dsl.compile(body("return round(123456789, 0 - 10 ** 9)"))(toy_lm()) is not None


# -- the same bounds at run time, located ------------------------------------------
@pytest.mark.parametrize("lines,where,limit", [
    (['x = "a" * (n * 10000000)'], "bomb.steer:2:9", "max_length"),
    (['s = "ab"', "while True:", "    s = s + s"], "bomb.steer:4:13", "max_length"),
    (["x = n + 1", "while True:", "    x = x * x"], "bomb.steer:4:13", "max_int_bits"),
    (['s = "a" * 500000', "repeat 100000:", '    t = s + "b"'], "bomb.steer:4:13", "max_operations"),
    (["xs = [range(1000)] * 1000", "c = count(xs, range(1000))", "repeat 10:", "    c = count(xs, range(1000))"],
     "bomb.steer:3:9", "max_operations"),
    (["x = str(range(n * 1000000))"], "bomb.steer:2:9", "max_length"),
])
def test_runtime_budgets_are_located_errors_naming_the_limit(lines, where, limit):
    exc = run_error(body(*lines))
    first = str(exc).split("\n")[0]
    assert first.startswith(where) and f"(limit: {limit}; raise it with limits=Limits({limit}=...))" in first, first


def test_the_time_limit_bounds_a_run_and_says_how_to_raise_it():
    source = body("x = 0", "while True:", "    x = (x + 1) % 7")
    exc = run_error(source, max_iterations=10 ** 9, max_operations=10 ** 12, time_limit=0.3)
    first = str(exc).split("\n")[0]
    assert first.startswith("bomb.steer:3:5: the run took longer than its time limit of 0.3 s"), first
    assert "raise it with limits=Limits(time_limit=...); ppl run --time-limit)" in first


def test_the_clock_is_shared_by_the_particles_of_a_run():
    """Every clone of one run stops at the same deadline: the run lasts about
    one time limit, not one per particle (each particle's step alone would
    take longer than the limit; the bound asserted is loose)."""
    source = body("x = 0", "while True:", "    x = (x + 1) % 7")
    factory = dsl.compile(source, "bomb.steer", max_iterations=10 ** 9, max_operations=10 ** 12, time_limit=0.5)
    model = factory(toy_lm())
    for _ in range(2):  # the same root model starts a fresh clock for each run
        start = time.monotonic()
        with pytest.raises(ppl.InferenceError, match="time limit"):
            ppl.infer(model, method="smc", n_particles=8, seed=0)
        assert time.monotonic() - start < 8 * 0.5


def test_nesting_and_python_errors_are_located():
    assert "lists nested more than 100 deep" in str(run_error(body("x = []", "while True:", "    x = [x]")))
    exc = run_error(body("factor 10 ** (n * 400)"))
    assert str(exc).startswith("bomb.steer:2:5: factor of int of 1329 bits: the number is too large for a log weight")
    exc = run_error(body('ctx = lm("")', "observe ctx.next_token() = 10 ** 30"))
    assert "is outside the vocabulary (size 4)" in str(exc)


def test_a_simple_distributions_errors_are_located():
    exc = run_error(body("observe geometric(0.5) = 10 ** (n * 400)"), method="is")
    assert str(exc).startswith("bomb.steer:2:5: OverflowError observing <int of 1329 bits>: ")


def test_every_method_reports_the_same_located_error():
    for method in ("steer", "smc", "is"):
        exc = run_error(body('x = "a" * (n * 10000000)'), method=method)
        assert str(exc).startswith("bomb.steer:2:9: the string would have 10000000 characters")


# -- the limits as values -------------------------------------------------------
def test_limits_are_given_by_name_or_as_a_value():
    src = body("pass")
    assert dsl.compile(src).limits == dsl.Limits()
    f = dsl.compile(src, time_limit=2.5, max_length=10)
    assert (f.time_limit, f.limits.max_length, f.max_steps) == (2.5, 10, dsl.DEFAULT_MAX_STEPS)
    g = dsl.compile(src, limits=dsl.Limits(max_steps=3), max_iterations=9)
    assert (g.max_steps, g.max_iterations) == (3, 9)
    assert g.with_limits(time_limit=1).limits == dsl.Limits(max_steps=3, max_iterations=9, time_limit=1)
    assert g(toy_lm()).limits == g.limits
    with pytest.raises(ValueError, match="time_limit must be a number of seconds > 0 or None, got -1"):
        dsl.compile(src, time_limit=-1)
    with pytest.raises(ValueError, match="max_length must be an int >= 1, got 0"):
        dsl.Limits(max_length=0)
    with pytest.raises(ValueError, match="unknown limit 'max_lenght'; the limits are: max_int_bits, max_iterations"):
        dsl.compile(src, max_lenght=3)


def test_a_smaller_length_limit_applies_to_the_check_and_the_run():
    src = body('x = "ab" * 10')
    assert dsl.compile(src, max_length=20) is not None
    with pytest.raises(dsl.DSLError, match=r"bomb.steer:2:9: the string would have 20 characters, more than 19"):
        dsl.compile(src, "bomb.steer", max_length=19)


def test_parameters_are_bounded_too():
    f = dsl.compile(body("pass", params="xs: list = []"), max_length=5)
    with pytest.raises(dsl.DSLArgumentError, match="has 6 elements, more than the limit of 5"):
        f(toy_lm(), xs=[1] * 6)
    deep: list = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(dsl.DSLArgumentError, match="nested more than 100 deep"):
        f.with_limits(max_length=10)(toy_lm(), xs=deep)


# -- big programs: the check is bounded (measured, not asserted) -----------------------
def big_program(line) -> str:
    lines, i = ["program big(prompt: str = \"hi\", n: int = 3):", "    ctx = lm(prompt)"], 0
    while sum(map(len, lines)) < 100_000:
        lines.append("    " + line(i))
        i += 1
    return "\n".join(lines + ["    return ctx.text", ""])


@pytest.mark.parametrize("kind,line,expect", [
    ("statements", lambda i: f"x{i} = {i} + {i} * 2 - len(\"abc\") + count(\"aaaa\", \"a\")", 0),
    ("folds", lambda i: f"x{i} = len(str([\"a\" * 1000] * 900)) + count(\"a\" * 99999, \"a\")", 0),
    ("undefined names", lambda i: f"x{i} = y{i} + lenn(z{i})", None),
    ("syntax errors", lambda i: f"x{i} = {i} +" if i % 100 == 99 else f"x{i} = {i}", None),
])
def test_a_100_kb_program_is_checked_within_bounds(kind, line, expect):
    source = big_program(line)
    assert len(source) > 100_000
    start = time.process_time()
    diagnostics = dsl.check_source(source, "big.steer")
    print(f"\ncheck of a {len(source) // 1000} KB program ({kind}): {time.process_time() - start:.2f} s CPU, "
          f"{len(diagnostics)} diagnostics")
    if expect is not None:
        assert len(diagnostics) == expect
    else:
        assert diagnostics and all(d.line >= 1 for d in diagnostics)


def test_a_deeply_nested_expression_is_reported_not_crashed():
    source = "program p():\n    x = " + " + ".join(["1"] * 20000) + "\n"
    (d,) = dsl.check_source(source, "deep.steer")
    assert d.message == "the program is nested too deeply to be read"


# -- short messages -------------------------------------------------------------------
def test_errors_on_a_2000_token_prompt_stay_short():
    prompt = "ab" * 1000  # the toy model has one token a character: 2,000 tokens
    src = body("ctx = lm(prompt)", "observe ctx = prompt + \"x\" * 5000", params="prompt: str")
    exc = run_error(src, params={"prompt": prompt})
    first = str(exc).split("\n")[0]
    assert first.startswith("bomb.steer:3:5: observe <LMContext 'ababab") and "' + '' (2000+0 tokens)> = " in first
    assert len(first) < 300, first
    # the whole InferenceError (with the source line and caret) stays short too
    factory = dsl.compile(src, "bomb.steer")
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(factory(toy_lm(), prompt=prompt), method="steer", n_particles=2, expand=2, seed=0)
    assert len(str(info.value)) < 600, str(info.value)


def test_a_context_repr_has_head_tail_and_token_counts():
    lm = toy_lm()
    ctx = lm.context("ab" * 1000)
    for _ in range(300):
        ctx._append(0)
    text = repr(ctx)
    assert text.startswith("<LMContext 'ababab") and "...' + '...aaaa" in text and "(2000+300 tokens)" in text
    assert len(text) < 140, text


def test_a_particles_repr_is_short_however_big_its_value():
    f = dsl.compile(body('return "x" * 100000'))
    result = ppl.infer(f(toy_lm()), method="is", n_particles=1, seed=0)
    assert len(repr(result.particles[0])) < 200
