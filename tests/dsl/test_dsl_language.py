"""The steer language: every construct parses and runs on the toy LM; the
particles' explicit state, cloning, steps, parameters, limits and builtins."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math

import numpy as np
import pytest
from support.toy_programs import toy_lm

import ppl
import ppl.dsl as dsl
from ppl.dsl import ast
from ppl.dsl.codegen import SAMPLE
from ppl.dsl.parser import parse


def run(source: str, *, method="steer", n=4, k=2, seed=0, lm=None, **params):
    program = dsl.compile(source, "t.steer")
    return ppl.infer(program(lm or toy_lm(), **params), method=method, n_particles=n,
                     **({"expand": k} if method == "steer" else {}), seed=seed)


def value_of(source: str, **params):
    """The result of a program that samples no language-model token (it
    finishes in its first step, and all particles agree)."""
    r = run(source, **params)
    values = {p.value for p in r.particles}
    assert len(values) == 1, values
    return values.pop()


# -- every construct ---------------------------------------------------------------------------

EVERY_CONSTRUCT = '''\
# a comment line
program everything(prompt: str = "", n: int = 3, scale: float = 0.5, flag: bool = True,
                   words_: list = ["a", 'b\\tc'],):   # a comment after the header
    ctx = lm(prompt)
    other = lm("a")
    observe other = "b"                       # a whole string on a context
    observe other.next_token() = "a"          # one token, by its text
    xs = [1, 2.5, "s", True, False, [1, [2]], -3, +4]
    total = 0
    for x in [1, 2, 3]:
        if x == 2:
            continue
        total = total + x
    repeat n:
        total = total * 2
    i = 0
    while i < 10:
        i = i + 1
        if i >= 3: break
    if flag and not (total < 0) or False:
        y = 1
    elif total in [1, 2]:
        y = 2
    else:
        y = 3
    coin ~ bernoulli(scale)
    k ~ geometric(0.5)
    c ~ categorical([0.25, 0.75], ["x", "y"])
    u ~ uniform_int(1, 3)
    condition u >= 1 and u <= 3
    factor log(0.5) * 0
    twist -0.1 * len(ctx.text)
    tok ~ ctx.next_token() where lacks("c") and not contains("b")
    observe bernoulli(0.9) = True
    text = ctx.text + str(tok) + lower("AB") + upper("c")
    s = text[0:2] + text[:1] + text[1:] + text[:]
    stats = [len(xs), xs[5][1][0], 7 // 2, 7 % 3, 2 ** 3, 1 / 4, abs(-2), min(3, 1), max([1, 5]),
             exp(0), sqrt(4.0), round(2.6), sum([1, 2]), int("3"), float("2.5"), count("aaa", "a"),
             startswith("abc", "ab"), endswith("abc", "bc"), words(" a  b "), syllables("beautiful"),
             "a" not in "xyz", tok.is_eos == (tok == EOS), tok.id >= 0, len(ctx.tokens), range(2), strip(" a "),
             inf > 1, pi > 3, EOS == EOS]
    pass
    return [total, i, y, stats, len(s) > 0, words_]
'''


def test_every_construct_parses_and_runs():
    assert dsl.check_source(EVERY_CONSTRUCT) == []
    r = run(EVERY_CONSTRUCT, n=8, k=2)
    assert r.status == "ok"
    for p in r.particles:
        total, i, y, stats, nonempty, words_ = p.value
        assert total == (1 + 3) * 8 and i == 3 and y == 1 and nonempty
        assert list(stats) == [8, 2, 3, 1, 8, 0.25, 2, 1, 5, 1.0, 2.0, 3, 3, 3, 2.5, 3, True, True,
                         ("a", "b"), 3, True, True, True, 1, (0, 1), "a", True, True, True]
        assert words_ == ("a", "b\tc")


def test_the_ast_is_frozen_dataclasses_with_places():
    program, diags, _ = parse(EVERY_CONSTRUCT, "t.steer")
    assert diags == [] and isinstance(program, ast.Program)
    nodes = list(ast.walk(program))
    kinds = {type(n).__name__ for n in nodes}
    assert kinds >= {"Assign", "Sample", "Observe", "Condition", "Factor", "Twist", "Return", "Break",
                     "Continue", "Pass", "If", "For", "Repeat", "While", "Const", "Name", "ListExpr",
                     "BinOp", "Compare", "BoolOp", "UnaryOp", "Index", "Slice", "Attribute",
                     "MethodCall", "Call"}
    for n in nodes:
        assert dataclasses.is_dataclass(n)
        if not isinstance(n, ast.Program):
            assert n.line >= 1 and n.column >= 1, n
    with pytest.raises(dataclasses.FrozenInstanceError):
        program.name = "other"
    sample = next(n for n in nodes if isinstance(n, ast.Sample) and n.where is not None)
    assert (sample.line, sample.column) == (33, 5)
    assert (sample.where.line, sample.where.column) == (33, 34)


def test_finish_returns_the_text_of_the_last_context():
    r = run("program p():\n    ctx = lm(\"\")\n    observe ctx = \"ab\"\n    finish\n")
    assert {p.value for p in r.particles} == {"ab"}
    assert r.posterior() == {"ab": 1.0}


def test_falling_off_the_end_finishes():
    r = run("program p():\n    ctx = lm(\"\")\n    tok ~ ctx.next_token() where lacks(\"bc\")\n")
    assert set(r.posterior()) <= {"a", ""}


def test_values_and_operators():
    assert value_of("program p():\n    return [1 + 2 * 3, (1 + 2) * 3, -2 ** 2, 2 ** -1, 10 - 4 - 3]\n") == (7, 9, -4, 0.5, 3)
    assert value_of("program p():\n    return [\"ab\" * 2, [1] * 3, \"a\" + \"b\", [1] + [2]]\n") == ("abab", (1, 1, 1), "ab", (1, 2))
    assert value_of("program p():\n    return [1 < 2, \"a\" < \"b\", 1 == 1.0, [1, 2] == [1, 2], 1 != 2]\n") == (True,) * 5
    assert value_of("program p():\n    return [0 or 5, 3 and 0, not 0, \"\" or \"x\"]\n") == (5, 0, True, "x")
    assert value_of("program p():\n    return \"line\\nbreak \\\"q\\\" \\u00e9 \\x41\"\n") == 'line\nbreak "q" é A'
    assert value_of("program p():\n    x = [1, 2, 3]\n    return [x[-1], x[1:], x[:-1], \"hello\"[1:3]]\n") == (3, (2, 3), (1, 2), "el")


def test_tokens_compare_with_text_ids_and_eos():
    src = '''program p():
    ctx = lm("")
    observe ctx.next_token() = "a"
    tok = ctx.tokens[0]
    return [tok == "a", tok == 0, tok != "b", tok == EOS, "a" in tok, tok.text + "!", len(tok)]
'''
    assert value_of(src) == (True, True, True, False, True, "a!", 1)


def test_observe_eos_ends_the_context():
    src = '''program p():
    ctx = lm("")
    observe ctx.next_token() = EOS
    return ctx.tokens[0] == EOS
'''
    r = run(src)
    assert {p.value for p in r.particles} == {True}
    lm = toy_lm()
    expected = math.log(lm.next_probs(())[3])
    assert r.log_Z == pytest.approx(expected)


def test_observe_a_string_weighs_by_its_probability():
    lm = toy_lm()
    r = run("program p():\n    ctx = lm(\"\")\n    observe ctx = \"ab\"\n    return ctx.text\n", lm=lm)
    expected = math.log(lm.next_probs(())[0]) + math.log(lm.next_probs((0,))[1])
    assert r.log_Z == pytest.approx(expected)


def test_constraints_combine_with_and_or_not():
    src = '''program p(mode: int = 0):
    ctx = lm("")
    repeat 3:
        if mode == 0:
            tok ~ ctx.next_token() where lacks("a") and lacks("b")
        elif mode == 1:
            tok ~ ctx.next_token() where contains("a") or contains("b")
        else:
            tok ~ ctx.next_token() where not contains("a")
        if tok == EOS: finish
    return ctx.text
'''
    for mode, banned in ((0, "ab"), (1, "c"), (2, "a")):
        r = run(src, mode=mode, n=6)
        assert r.posterior() and all(not set(text) & set(banned) for text in r.posterior())


# -- steps, clones, explicit state ---------------------------------------------------------------


def _advance(particle, rng, times=1):
    from ppl.runtime.scheduler import Scheduler

    async def go():
        sched = Scheduler()
        for _ in range(times):
            await sched.gather([particle.advance(rng)])

    asyncio.run(go())


def test_each_step_holds_one_token_and_what_follows():
    src = '''program p():
    ctx = lm("")
    x = 0
    repeat 3:
        tok ~ ctx.next_token() where lacks("c")
        x = x + 1
        factor 0.0
        if tok == EOS: finish
    return x
'''
    lm = toy_lm()
    p = dsl.compile(src)(lm)
    rng = np.random.default_rng(0)
    _advance(p, rng)
    # one token drawn, the statements after it ran, stopped before the next token
    assert len(p._env["ctx"]) == 1 and p._env["x"] == 1 or p.done
    assert p._program.code[p._pc].op == SAMPLE or p.done


def test_clones_copy_the_explicit_state_and_share_the_sequence():
    src = '''program p():
    ctx = lm("")
    n = 0
    while True:
        tok ~ ctx.next_token() where lacks("c")
        n = n + 1
        if tok == EOS or n == 4:
            return [n, ctx.text]
'''
    lm = toy_lm()
    p = dsl.compile(src)(lm)
    rng = np.random.default_rng(3)
    _advance(p, rng, 2)
    assert not p.done
    rows = lm.rows
    c = p.clone()
    assert c._env is not p._env and c._env["ctx"] is not p._env["ctx"]
    assert c._env["ctx"].prefix_ids is p._env["ctx"].prefix_ids  # shared, immutable
    assert c._pc == p._pc and c.log_weight == p.log_weight and c._env["n"] == p._env["n"]
    assert lm.rows == rows  # cloning asks the model nothing (no replay)
    before = p._env["ctx"].prefix_ids
    _advance(c, rng)
    assert p._env["ctx"].prefix_ids is before  # the parent did not move
    assert len(c._env["ctx"]) == len(p._env["ctx"]) + 1 or c.done


def test_aliased_contexts_stay_aliased_in_a_clone():
    src = '''program p():
    a = lm("")
    b = a
    pair = [a, b]
    tok ~ a.next_token() where contains("a") or contains("b")
    tok ~ b.next_token() where contains("a") or contains("b")
    return [a.text == b.text, pair[0].text == a.text]
'''
    r = run(src, n=6, k=3)
    assert {p.value for p in r.particles} == {(True, True)}


def test_result_key_program_name_and_str():
    r = run("program my_prog():\n    ctx = lm(\"\")\n    observe ctx = \"a\"\n    return [1, ctx.text]\n")
    p = r.particles[0]
    assert p.program_name == "my_prog" and p.result_key() == (1, "a") and str(p) == "[1, 'a']"
    assert r.posterior() == {(1, "a"): 1.0}


# -- the factory -------------------------------------------------------------------------------------

HEADER = '''# Says hello.
program hello(prompt: str, n: int = 2, t: float = 1, b: bool = False, xs: list = [1, "a"]):
    return [prompt, n, t, b, xs]
'''


def test_factory_attributes_and_signature():
    f = dsl.compile(HEADER, "h.steer")
    assert f.__ppl_program__ is True and f.name == "hello" and f.__name__ == "hello"
    assert [(p.name, p.type, p.default, p.has_default) for p in f.params] == [
        ("prompt", "str", None, False), ("n", "int", 2, True), ("t", "float", 1.0, True),
        ("b", "bool", False, True), ("xs", "list", (1, "a"), True)]
    sig = inspect.signature(f)
    assert list(sig.parameters) == ["lm", "prompt", "n", "t", "b", "xs"]
    assert sig.parameters["n"].annotation is int and sig.parameters["n"].default == 2
    assert sig.parameters["prompt"].default is inspect.Parameter.empty
    assert f.__doc__ == "Says hello."
    assert "hello(prompt: str, n: int = 2" in repr(f)


def test_factory_arguments_are_type_checked():
    f = dsl.compile(HEADER, "h.steer")
    model = f(None, "hi", n=3, t=2, xs=["q", [1]])
    assert model._env["t"] == 2.0 and isinstance(model._env["t"], float)
    assert model._env["xs"] == ("q", (1,))
    assert f(None, prompt="x", xs='[1, "b"]')._env["xs"] == (1, "b")
    with pytest.raises(dsl.DSLArgumentError, match=r"hello: parameter 'n' must be int, got str '3' \(declared at h.steer:2:28\)"):
        f(None, "hi", n="3")
    with pytest.raises(dsl.DSLArgumentError, match=r"hello: parameter 'b' must be bool, got int 1"):
        f(None, "hi", b=1)
    with pytest.raises(dsl.DSLArgumentError, match=r"hello needs a value for parameter 'prompt' \(str\)"):
        f(None)
    with pytest.raises(dsl.DSLArgumentError, match=r"hello has no parameter 'm'; its parameters are: prompt, n, t, b, xs"):
        f(None, "x", m=1)
    with pytest.raises(dsl.DSLArgumentError, match=r"hello takes 5 parameters after lm, got 6"):
        f(None, 1, 2, 3, 4, 5, 6)
    with pytest.raises(dsl.DSLArgumentError, match=r"parameter 'prompt' given twice"):
        f(None, "x", prompt="y")
    with pytest.raises(dsl.DSLArgumentError, match=r"parameter 'xs' got"):
        f(None, "x", xs=[object()])
    assert isinstance(dsl.DSLArgumentError("x"), ppl.PPLError)


def test_convert_arg_by_declared_type():
    f = dsl.compile(HEADER, "h.steer")
    assert f.convert_arg("n", "7") == 7
    assert f.convert_arg("t", "0.5") == 0.5
    assert f.convert_arg("b", "yes") is True and f.convert_arg("b", "0") is False
    assert f.convert_arg("xs", '[1, "two", [3.5]]') == (1, "two", (3.5,))
    assert f.convert_arg("prompt", "a b") == "a b"
    with pytest.raises(dsl.DSLArgumentError, match=r"parameter n='x' is not a valid int"):
        f.convert_arg("n", "x")
    with pytest.raises(dsl.DSLArgumentError, match=r"not a valid list \(write a list literal"):
        f.convert_arg("xs", "1, 2")
    with pytest.raises(dsl.DSLArgumentError, match=r"has no parameter 'zz'"):
        f.convert_arg("zz", "1")


def test_load_and_check_file(tmp_path):
    path = tmp_path / "p.steer"
    path.write_text(HEADER)
    f = dsl.load(path)
    assert f.filename == str(path) and f.source == HEADER
    assert dsl.check_file(path) == []
    bad = tmp_path / "bad.steer"
    bad.write_text("program p():\n    x = y\n")
    (d,) = dsl.check_file(bad)
    assert d.location == f"{bad}:2:9"
    with pytest.raises(FileNotFoundError):
        dsl.load(tmp_path / "missing.steer")
    latin = tmp_path / "latin.steer"
    latin.write_bytes(b"program p():\n    x = '\xe9'\n")
    with pytest.raises(dsl.DSLError, match=r"latin.steer:1:1: the file is not valid UTF-8"):
        dsl.load(latin)


def test_the_steer_grammar_is_package_data():
    from ppl import grammars

    assert "steer" in grammars.available()
    assert "program" in grammars.read("steer")


def test_the_example_checks():
    from pathlib import Path

    from support.gallery_helpers import load_example

    examples = Path(__file__).resolve().parents[2] / "examples"
    for path in sorted(examples.glob("*.steer")):
        if path.with_suffix(".py").is_file():
            load_example(path.stem)  # its documented --import: the builtins it defines
        assert dsl.check_file(path) == [], path
    lipogram = dsl.load(examples / "lipogram.steer")
    assert [(p.name, p.type, p.default) for p in lipogram.params] == [
        ("prompt", "str", "My favorite writer is"), ("n", "int", 24)]


# -- limits ---------------------------------------------------------------------------------------


def test_step_limit_names_the_loop():
    src = '''program p():
    ctx = lm("")
    while True:
        observe ctx.next_token() = "a"
'''
    f = dsl.compile(src, "loop.steer").with_limits(max_steps=5)
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(f(toy_lm()), method="steer", n_particles=2, expand=1, seed=0)
    err = info.value.__cause__
    assert isinstance(err, dsl.DSLRuntimeError)
    assert str(err).startswith(
        "loop.steer:3:5: the program ran 5 steps without finishing (the loop at line 3 keeps going); "
        "if that is intended, raise the limit (max_steps, ppl run --max-steps)")
    assert "at step 6" in str(info.value)
    assert dsl.compile(src).max_steps == dsl.DEFAULT_MAX_STEPS == 4096
    assert dsl.compile(src, max_steps=7).max_steps == 7


def test_a_loop_without_tokens_is_stopped():
    src = '''program p():
    x = 0
    repeat 3:
        x = x + 1
    while x > 0:
        x = x + 1
'''
    f = dsl.compile(src, "spin.steer", max_iterations=1000)
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(f(None), method="is", n_particles=1, seed=0)
    assert str(info.value.__cause__).startswith(
        "spin.steer:5:5: the loop at line 5 turned 1000 times without sampling or observing a "
        "language-model token; is its exit condition ever met? (limit: max_iterations)")


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_steps must be an int >= 1"):
        dsl.compile("program p():\n    pass\n", max_steps=0)
    with pytest.raises(ValueError, match="max_iterations must be an int >= 1"):
        dsl.compile("program p():\n    pass\n").with_limits(max_iterations=-1)


# -- builtins registered from Python -----------------------------------------------------------------


def test_builtin_decorator_registers_with_arity_and_types():
    registry = dsl.BUILTINS.copy()

    @dsl.builtin(registry=registry)
    def rhymes(a: str, b: str) -> bool:
        """Whether two words end alike."""
        return a[-2:] == b[-2:]

    @dsl.builtin(registry=registry, name="pair", returns="list")
    def make_pair(x, y=0):
        return [x, y]

    entry = registry["rhymes"]
    assert (entry.min_args, entry.max_args, entry.arg_types, entry.returns) == (2, 2, ("str", "str"), "bool")
    assert entry.doc == "Whether two words end alike."
    src = "program p():\n    return [rhymes(\"cat\", \"hat\"), pair(1), pair(1, [2])]\n"
    f = dsl.compile(src, builtins=registry)
    r = ppl.infer(f(None), method="is", n_particles=1, seed=0)
    assert r.particles[0].value == (True, (1, 0), (1, (2,)))
    # the default registry does not know them
    assert [d.message for d in dsl.check_source(src)] == [
        "unknown function 'rhymes'", "unknown function 'pair'", "unknown function 'pair'"]
    diags = dsl.check_source("program p():\n    x = rhymes(1)\n", builtins=registry)
    assert [d.message for d in diags] == ["rhymes() takes 2 arguments, got 1"]
    diags = dsl.check_source("program p():\n    x = rhymes(1, \"a\")\n", builtins=registry)
    assert [d.message for d in diags] == ["rhymes() argument 1 must be str, got int"]


def test_builtin_errors_at_run_time_are_located():
    registry = dsl.BUILTINS.copy()

    @dsl.builtin(registry=registry)
    def boom(x):
        raise RuntimeError("no")

    f = dsl.compile("program p(v: int = 1):\n    y = boom(v)\n", "b.steer", builtins=registry)
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(f(None), method="is", n_particles=1)
    assert str(info.value.__cause__).startswith("b.steer:2:9: boom() raised RuntimeError: no")


def test_registry_refuses_bad_names():
    registry = dsl.BUILTINS.copy()
    with pytest.raises(ValueError, match="already exists"):
        registry.function(lambda s: s, name="len")
    with pytest.raises(ValueError, match="is a keyword"):
        registry.function(lambda s: s, name="where")
    with pytest.raises(ValueError, match="may not start with '_'"):
        registry.function(lambda s: s, name="_x")
    with pytest.raises(ValueError, match="unknown type 'string'"):
        registry.function(lambda s: s, name="f", args=("string",))
    registry.function(lambda s: s * 2, name="len", replace=True, args=("str",))
    assert registry["len"].fn("ab") == "abab" and dsl.BUILTINS["len"].fn("ab") == 2


def test_the_default_builtins():
    names = set(dsl.BUILTINS.names())
    assert {"lm", "EOS", "bernoulli", "categorical", "geometric", "uniform_int", "len", "words",
            "lower", "startswith", "endswith", "count", "syllables", "log", "exp", "min", "max",
            "abs", "lacks", "contains"} <= names
    from ppl.dsl.stdlib import syllables

    assert [syllables(w) for w in ("cat", "table", "beautiful", "the", "rhythm", "")] == [1, 2, 3, 1, 1, 0]
    assert syllables("make believe") == 3


@pytest.mark.skipif("regex" not in dsl.BUILTINS, reason="ppl.constraints has no sequence constraints")
def test_sequence_constraints_attach_to_a_context():
    src = '''program p():
    ctx = lm("", regex("(ab)+"))
    repeat 4:
        tok ~ ctx.next_token()
        if tok == EOS: finish
    return ctx.text
'''
    r = run(src, n=6, k=2)
    assert r.status == "ok" and set(r.posterior()) <= {"ab", "abab"}
    diags = dsl.check_source('program p():\n    c = lm("", lacks("e"))\n')
    assert [d.message for d in diags] == [
        "lm(prompt, c) takes a sequence constraint (regex, grammar, json_schema, choice); a token "
        "constraint goes on each token: tok ~ ctx.next_token() where ..."]
    f = dsl.compile('program p():\n    ctx = lm("")\n    tok ~ ctx.next_token() where regex("a")\n', "w.steer")
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(f(toy_lm()), method="is", n_particles=1)
    assert "constrains a whole text, not one token: attach it to the context" in str(info.value.__cause__)
