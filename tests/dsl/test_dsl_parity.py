"""The .steer features that put the language on par with Python programs
(issue 11, item 7): conditional expressions, keyword arguments, string
helpers, matches_token / token_predicate, where_checked (AWRS), proposals and
grammar files beside the program. Each: checker messages at FILE:LINE:COL,
and, where the feature changes the model, the exact answer by enumeration on
the toy LM (or the very same run as the Python form, seed for seed)."""

from __future__ import annotations

import math

import pytest
from support.exact import exact_target
from support.stats import check_mean, check_posterior
from support.toy_programs import MAX_LEN, VOCAB, C, Lipogram, LipogramProposal, toy_lm

import ppl
import ppl.dsl as dsl

M = 100  # runs per exact-answer check
SETTINGS = {"method": "steer", "n_particles": 6, "expand": 3}


def messages(source: str, registry=None, filename="t.steer") -> list[tuple[int, int, str]]:
    return [(d.line, d.column, d.message) for d in dsl.check_source(source, filename, builtins=registry)]


def value_of(source: str, registry=None, **params):
    program = dsl.compile(source, "t.steer", builtins=registry)
    r = ppl.infer(program(toy_lm(), **params), method="is", n_particles=2, seed=0)
    values = {p.value for p in r.particles}
    assert len(values) == 1, values
    return values.pop()


def program(body: str, header: str = "program p(n: int = 1):") -> str:
    return header + "\n" + "".join("    " + line + "\n" for line in body.split("\n"))


def check_exact(source: str, Z: float, exact: dict, registry=None) -> None:
    factory = dsl.compile(source, "t.steer", builtins=registry)
    lm = toy_lm()
    runs = []
    for m in range(M):
        r = ppl.infer(factory(lm), seed=20_000 + m, **SETTINGS)
        runs.append((math.exp(r.log_Z), r.posterior()))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, exact, SETTINGS["n_particles"])


def same_runs(source: str, model_class, registry=None, seeds=range(5)) -> None:
    """The .steer program and the class form give the same run for the same seed."""
    factory = dsl.compile(source, "t.steer", builtins=registry)
    lm = toy_lm()
    for seed in seeds:
        a = ppl.infer(factory(lm), seed=seed, **SETTINGS)
        b = ppl.infer(model_class(lm), seed=seed, **SETTINGS)
        assert a.log_Z == pytest.approx(b.log_Z, abs=1e-12)
        assert a.posterior() == pytest.approx(b.posterior())


def lipogram_with(sample_line: str) -> str:
    """The toy lipogram (tests/support/toy_programs.py) with another sample line."""
    return program(f"ctx = lm(\"\")\nwhile True:\n    {sample_line}\n"
                   f"    if tok.is_eos or len(ctx) == {MAX_LEN}: finish")


def registry_with(*fns, **kw):
    reg = dsl.BUILTINS.copy()
    for fn in fns:
        dsl.builtin(fn, registry=reg, **kw)
    return reg


def no_c(text: str) -> bool:
    """No letter c."""
    return "c" not in text


def no_cc(text: str) -> bool:
    """No two c in a row."""
    return "cc" not in text


# -- 1. conditional expressions -------------------------------------------------------------------

def test_conditional_expression_values_and_laziness():
    assert value_of(program('return "big" if n > 2 else "small"'), n=3) == "big"
    assert value_of(program('return "big" if n > 2 else "small"'), n=1) == "small"
    # only the chosen branch runs: no division by zero
    assert value_of(program("return 10 // n if n != 0 else -1"), n=0) == -1
    assert value_of(program("return 1 if n else 2 if n == 0 else 3"), n=0) == 2  # right-nested
    assert value_of(program("x = 2 if True else 3\nreturn x * 1.5")) == 3.0


def test_conditional_expression_branches_have_one_type():
    assert messages(program('x = 1 if n > 0 else "one"')) == [
        (2, 9, "the two branches of 'x if c else y' must have one type; got int and str")]
    assert messages(program("x = 1 if n > 0 else 2.5")) == []  # numbers are one type
    assert messages(program('x = (1 if n > 0 else 2) + "a"')) == [
        (2, 10, "unsupported operand types for +: int and str")]


def test_conditional_expression_in_a_factor_has_the_exact_answer():
    source = program('ctx = lm("")\nwhile True:\n    tok ~ ctx.next_token()\n'
                     '    factor 0.7 if tok == "a" else -0.2\n'
                     f'    if tok.is_eos or len(ctx) == {MAX_LEN}: finish')
    lm = toy_lm()
    Z, exact = exact_target(lm, MAX_LEN, lambda s: sum(0.7 if t == VOCAB.index("a") else -0.2 for t in s))
    check_exact(source, Z, exact)


# -- 2. keyword arguments ------------------------------------------------------------------------

def test_keyword_arguments_of_builtins():
    assert value_of(program('return round(2.345, digits=1)')) == 2.3
    assert value_of(program('return split("a,b", sep=",")')) == ("a", "b")
    assert value_of(program('return replace("aXa", new="b", old="X")')) == "aba"
    same_runs(lipogram_with('tok ~ ctx.next_token() where lacks(chars="c")'), Lipogram)


def test_keyword_arguments_of_user_builtins_and_defaults():
    def clip(text: str, n: int = 2, tail: str = "") -> str:
        return text[:n] + tail

    reg = registry_with(clip, pure=True)
    assert value_of(program('return clip("abcdef", tail="!")'), reg) == "ab!"  # n takes its default
    assert value_of(program('return clip(n=3, text="abcdef")'), reg) == "abc"
    assert messages(program('x = clip("a", m=1)'), reg) == [
        (2, 9, "clip() has no argument named 'm'; its arguments are text, n, tail")]
    assert messages(program('x = clip("a", tial="!")'), reg) == [
        (2, 9, "clip() has no argument named 'tial'; did you mean 'tail'?")]
    assert messages(program('x = clip(tail="a")'), reg) == [(2, 9, "clip() is missing the argument 'text'")]


def test_keyword_argument_errors():
    assert messages(program('x = lacks(chars="a", chars="b")')) == [
        (2, 9, "lacks() got the argument 'chars' twice")]
    assert messages(program('x = lacks("a", chars="b")')) == [
        (2, 9, "lacks() got the argument 'chars' by position and by name")]
    assert messages(program('x = lacks(chars=3)')) == [(2, 21, "lacks() argument 1 must be str, got int")]
    assert messages(program('x = range(a=1, 3)')) == [(2, 20, "a positional argument cannot follow a keyword argument")]
    assert messages(program('ctx = lm("")\ntok ~ ctx.next_token(k=1)')) == [
        (3, 26, "next_token() takes no keyword arguments")]
    reg = dsl.BUILTINS.copy()
    reg.add(dsl.Builtin("opaque", fn=lambda x: x, arg_types=("any",), min_args=1, max_args=1))
    assert messages(program("x = opaque(x=1)"), reg) == [
        (2, 9, "opaque() takes no keyword arguments: pass them by position")]


# -- 3. string helpers ---------------------------------------------------------------------------

@pytest.mark.parametrize("expr,value", [
    ('split("a b  c")', ("a", "b", "c")),
    ('split("a,b,,c", ",")', ("a", "b", "", "c")),
    ('join(["a", "b"], "-")', "a-b"),
    ('join(split("x y", " "))', "xy"),
    ('replace("banana", "an", "AN")', "bANANa"),
    ('lower("AbC") + upper("d")', "abcD"),
    ('startswith("steer", "st") and endswith("steer", "er")', True),
])
def test_string_helpers(expr, value):
    assert value_of(program(f"return {expr}")) == value


def test_string_helpers_check_their_arguments_and_limits():
    assert messages(program('x = split("a", "")')) == [(2, 9, "split() needs a non-empty separator")]
    assert messages(program('x = join(["a", 1])')) == [(2, 9, "join() needs a list of strings; item 1 is int 1")]
    assert messages(program('x = join("ab")')) == [(2, 14, "join() argument 1 must be list, got str")]
    factory = dsl.compile(program('s = replace("ab" * n, "a", "aaaa")\nreturn s'), "t.steer", max_length=100)
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(factory(toy_lm(), n=30), method="is", n_particles=1, seed=0)
    assert "t.steer:2:9" in str(info.value.__cause__) and "max_length" in str(info.value.__cause__)


# -- 4. matches_token and token_predicate --------------------------------------------------------

def test_matches_token_is_a_token_constraint():
    # "[ab]?" allows a, b and EOS (the empty text): the lipogram without "c"
    same_runs(lipogram_with('tok ~ ctx.next_token() where matches_token("[ab]?")'), Lipogram)
    assert messages(program('ctx = lm("")\ntok ~ ctx.next_token() where matches_token("[a")'))[0][:2] == (3, 34)


def test_token_predicate_with_an_imported_builtin():
    reg = registry_with(no_c)
    same_runs(lipogram_with("tok ~ ctx.next_token() where token_predicate(no_c)"), Lipogram, reg)
    same_runs(lipogram_with("tok ~ ctx.next_token() where token_predicate(no_c) and no_special()"),
              Lipogram, reg)


def test_token_predicate_misuse():
    def two(a: str, b: str) -> bool:
        return a == b

    def length(a: str) -> int:
        return len(a)

    reg = registry_with(no_c, two, length)
    body = 'ctx = lm("")\ntok ~ ctx.next_token() where token_predicate({})'
    assert messages(program(body.format('"no_c"')), reg) == [
        (3, 50, "token_predicate() takes the name of a builtin from str to bool (one registered with "
                "@ppl.builtin, e.g. token_predicate(is_short)); use matches_token(\"regex\") for a pattern")]
    assert messages(program(body.format("two")), reg) == [
        (3, 50, "token_predicate() needs a builtin that takes one str; two() takes 2 arguments (str first)")]
    assert messages(program(body.format("length")), reg) == [
        (3, 50, "token_predicate() needs a builtin that returns a bool; length() returns int")]
    assert messages(program(body.format("nope")), reg)[0][:2] == (3, 50)


# -- 5. where_checked (AWRS) ---------------------------------------------------------------------

class CheckedLipogram(Lipogram):
    """The class form: tokens drawn by AWRS, no "cc" in the text."""

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where_checked(no_cc))
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            self.finish()


def _no_cc_exact(lm):
    return exact_target(lm, MAX_LEN, lambda s: -math.inf if "cc" in "".join(VOCAB[t] for t in s) else 0.0)


def test_where_checked_has_the_exact_answer():
    reg = registry_with(no_cc)
    source = lipogram_with("tok ~ ctx.next_token() where_checked no_cc")
    Z, exact = _no_cc_exact(toy_lm())
    check_exact(source, Z, exact, reg)
    same_runs(source, CheckedLipogram, reg)


def test_where_checked_after_where_and_its_errors():
    reg = registry_with(no_cc, no_c)
    source = lipogram_with('tok ~ ctx.next_token() where lacks("b") where_checked no_cc')
    lm = toy_lm()
    Z, _ = exact_target(lm, MAX_LEN, lambda s: -math.inf if VOCAB.index("b") in s
                        or "cc" in "".join(VOCAB[t] for t in s) else 0.0)
    factory = dsl.compile(source, "t.steer", builtins=reg)
    zs = [math.exp(ppl.infer(factory(lm), seed=s, **SETTINGS).log_Z) for s in range(M)]
    check_mean(zs, Z)
    assert messages(program("x ~ bernoulli(0.5) where_checked no_cc"), reg) == [
        (2, 9, "'where_checked' applies only to a next-token distribution (ctx.next_token()); "
               "this is a distribution")]
    assert messages(program('ctx = lm("")\ntok ~ ctx.next_token() where_checked "no_cc"'), reg) == [
        (3, 42, "where_checked takes the name of a builtin from str to bool (one registered with "
                "@ppl.builtin), which is given the whole generated text with the candidate token")]
    assert messages(program('ctx = lm("")\ntok ~ ctx.next_token() where_checked len'), reg) == [
        (3, 42, "where_checked needs a builtin that returns a bool; len() returns int")]


# -- 6. proposals --------------------------------------------------------------------------------

def test_proposal_has_the_exact_answer_and_the_python_run():
    source = lipogram_with('tok ~ ctx.next_token() proposal ctx.next_token() where lacks("c")')
    same_runs(source, LipogramProposal)
    Z, exact = Lipogram.exact(toy_lm())
    check_exact(source, Z, exact)


def test_proposal_of_a_restricted_target():
    # target p(x) 1[x != c], proposal p(x | x != b): the target is p(s) 1[no b, no c]
    source = lipogram_with('tok ~ ctx.next_token() where lacks("c") proposal ctx.next_token() where lacks("b")')
    lm = toy_lm()
    Z, exact = exact_target(lm, MAX_LEN, lambda s: -math.inf if C in s or VOCAB.index("b") in s else 0.0)
    check_exact(source, Z, exact)


def test_proposal_misuse():
    reg = registry_with(no_cc)
    ctx = 'ctx = lm("")\nother = lm("a")\n'
    assert messages(program(ctx + "tok ~ ctx.next_token() proposal bernoulli(0.5)")) == [
        (4, 37, "the proposal of a next-token distribution must be a next-token distribution of the "
                "same context, and only of one; got a distribution")]
    assert messages(program(ctx + "tok ~ ctx.next_token() proposal 3")) == [
        (4, 37, "a proposal must be a distribution; got int")]
    assert messages(program(ctx + "tok ~ ctx.next_token() where_checked no_cc proposal ctx.next_token()"),
                    reg) == [(4, 57, "a proposal cannot be combined with where_checked: AWRS draws its own tokens")]
    factory = dsl.compile(program(ctx + "tok ~ ctx.next_token() proposal other.next_token()"), "t.steer")
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(factory(toy_lm()), method="is", n_particles=1, seed=0)
    cause = str(info.value.__cause__)
    assert "t.steer:4:37" in cause and "same context as the target" in cause


def test_proposal_on_a_simple_distribution():
    # x ~ bernoulli(0.2) proposal bernoulli(0.5): E[w 1[x]] = 0.2 and Z = 1
    source = program("x ~ bernoulli(0.2) proposal bernoulli(0.5)\nreturn x")
    factory = dsl.compile(source, "t.steer")
    zs = [math.exp(ppl.infer(factory(toy_lm()), method="is", n_particles=1, seed=s).log_Z) for s in range(400)]
    check_mean(zs, 1.0)


# -- 7. grammar files beside the program ---------------------------------------------------------

def test_grammar_file_is_read_beside_the_program(tmp_path, monkeypatch):
    def grammar(lark_text: str) -> str:  # stands in for the sequence constraint: shows what it is given
        return lark_text

    reg = dsl.BUILTINS.copy()
    dsl.builtin(grammar, registry=reg, replace=True)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ab.lark").write_text('start: "a"+\n')
    (tmp_path / "sub" / "p.steer").write_text(program('return grammar("ab.lark")'))
    factory = dsl.load(tmp_path / "sub" / "p.steer", builtins=reg)
    r = ppl.infer(factory(toy_lm()), method="is", n_particles=1, seed=0)
    assert r.particles[0].value == 'start: "a"+\n'
    # source text: relative to the current directory
    monkeypatch.chdir(tmp_path / "sub")
    assert value_of(program('return grammar("ab.lark")'), reg) == 'start: "a"+\n'
    monkeypatch.chdir(tmp_path)
    assert messages(program('ctx = lm("", grammar("ab.lark"))'))[0][:3] == (
        2, 26, "grammar file 'ab.lark' not found: looked beside the program (in the current directory) "
        "and among the shipped grammars (arithmetic, json, sql, steer)")
    assert messages(program('ctx = lm("", grammar("json.lark"))')) == []  # a shipped grammar


def test_grammar_file_gives_the_run_of_the_same_grammar_text(tmp_path):
    lark = 'start: ("a" | "b")+'
    (tmp_path / "ab.lark").write_text(lark + "\n")
    body = 'ctx = lm("", grammar({}))\nrepeat 3:\n    tok ~ ctx.next_token()\n    if tok.is_eos: finish\nreturn ctx.text'
    (tmp_path / "p.steer").write_text(program(body.format('"ab.lark"')))
    from_file = dsl.load(tmp_path / "p.steer")
    inline = dsl.compile(program(body.format(repr(lark))), "t.steer")
    lm = toy_lm()
    eos = VOCAB.index("<eos>")
    Z, exact = exact_target(lm, 3, lambda s: -math.inf if C in s or s[0] == eos else 0.0,
                            key=lambda s: "".join(VOCAB[t] for t in s if t != eos))
    runs = []
    for seed in range(30):  # the grammar's masks are the slow part: fewer runs, wider tolerances
        a = ppl.infer(from_file(lm), seed=seed, **SETTINGS)
        if seed < 4:
            b = ppl.infer(inline(lm), seed=seed, **SETTINGS)
            assert a.log_Z == pytest.approx(b.log_Z, abs=1e-12) and a.posterior() == pytest.approx(b.posterior())
        runs.append((math.exp(a.log_Z), a.posterior()))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, exact, SETTINGS["n_particles"])


# -- the reference -------------------------------------------------------------------------------

def test_the_reference_examples_with_imported_builtins_check():
    """docs/dsl.md's blocks that need --import'ed predicates check with them registered."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "dsl.md").read_text(encoding="utf-8")
    found = [b for b in re.findall(r"```text\n(.*?)```", doc, re.DOTALL) if b.startswith("# needs: ppl run --import")]
    assert found
    for block in found:
        reg = dsl.BUILTINS.copy()
        names = re.search(r"\((.*?):", block.splitlines()[0]).group(1)
        for name in names.split(","):
            reg.add(dsl.Builtin(name.strip(), fn=lambda t: True, arg_types=("str",), min_args=1, max_args=1,
                                returns="bool"))
        diags = dsl.check_source(block, "docs/dsl.md", builtins=reg)
        assert diags == [], "\n".join(d.format() for d in diags)


def test_imported_builtins_are_predicates_in_ppl_check_and_at_run(tmp_path, capsys):
    """``ppl check --import preds.py``: a module's @ppl.builtin functions are
    predicates of token_predicate and where_checked; the program then runs
    as the Python form does."""
    from ppl import cli

    (tmp_path / "preds.py").write_text(
        "import ppl\n\n@ppl.builtin\ndef parity_no_cc(text: str) -> bool:\n    return 'cc' not in text\n\n"
        "@ppl.builtin\ndef parity_no_c(text: str) -> bool:\n    return 'c' not in text\n")
    steer = tmp_path / "p.steer"
    steer.write_text(lipogram_with("tok ~ ctx.next_token() where token_predicate(parity_no_c) "
                                   "where_checked parity_no_cc"))
    assert cli.main(["check", str(steer)]) == 1
    out = capsys.readouterr().out
    assert "p.steer:4:54: undefined name 'parity_no_c'" in out and "2 errors" in out, out
    try:
        assert cli.main(["check", "--import", str(tmp_path / "preds.py"), str(steer)]) == 0
        factory = dsl.load(steer)
        # no "c" in any token, so the AWRS check never rejects: the lipogram's target
        lm = toy_lm()
        Z, _ = Lipogram.exact(lm)
        zs = [math.exp(ppl.infer(factory(lm), seed=s, **SETTINGS).log_Z) for s in range(M)]
        check_mean(zs, Z)
    finally:
        for name in ("parity_no_cc", "parity_no_c"):
            if name in dsl.BUILTINS:
                dsl.BUILTINS.remove(name)


@pytest.mark.parametrize("line,column", [("tok ~ ctx.next_token() where token_predicate(bad)", 34),
                                         ("tok ~ ctx.next_token() where_checked bad", 5)])
def test_a_predicate_that_returns_no_bool_is_a_located_error(line, column):
    def bad(text):
        return 1

    factory = dsl.compile(program(f'ctx = lm("")\n{line}'), "t.steer", builtins=registry_with(bad))
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(factory(toy_lm()), method="is", n_particles=1, seed=0)
    assert isinstance(info.value.__cause__, dsl.DSLRuntimeError)
    assert str(info.value.__cause__).startswith(
        f"t.steer:3:{column}: the predicate bad() must return True or False, got int 1")
