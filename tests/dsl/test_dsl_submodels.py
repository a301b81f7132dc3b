"""Programs that call programs in a ``.steer`` file (``x = call f(args)``):
the DSL's submodels, ``await ppl.call(sub)`` of the Python forms. The
callee's body runs in place on the calling particle, as one step block, and
its value comes back: checker messages at FILE:LINE:COL, the exact answer by
enumeration on the toy LM, and the very same run as the Python ``ppl.call``
forms (and the program written inline), seed for seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.stats import check_mean, check_posterior
from support.toy_programs import (
    MAX_LEN,
    Ending,
    Scored,
    ScoredNested,
    ScoredToken,
    scored_call_fn,
    scored_fn,
    scored_nested_fn,
    toy_lm,
)

import ppl
import ppl.dsl as dsl

METHODS = [("steer", {"n_particles": 4, "expand": 3}), ("smc", {"n_particles": 4, "ess_threshold": 0.8})]

SCORED_TOKEN = '''program scored_token(ctx: context):
    tok ~ ctx.next_token()
    factor 0.5 * (tok == "a")
    return tok
'''

ENDING = '''program ending(ctx: context):
    text = ctx.text
    condition not ("cc" in text)
    observe bernoulli(0.7) = len(text) % 2 == 0
'''

#: Scored (tests/support/toy_programs.py) with its token a call; the end inline
SCORED_CALL = SCORED_TOKEN + '''
program scored():
    ctx = lm("")
    while True:
        tok = call scored_token(ctx)
        if tok.is_eos or len(ctx) == 4:
            text = ctx.text
            condition not ("cc" in text)
            observe bernoulli(0.7) = len(text) % 2 == 0
            return text
'''

#: both pieces calls, in one step block (a call is a block: two in a step need an enclosing one)
SCORED_TWO_CALLS = SCORED_TOKEN + ENDING + '''
program scored():
    ctx = lm("")
    while True:
        step:
            tok = call scored_token(ctx)
            if tok.is_eos or len(ctx) == 4:
                text = call ending(ctx)
                return text
'''

#: the whole step one call, with nested calls inside; the programs in any order
SCORED_NESTED = '''program scored():
    ctx = lm("")
    done = False
    while not done:
        done = call scored_step(ctx)
    return ctx.text

program scored_step(ctx: context):
    tok = call scored_token(ctx)
    if tok.is_eos or len(ctx) == 4:
        call ending(ctx)
        return True
    return False

''' + SCORED_TOKEN + ENDING


# -- the Python forms (the submodels are those of tests/support/toy_programs.py) -------------------


@ppl.program
async def scored_two_calls_fn(lm):
    ctx = lm.context("")
    while True:
        async with ppl.step():
            tok = await ppl.call(ScoredToken(ctx))
            if tok.is_eos or len(ctx) == MAX_LEN:
                return await ppl.call(Ending(ctx))


def key(particle):
    if particle.dead:
        return None  # a dead function particle has no value
    return particle.ctx.text if hasattr(particle, "ctx") else particle.value


def same_run(a, b) -> None:
    assert [key(p) for p in a.particles] == [key(p) for p in b.particles]
    assert np.array_equal(a.log_weights, b.log_weights)
    assert a.log_Z == b.log_Z
    assert a.n_steps == b.n_steps
    assert a.resampled_at == b.resampled_at


FORMS = [(SCORED_CALL, scored_call_fn), (SCORED_TWO_CALLS, scored_two_calls_fn), (SCORED_NESTED, scored_nested_fn)]


@pytest.mark.parametrize("method,options", METHODS, ids=[m for m, _ in METHODS])
@pytest.mark.parametrize("index", range(len(FORMS)), ids=["call", "two-calls-in-a-block", "nested"])
def test_calls_give_the_python_call_run_and_the_inline_run(index, method, options):
    source, python_form = FORMS[index]
    factory = dsl.compile(source, "t.steer")
    assert factory.name == "scored"
    lm = toy_lm()
    for seed in range(4):
        steer = ppl.infer(factory(lm), method=method, seed=seed, **options)
        same_run(ppl.infer(python_form(lm), method=method, seed=seed, **options), steer)
        same_run(ppl.infer(scored_fn(lm), method=method, seed=seed, **options), steer)  # written inline
        same_run(ppl.infer(Scored(lm), method=method, seed=seed, **options), steer)
    same_run(ppl.infer(ScoredNested(lm), method="steer", seed=0, n_particles=4, expand=3),
             ppl.infer(factory(lm), method="steer", seed=0, n_particles=4, expand=3))


def test_the_reference_example_is_scored():
    """docs/dsl.md's example of calls is the very same model as Scored."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "dsl.md").read_text(encoding="utf-8")
    start = doc.index("# Scored (tests/support/toy_programs.py) written with two submodels")
    factory = dsl.compile(doc[start:doc.index("```", start)], "dsl.md")
    lm = toy_lm()
    for seed in range(3):
        for method, options in METHODS:
            same_run(ppl.infer(Scored(lm), method=method, seed=seed, **options),
                     ppl.infer(factory(lm), method=method, seed=seed, **options))


M = 150  # runs for each exact check


@pytest.mark.parametrize("index", [0, 2], ids=["call", "nested"])
def test_calls_have_the_exact_target(index):
    """Against enumeration: Z and the posterior of Scored's target."""
    factory = dsl.compile(FORMS[index][0], "t.steer")
    lm = toy_lm()
    Z, exact = Scored.exact(lm)
    runs = []
    for m in range(M):
        r = ppl.infer(factory(lm), method="steer", n_particles=6, expand=3, seed=40_000 + m)
        runs.append((math.exp(r.log_Z), r.posterior()))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, exact, 6)


PIECE_CALLED = """program piece(ctx: context, bad: str, bonus: float = 0.2):
    k ~ bernoulli(0.3)
    for i in range(2):
        k = k or i == 5
    t ~ ctx.next_token() where lacks(bad) where_checked text: not ("ab" in text)
    twist -0.5 * count(ctx.text, "a")
    if k:
        factor bonus
    return t

program main():
    ctx = lm("")
    repeat 4:
        tok = call piece(ctx, "c")
        if tok.is_eos: return ctx.text
    return ctx.text
"""

#: the same, the body written in place as the step block a call is
PIECE_INLINE = """program main():
    ctx = lm("")
    repeat 4:
        step:
            k ~ bernoulli(0.3)
            for i in range(2):
                k = k or i == 5
            tok ~ ctx.next_token() where lacks("c") where_checked text: not ("ab" in text)
            twist -0.5 * count(ctx.text, "a")
            if k:
                factor 0.2
        if tok.is_eos: return ctx.text
    return ctx.text
"""


@pytest.mark.parametrize("method,options", METHODS, ids=[m for m, _ in METHODS])
def test_a_call_is_its_body_in_place(method, options):
    """Samples of simple distributions, a loop, where, where_checked, twist
    and factor in the callee: the very same run as the body written inline."""
    called, inline = dsl.compile(PIECE_CALLED, "t.steer"), dsl.compile(PIECE_INLINE, "t.steer")
    lm = toy_lm()
    for seed in range(5):
        a = ppl.infer(inline(lm), method=method, seed=seed, **options)
        b = ppl.infer(called(lm), method=method, seed=seed, **options)
        assert [p.value for p in a.particles] == [p.value for p in b.particles]
        assert np.array_equal(a.log_weights, b.log_weights) and a.log_Z == b.log_Z
        assert a.n_steps == b.n_steps


# -- a call is one step -------------------------------------------------------------------------

TWO_TOKENS = '''program two_tokens(ctx: context):
    t1 ~ ctx.next_token() where not_eos()
    factor -0.5 * (t1 == "a")
    t2 ~ ctx.next_token()
    return t2
'''


class TwoTokens(ppl.Submodel):
    def __init__(self, ctx):
        self.ctx = ctx

    async def forward(self):
        t1 = await self.sample(self.ctx.next_token().where(ppl.not_eos()))
        self.factor(-0.5 * (t1.text == "a"))
        return await self.sample(self.ctx.next_token())


@ppl.program
async def twice_fn(lm):
    ctx = lm.context("")
    while True:
        t2 = await ppl.call(TwoTokens(ctx))
        if t2.is_eos or len(ctx) >= 4:
            return ctx.text


def test_a_call_with_two_tokens_is_one_step():
    factory = dsl.compile(TWO_TOKENS + '''
program twice():
    ctx = lm("")
    while True:
        t2 = call two_tokens(ctx)
        if t2.is_eos or len(ctx) >= 4:
            return ctx.text
''', "t.steer")
    lm = toy_lm()
    for seed in range(3):
        a = ppl.infer(twice_fn(lm), method="steer", n_particles=4, expand=3, seed=seed)
        b = ppl.infer(factory(lm), method="steer", n_particles=4, expand=3, seed=seed)
        same_run(a, b)
        assert b.n_steps == 2


@ppl.program
async def token_then_ending_fn(lm):
    ctx = lm.context("")
    while True:
        tok = await ppl.sample(ctx.next_token())
        if tok.is_eos or len(ctx) == MAX_LEN:
            return await ppl.call(Ending(ctx))  # a block: the step ends before it


def test_the_step_ends_before_a_call_after_a_token_as_in_python():
    factory = dsl.compile(ENDING + '''
program p():
    ctx = lm("")
    while True:
        tok ~ ctx.next_token()
        if tok.is_eos or len(ctx) == 4:
            text = call ending(ctx)
            return text
''', "t.steer")
    lm = toy_lm()
    for seed in range(3):
        for method, options in METHODS:
            a = ppl.infer(token_then_ending_fn(lm), method=method, seed=seed, **options)
            b = ppl.infer(factory(lm), method=method, seed=seed, **options)
            same_run(a, b)
    # with the token and the call in one block, the same draws take one step less
    grouped = dsl.compile(ENDING + """
program p():
    ctx = lm("")
    while True:
        step:
            tok ~ ctx.next_token()
            if tok.is_eos or len(ctx) == 4:
                text = call ending(ctx)
                return text
""", "t.steer")
    for seed in range(3):
        a = ppl.infer(factory(lm), method="is", n_particles=4, seed=seed)
        b = ppl.infer(grouped(lm), method="is", n_particles=4, seed=seed)
        assert a.log_Z == b.log_Z
        assert sorted(zip(a.log_weights, [p.value for p in a.particles])) == \
            sorted(zip(b.log_weights, [p.value for p in b.particles]))
        assert a.n_steps == b.n_steps + 1


# -- values, names, arguments -------------------------------------------------------------------


def value_of(source: str, **params):
    r = ppl.infer(dsl.compile(source, "t.steer")(toy_lm(), **params), method="is", n_particles=2, seed=0)
    values = {p.value for p in r.particles}
    assert len(values) == 1, values
    return values.pop()


def test_arguments_defaults_keywords_and_values():
    source = '''program scale(x: float, by: int = 2, tag: str = "n"):
    y = x * by
    return [tag, y]

program main(k: int = 3):
    a = call scale(k)
    b = call scale(1, by=k)
    c = call scale(tag="t", x=0.5)
    return [a, b, c]
'''
    assert value_of(source) == (("n", 6.0), ("n", 3.0), ("t", 1.0))  # an int for a float becomes a float
    assert value_of(source, k=4) == (("n", 8.0), ("n", 4.0), ("t", 1.0))


def test_the_callee_has_its_own_names_and_they_do_not_stay():
    source = '''program f(x: int):
    y = x + 1
    for i in range(2):
        y = y + i
    return y

program main():
    y = 100
    i = -1
    a = call f(1)
    b = call f(a)
    return [y, i, a, b]
'''
    factory = dsl.compile(source, "t.steer")
    r = ppl.infer(factory(toy_lm()), method="is", n_particles=1, seed=0)
    (p,) = r.particles
    assert p.value == (100, -1, 3, 5)
    assert not [k for k in p._env if k.startswith("%call")]  # nothing of the callee is left


def test_a_call_that_ends_without_return_gives_its_context_text():
    source = '''program grow(ctx: context):
    tok ~ ctx.next_token() where lacks("bc")
    if tok.is_eos: finish
    observe ctx = "b"

program main():
    ctx = lm("")
    t = call grow(ctx)
    return [t, ctx.text]
'''
    r = ppl.infer(dsl.compile(source, "t.steer")(toy_lm()), method="is", n_particles=8, seed=1)
    for p in r.particles:
        text, full = p.value
        assert text == full and full in ("", "ab")
    assert {p.value[1] for p in r.particles} == {"", "ab"}


def test_a_call_without_a_value_to_give_fails_at_its_place():
    source = '''program noop(k: int):
    factor 0.0

program main():
    call noop(1)
    x = call noop(2)
    return x
'''
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(dsl.compile(source, "t.steer")(toy_lm()), method="is", n_particles=1, seed=0)
    (d,) = info.value.__cause__.diagnostics
    assert (d.location, d.message) == ("t.steer:6:5", "program 'noop' ended without 'return VALUE', and it has "
                                       "no context whose text would be its value; end it with return VALUE")


def test_an_argument_of_the_wrong_type_fails_where_it_is_given():
    source = '''program f(n: int):
    return n + 1

program main(xs: list = ["a"]):
    y = call f(xs[0])
    return y
'''
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(dsl.compile(source, "t.steer")(toy_lm()), method="is", n_particles=1, seed=0)
    (d,) = info.value.__cause__.diagnostics
    assert (d.location, d.message) == ("t.steer:5:16", "argument 'n' of program 'f' must be int, got str 'a'")


def test_an_error_in_a_callee_is_located_in_the_callee():
    source = '''program f(n: int):
    return 10 // n

program main():
    y = call f(0)
    return y
'''
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(dsl.compile(source, "t.steer")(toy_lm()), method="is", n_particles=1, seed=0)
    assert info.value.__cause__.diagnostics[0].location == "t.steer:2:12"


def test_a_written_predicate_in_a_callee_sees_the_callee_names():
    source = '''program draw(ctx: context, bad: str):
    tok ~ ctx.next_token() where_checked text: not (bad in text)
    return tok

program main():
    ctx = lm("")
    bad = "zz"
    repeat 4:
        tok = call draw(ctx, "c")
        if tok.is_eos: return ctx.text
    return ctx.text
'''
    r = ppl.infer(dsl.compile(source, "t.steer")(toy_lm()), method="steer", n_particles=6, expand=3, seed=0)
    assert r.posterior() and all("c" not in text for text in r.posterior())


# -- the program that runs ------------------------------------------------------------------------


def test_the_program_that_runs():
    two = "program a():\n    return 1\n\nprogram b():\n    return 2\n"
    assert dsl.compile("program a():\n    x = call b()\n    return x\n\nprogram b():\n    return 2\n").name == "a"
    assert dsl.compile(two, program="b").name == "b"
    assert value_of_factory(dsl.compile(two, program="a")) == 1
    with pytest.raises(dsl.DSLError, match=r"t.steer:4:9: t.steer has several programs that no other program "
                                           r"calls \(a, b\), so which one runs is not clear"):
        dsl.compile(two, "t.steer")
    with pytest.raises(dsl.DSLError, match=r"t.steer:1:9: no program named 'c' in t.steer; its programs are a, b"):
        dsl.compile(two, "t.steer", program="c")
    assert dsl.check_source(two, program="a") == []


def value_of_factory(factory):
    r = ppl.infer(factory(toy_lm()), method="is", n_particles=1, seed=0)
    return r.particles[0].value


def test_load_and_the_command_line_find_the_program_that_runs(tmp_path):
    from ppl.cli import find_program

    path = tmp_path / "scored.steer"
    path.write_text(SCORED_NESTED, encoding="utf-8")
    assert dsl.load(path).name == "scored"
    with pytest.raises(dsl.DSLError, match=r"scored.steer:15:27: the program that runs \(scored_token\) cannot "
                                           r"take a context"):
        dsl.load(path, program="scored_token")
    _, name, program, _ = find_program(str(path))
    assert name == "scored" and program.params == ()
    two = tmp_path / "two.steer"
    two.write_text("program a():\n    return 1\nprogram b(k: int = 2):\n    return k\n", encoding="utf-8")
    from ppl.program_files import ProgramFailed

    with pytest.raises(ProgramFailed, match=r"several programs .*ppl run FILE.steer:NAME"):
        find_program(str(two))
    _, name, program, _ = find_program(f"{two}:b")  # FILE.steer:NAME names the one that runs
    assert name == "b" and value_of_factory(program) == 2


# -- checker messages ------------------------------------------------------------------------------


def messages(source: str, **kw) -> list[tuple[int, int, str]]:
    return [(d.line, d.column, d.message) for d in dsl.check_source(source, "t.steer", **kw)]


HELPER = '''program helper(ctx: context, k: int = 2):
    tok ~ ctx.next_token()
    return tok

program main():
    ctx = lm("")
'''


@pytest.mark.parametrize("line, expected", [
    ("t = call helpr(ctx)", (7, 14, "unknown program 'helpr'; did you mean 'helper'?")),
    ("t = call nothing_like_it(ctx)", (7, 14, "unknown program 'nothing_like_it'; the programs of this file "
                                              "are helper, main")),
    ("u = call lacks(\"a\")", (7, 14, "'lacks' is a builtin function, not a program of this file: use it "
                                      "without 'call', as in x = lacks(...)")),
    ("c = call ctx(1)", (7, 14, "'ctx' is a variable, not a program of this file")),
    ("v = call helper(ctx, 1, 2)", (7, 29, "program 'helper' takes 2 arguments (ctx, k), got 3")),
    ("w = call helper(ctx, kk=1)", (7, 26, "program 'helper' has no parameter named 'kk'; did you mean 'k'?")),
    ("x = call helper(k=1)", (7, 14, "program 'helper' needs a value for its parameter 'ctx'")),
    ("call helper(ctx, ctx=ctx)", (7, 22, "program 'helper' got the argument 'ctx' by position and by name")),
    ("y = call helper(ctx, k=\"a\")", (7, 28, "argument 'k' of program 'helper' must be int, got str")),
    ("z = call helper(\"x\")", (7, 21, "argument 'ctx' of program 'helper' must be a context, got str")),
    ("z = call helper(ctx.next_token())", (7, 21, "a next-token distribution cannot be passed to a program; "
                                                  "sample it first")),
    ("a = helper(ctx)", (7, 9, "'helper' is a program, not a builtin: run it in a statement of its own, "
                               "x = call helper(...)")),
    ("b = helper", (7, 9, "'helper' is a program, not a value: run it with x = call helper(...)")),
    ("len = call helper(ctx)", (7, 5, "cannot use the builtin function 'len' as a variable name; choose another name")),
], ids=lambda v: v if isinstance(v, str) else "")
def test_call_errors_are_located(line, expected):
    assert messages(HELPER + "    " + line + "\n") == [expected]


@pytest.mark.parametrize("line, expected", [
    ("call = 1", (7, 10, "'call' is a word of the language, not a name: 'call NAME(ARGUMENTS)' runs another "
                         "program of the file; choose another name")),
    ("x = 1 + call helper(ctx)", (7, 13, "a call of a program is a statement of its own: x = call NAME(ARGUMENTS), "
                                         "or call NAME(ARGUMENTS) when its value is not needed")),
    ("return call helper(ctx)", (7, 12, "a call of a program is a statement of its own: x = call NAME(ARGUMENTS), "
                                        "or call NAME(ARGUMENTS) when its value is not needed")),
    ("x = call helper", (7, 20, "'call' names the program to run and its arguments: call NAME(ARGUMENTS)")),
])
def test_call_syntax_errors(line, expected):
    assert messages(HELPER + "    " + line + "\n") == [expected]


def test_recursion_is_reported_at_each_call_on_the_cycle():
    source = '''program a(n: int):
    call b(n)

program b(n: int):
    if n > 0:
        call a(n - 1)

program c():
    call c()

program main():
    call a(1)
    call c()
'''
    why = "a program cannot be recursive (a call runs the called body in place); write the repetition as a loop"
    assert messages(source) == [
        (2, 10, f"program 'a' calls itself through a -> b -> a: {why}"),
        (6, 14, f"program 'b' calls itself through b -> a -> b: {why}"),
        (9, 10, f"program 'c' calls itself: {why}"),
    ]


def test_header_and_file_errors():
    assert messages("program a():\n    pass\n\nprogram a():\n    pass\n") == [
        (4, 9, "a program named 'a' is already defined at line 1")]
    assert messages("program a(ctx: context, tok: token):\n    pass\n") == [
        (1, 16, "the program that runs (a) cannot take a context: its arguments come from the command line or "
                "Python; only a program called by another can have the parameter 'ctx: context'"),
        (1, 30, "the program that runs (a) cannot take a token: its arguments come from the command line or "
                "Python; only a program called by another can have the parameter 'tok: token'")]
    # a broken header of a second program is one error; the rest is still checked
    assert messages("program a(x: str):\n    pass\n\nprogram b(:\n    y = undefined_name\n"
                    "\nprogram main():\n    call a(1)\n") == [
        (4, 11, "unexpected ':'; expected a name or ')'"),
        (5, 9, "undefined name 'undefined_name'"),
        (8, 12, "argument 'x' of program 'a' must be str, got int")]
    assert messages("program a():\n    pass\nx = 1\n") == [
        (3, 1, "a statement outside every program: a program's statements are indented under its header, "
               "and another program starts with program NAME(PARAMETERS):")]


def test_inlining_is_bounded():
    from ppl.dsl.calls import MAX_INLINED

    levels = ["program p0():\n    pass\n"]
    for i in range(1, 16):  # each program calls the one below twice: 2^15 copies of p0
        levels.append(f"program p{i}():\n    call p{i - 1}()\n    call p{i - 1}()\n")
    source = "\n".join(levels[::-1])
    assert messages(source) == [
        (1, 9, f"program 'p15' has more than {MAX_INLINED} statements once its calls are inlined (each call "
               "copies the called program's body): call the large programs from fewer places")]
    assert messages("\n".join(levels[:8][::-1])) == []  # 2^7 copies are fine


def test_call_is_a_keyword():
    registry = dsl.BUILTINS.copy()
    with pytest.raises(ValueError, match="'call' is a keyword and cannot name a builtin"):
        dsl.builtin(lambda s: s, name="call", registry=registry)
