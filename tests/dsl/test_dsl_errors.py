"""Bad .steer programs: every message and place pinned; all errors in one
pass; runtime errors located; the sandbox."""

from __future__ import annotations

import pytest
from support.toy_programs import toy_lm

import ppl
import ppl.dsl as dsl
from ppl.dsl.parser import lark_parser
from ppl.dsl.syntax_errors import SYNTAX_EXAMPLES, match_example

H = "program p(n: int = 1, s: str = \"x\"):\n    ctx = lm(s)\n"


def body(*lines: str) -> str:
    return H + "".join("    " + line + "\n" for line in lines)


# (name, source, [(line, column, message), ...])
BAD = [
    # -- syntax ---------------------------------------------------------------------------------
    ("assign in if", body("if n = 1:", "    pass"),
     [(3, 10, "use '==' to compare; '=' assigns a value")]),
    ("expression statement", body("lacks('e')"),
     [(3, 5, "a statement cannot start with an expression: assign it (x = ...), sample it (x ~ ...), "
             "or use it in factor, condition, twist or observe")]),
    ("comparison statement", body("n == 1"),
     [(3, 5, "a statement cannot start with a comparison: to require it, write condition n == 1")]),
    ("augmented assignment", body("n += 1"),
     [(3, 7, "augmented assignment is not supported: write x = x + 1")]),
    ("assign to an index", body("n[0] = 1"),
     [(3, 5, "only a name can be assigned to: values are immutable, build a new one instead "
             "(e.g. xs = xs[:i] + [v] + xs[i + 1:])")]),
    ("else if", body("if n:", "    pass", "else if n:", "    pass"),
     [(5, 10, "write 'elif', not 'else if'")]),
    ("import", body("import os"),
     [(3, 5, "'import' is not part of the steer language: a program can only use its builtins "
             "(register Python functions with @ppl.builtin)")]),
    ("def", body("def f(x):", "    return x"),
     [(3, 5, "functions cannot be defined in a .steer program: register Python functions with @ppl.builtin")]),
    ("return without value", body("return"),
     [(3, 11, "return needs a value; use finish to end the program without one")]),
    ("finish with a value", body("finish n"),
     [(3, 12, "finish takes no value; use return VALUE to end the program with a value")]),
    ("chained comparison", body("x = 1 < n < 3"),
     [(3, 15, "comparisons cannot be chained: write a < b and b < c")]),
    ("unknown keyword argument", body("x = lm(promt='x')"),
     [(3, 9, "lm() has no argument named 'promt'; did you mean 'prompt'?")]),
    ("no header", "x = 1\n",
     [(1, 1, "a .steer file must start with a header: program NAME(PARAMETERS):")]),
    ("statement after a program", body("pass") + "x = 1\n",
     [(4, 1, "a statement outside every program: a program's statements are indented under its header, "
             "and another program starts with program NAME(PARAMETERS):")]),
    ("two uncalled programs", body("pass") + "program q():\n    pass\n",
     [(4, 9, "bad.steer has several programs that no other program calls (p, q), so which one runs is not "
             "clear: call the others from the one that runs, or name it: ppl run FILE.steer:NAME, or "
             "ppl.dsl.load(path, program=NAME)")]),
    ("missing colon", body("if n == 1", "    pass"),
     [(3, 14, "expected ':' at the end of this line, before the indented block")]),
    ("missing block", body("repeat n:", "pass"),
     [(4, 5, "expected an indented block after ':'")]),
    ("unexpected indent", body("pass", "    pass"),
     [(4, 9, "unexpected indentation: this line is indented more than the block it is in")]),
    ("bad dedent", body("if n:", "        pass", "  pass"),
     [(5, 7, "this line's indentation does not match any enclosing block (it is indented by 6; "
             "the enclosing blocks by 0, 4, 12)")]),
    ("where without constraint", body("x ~ ctx.next_token() where"),
     [(3, 31, "'where' needs a token constraint after it, e.g. where lacks(\"e\")")]),
    ("observe without value", body("observe ctx.next_token()"),
     [(3, 29, "observe needs '= VALUE': observe DISTRIBUTION = VALUE")]),
    ("unclosed bracket", body("x = lacks((\"e\"", "y = 2"),
     [(3, 15, "'(' is never closed")]),
    ("unmatched bracket", body("x = n)"),
     [(3, 10, "unmatched ')': no bracket is open here")]),
    ("unterminated string", body("x = \"abc"),
     [(3, 9, "unterminated string: the string opened here has no closing \" on this line")]),
    ("bad character", body("x = n ! 2"),
     [(3, 11, "unexpected character '!'; use 'not' or '!='")]),
    ("dictionary", body("x = {1: 2}"),
     [(3, 9, "unexpected character '{'; dictionaries and sets are not part of the steer language")]),
    ("unknown escape", body("x = \"a\\qb\""),
     [(3, 11, "unknown escape \\q in a string; write \\\\ for a backslash")]),
    ("bad parameter", "program p(n int):\n    pass\n",
     [(1, 13, "a parameter is NAME: TYPE or NAME: TYPE = DEFAULT")]),
    ("missing comma", body("x = lacks('a' 'b')"),
     [(3, 19, "expected ',' or ')' between arguments")]),
    ("stray else", body("else:", "    pass"),
     [(3, 5, "'else' needs a matching 'if' just before it, at the same indentation")]),
    ("generic", body("x = 1 +"),
     [(3, 12, "unexpected end of line; expected an expression")]),
    # -- semantics --------------------------------------------------------------------------------
    ("unknown function", body("x = lack('e')"),
     [(3, 9, "unknown function 'lack'; did you mean 'lacks'?")]),
    ("undefined name", body("x = foo + 1"), [(3, 9, "undefined name 'foo'")]),
    ("misspelt variable", body("count_ = 1", "y = count + 1"),
     [(4, 9, "count is a function: call it, as in count(...)")]),
    ("true", body("x = true"), [(3, 9, "undefined name 'true'; did you mean 'True'?")]),
    ("wrong arity", body("x = lacks()"), [(3, 9, "lacks() takes 1 argument, got 0")]),
    ("wrong argument type", body("x = lacks(3)"), [(3, 15, "lacks() argument 1 must be str, got int")]),
    ("bad constant argument", body("x ~ bernoulli(1.5)"),
     [(3, 9, "bernoulli(): Bernoulli: p must be in [0, 1], got 1.5")]),
    ("assign to builtin", body("len = 3"),
     [(3, 5, "cannot use the builtin function 'len' as a variable name; choose another name")]),
    ("parameter named like a builtin", "program p(EOS: int = 1):\n    pass\n",
     [(1, 11, "cannot use the builtin constant 'EOS' as a parameter name; choose another name")]),
    ("sample a number", body("x ~ 3"),
     [(3, 9, "the right of '~' must be a distribution, such as ctx.next_token() or bernoulli(0.5); got int")]),
    ("where on a bernoulli", body("x ~ bernoulli(0.5) where lacks('e')"),
     [(3, 9, "'where' applies only to a next-token distribution (ctx.next_token()); this is a distribution")]),
    ("where with a string", body("x ~ ctx.next_token() where \"e\""),
     [(3, 32, "'where' needs a token constraint such as lacks(\"e\"); got str")]),
    ("type error", body("x = \"a\" - 1"), [(3, 9, "unsupported operand types for -: str and int")]),
    ("typed variables", body("t = \"a\"", "x = t * t"), [(4, 9, "unsupported operand types for *: str and str")]),
    ("division by zero", body("x = 1 / 0"), [(3, 9, "division by zero")]),
    ("index out of range", body("x = [1, 2][5]"), [(3, 9, "index 5 is out of range for a list of length 2")]),
    ("factor of a string", body("factor \"a\""), [(3, 12, "factor needs a number (a log weight); got str")]),
    ("repeat a float", body("repeat 2.5:", "    pass"), [(3, 12, "repeat needs an int count; got float")]),
    ("repeat negative", body("repeat -1:", "    pass"), [(3, 12, "repeat needs a count >= 0; got -1")]),
    ("for over an int", body("for i in 3:", "    pass"), [(3, 14, "cannot loop over int: use range(n), or repeat n")]),
    ("break outside a loop", body("break"), [(3, 5, "break outside a loop")]),
    ("unreachable", body("finish", "x = 1"),
     [(4, 5, "unreachable statement: the finish on line 3 comes first (finish ends the program)")]),
    ("unreachable after return", body("repeat 2:", "    return 1", "    x = 2"),
     [(5, 9, "unreachable statement: the return on line 4 comes first (return ends the program)")]),
    ("unknown parameter type", "program p(n: integer = 1):\n    pass\n",
     [(1, 14, "unknown parameter type 'integer': the types are str, int, float, bool and list; did you mean 'int'?")]),
    ("bad default", "program p(n: int = \"a\"):\n    pass\n",
     [(1, 20, "the default of 'n' must be int, got str 'a'")]),
    ("non-constant default", "program p(n: int = len(s)):\n    pass\n",
     [(1, 24, "undefined name 's'"),
      (1, 20, "a parameter's default must be a constant (a literal, or a list of literals)")]),
    ("duplicate parameter", "program p(n: int, n: int):\n    pass\n", [(1, 19, "duplicate parameter 'n'")]),
    ("untyped parameter", "program p(n):\n    pass\n",
     [(1, 11, "parameter 'n' needs a type: write n: str (or int, float, bool, list)")]),
    ("stored next-token distribution", body("d = ctx.next_token()"),
     [(3, 9, "a next-token distribution cannot be stored in a variable: sample or observe it where it "
             "is made (x ~ ctx.next_token())")]),
    ("next-token distribution in a list", body("x = [ctx.next_token()]"),
     [(3, 10, "a next-token distribution cannot be put in a list")]),
    ("sample into an index", body("xs[0] ~ bernoulli(0.5)"),
     [(3, 5, "a sample statement is NAME ~ DISTRIBUTION; nothing else can be on the left of '~'")]),
    ("property called", body("x = ctx.text()"), [(3, 13, "text is a property, not a method: write .text without ()")]),
    ("method not called", body("x = ctx.next_token"), [(3, 13, "next_token is a method: write .next_token()")]),
    ("variable called", body("x = n(3)"), [(3, 9, "'n' is a variable, not a function")]),
    ("constant called", body("x = EOS()"), [(3, 9, "EOS is a constant, not a function")]),
    ("return a context", body("return ctx"), [(3, 12, "return the context's text (ctx.text), not the context itself")]),
    ("observe a number on a context", body("observe ctx = 3"),
     [(3, 19, "observing a context needs the text it continues with, a str; got int")]),
    ("observe a list as a token", body("observe ctx.next_token() = [1]"),
     [(3, 32, "a next token is observed as a token, its text, its id or EOS; got list")]),
    ("in on a number", body("x = 1 in 2"), [(3, 9, "'in' needs a string or a list on the right, got int 2")]),
    ("compare mixed", body("x = \"a\" < 1"), [(3, 9, "cannot compare str and int with <")]),
    ("constraint and number", body("x ~ ctx.next_token() where lacks(\"e\") and 3"),
     [(3, 32, "'and' combines two token constraints; got a constraint and int")]),
]


@pytest.mark.parametrize("name,source,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_program_message_and_place(name, source, expected):
    diags = dsl.check_source(source, "bad.steer")
    got = [(d.line, d.column, d.message) for d in diags]
    assert sorted(got) == sorted(expected)
    with pytest.raises(dsl.DSLError) as info:
        dsl.compile(source, "bad.steer")
    assert info.value.diagnostics == diags
    assert isinstance(info.value, ppl.PPLError)


def test_there_are_at_least_twenty_pinned_bad_programs():
    assert len(BAD) >= 20


def test_the_report_format():
    source = body("tok ~ ctx.next_token() where lack(\"e\")")
    with pytest.raises(dsl.DSLError) as info:
        dsl.compile(source, "lipogram.steer")
    assert str(info.value) == (
        "lipogram.steer:3:34: unknown function 'lack'; did you mean 'lacks'?\n"
        "        tok ~ ctx.next_token() where lack(\"e\")\n"
        "                                     ^^^^\n"
        "1 error in lipogram.steer"
    )


def test_all_errors_in_one_pass():
    source = (
        "program p(n: int = 1):\n"
        "    x = = 1\n"              # syntax
        "    y = x + 1\n"            # x is on a broken line: not reported as undefined
        "    if n == 1\n"            # syntax, opens a block
        "        z = lack('e')\n"    # semantic, inside the broken block
        "    w = \"a\" - 1\n"        # semantic
        "    repeat n:\n"
        "        tok ~ 3\n"          # semantic
        "    finish 2\n"             # syntax
    )
    diags = dsl.check_source(source, "many.steer")
    assert [(d.line, d.column, d.message) for d in diags] == [
        (2, 9, "unexpected '='; expected an expression"),
        (4, 14, "expected ':' at the end of this line, before the indented block"),
        (5, 13, "unknown function 'lack'; did you mean 'lacks'?"),
        (6, 9, "unsupported operand types for -: str and int"),
        (8, 15, "the right of '~' must be a distribution, such as ctx.next_token() or bernoulli(0.5); got int"),
        (9, 12, "finish takes no value; use return VALUE to end the program with a value"),
    ]
    with pytest.raises(dsl.DSLError, match=r"6 errors in many.steer$"):
        dsl.compile(source, "many.steer")


def test_tabs_keep_the_caret_aligned():
    (d,) = dsl.check_source("program p():\n\tx = foo\n", "t.steer")
    assert d.format() == "t.steer:2:6: undefined name 'foo'\n    \tx = foo\n    \t    ^^^"


def test_every_syntax_example_is_recognised_as_itself():
    """The examples table stays in sync with the grammar: each example fails,
    and matching its own error gives its own label."""
    from lark.exceptions import UnexpectedToken

    from ppl.dsl.layout import LayoutError

    parser = lark_parser()
    for label, examples in SYNTAX_EXAMPLES.items():
        for example in examples:
            with pytest.raises((UnexpectedToken, LayoutError)) as info:
                parser.parse(example)
            if isinstance(info.value, UnexpectedToken):
                assert match_example(info.value, parser) == label, example


# -- runtime errors ----------------------------------------------------------------------------------


def runtime_error(source: str, **params) -> tuple[str, ppl.InferenceError]:
    f = dsl.compile(source.replace("lm(s)", "lm(\"\")"), "run.steer")
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(f(toy_lm(), **params), method="steer", n_particles=2, expand=2, seed=0)
    cause = info.value.__cause__
    assert isinstance(cause, dsl.DSLRuntimeError)
    return str(cause).split("\n")[0], info.value


@pytest.mark.parametrize("source,message", [
    (body("xs = [1, 2]", "x = xs[n + 4]"), "run.steer:4:9: index 5 is out of range for a list of length 2"),
    (body("x = 1 / (n - 1)"), "run.steer:3:9: division by zero"),
    (body("x = [s, n][n] + s"), "run.steer:3:9: unsupported operand types for +: int and str"),
    (body("x = y", "y = 1"), "run.steer:3:9: 'y' is used before it is given a value"),
    (body("x = lacks(s * 0)"), "run.steer:3:9: lacks(): lacks() needs a non-empty string of characters, got ''"),
    (body("observe ctx.next_token() = \"ab\""),
     "run.steer:3:32: 'ab' is 2 tokens, not one; to observe a whole string, observe the context: observe ctx = \"...\""),
    (body("observe ctx = \"ax\""),
     "run.steer:3:5: observe <LMContext '' + '' (0+0 tokens)> = 'ax': cannot tokenise 'ax' at position 1 ('x') "
     "with the vocabulary ['a', 'b', 'c', '<eos>']"),
    (body("repeat n - 2:", "    pass"), "run.steer:3:12: repeat needs a count >= 0; got -1"),
    (body("factor log(0 - n)"), "run.steer:3:12: log() of a negative number (-1)"),
    (body("observe ctx.next_token() = EOS", "tok ~ ctx.next_token()"),
     "run.steer:4:15: this context already ended with EOS, so it has no next token; stop at EOS "
     "(e.g. if tok == EOS: finish)"),
])
def test_runtime_errors_are_located(source, message):
    first_line, _ = runtime_error(source)
    assert first_line == message


def test_runtime_errors_name_program_and_step():
    _, err = runtime_error(body("observe ctx = \"a\"", "x = 1 / (n - 1)"))
    assert err.model == "p" and err.step == 1
    assert str(err).startswith("p raised DSLRuntimeError at step 1: run.steer:4:9: division by zero")
    _, err = runtime_error(body("observe ctx = \"a\"", "observe ctx = \"b\"", "x = 1 / (n - 1)"))
    assert err.step == 2


def test_a_step_that_hits_a_dead_end_reports_it_in_the_next_step():
    _, err = runtime_error(body("observe ctx.next_token() = EOS", "tok ~ ctx.next_token()"))
    assert err.step == 2


# -- the sandbox -------------------------------------------------------------------------------------


@pytest.mark.parametrize("line,message", [
    ("x = ctx.__class__", "attribute '__class__' is not accessible: a .steer program can use only ctx.text, "
                          "ctx.tokens, ctx.next_token(), tok.text, tok.id and tok.is_eos"),
    ("x = s.__len__()", "attribute '__len__' is not accessible: the only method is ctx.next_token()"),
    ("x = ctx.lm", "a context has no attribute 'lm'; it has .next_token(), .text and .tokens"),
    ("x = ctx._ids", "attribute '_ids' is not accessible: a .steer program can use only ctx.text, "
                     "ctx.tokens, ctx.next_token(), tok.text, tok.id and tok.is_eos"),
    ("x = ctx.prompt", "a context has no attribute 'prompt'; it has .next_token(), .text and .tokens"),
    ("x = s.upper()", "unknown method 'upper': the only method is ctx.next_token(); use the builtin upper(x)"),
    ("x = n.real", "int has no attribute 'real': only contexts and tokens have attributes "
                   "(ctx.text, ctx.tokens, tok.text, tok.id, tok.is_eos)"),
    ("x = __import__('os')", "names starting with '__' are not allowed ('__import__')"),
    ("__x = 1", "names starting with '__' are not allowed"),
    ("x = __builtins__", "names starting with '__' are not allowed ('__builtins__')"),
    ("f = open('/etc/passwd')", "'open' is a Python builtin, which .steer programs cannot use; they can use only "
                                "the steer builtins (see docs/dsl.md) and those registered with @ppl.builtin"),
    ("x = eval('1')", "'eval' is a Python builtin, which .steer programs cannot use; they can use only the steer "
                      "builtins (see docs/dsl.md) and those registered with @ppl.builtin"),
    ("x = exec('1')", "'exec' is a Python builtin, which .steer programs cannot use; they can use only the steer "
                      "builtins (see docs/dsl.md) and those registered with @ppl.builtin"),
    ("x = getattr(ctx, 'lm')", "'getattr' is a Python builtin, which .steer programs cannot use; they can use "
                               "only the steer builtins (see docs/dsl.md) and those registered with @ppl.builtin"),
])
def test_sandbox_rejects_python(line, message):
    diags = dsl.check_source(body(line), "s.steer")
    assert [d.message for d in diags] == [message]


def test_sandbox_also_holds_at_run_time():
    """Values reaching an attribute at run time are checked again: only the
    whitelisted properties of contexts and tokens exist."""
    from ppl.dsl.operators import OpError, attribute, method

    lm = toy_lm()
    ctx = lm.context("")
    for name in ("__class__", "lm", "_ids", "prompt", "observe_text", "__dict__"):
        with pytest.raises(OpError):
            attribute(ctx, name)
    for value in ("s", 1, (1,), None, ppl.Bernoulli(0.5)):
        with pytest.raises(OpError):
            attribute(value, "__class__")
        with pytest.raises(OpError):
            method(value, "__reduce__", ())
    assert attribute(ctx, "text") == ""


def test_import_statement_at_the_top():
    (d,) = dsl.check_source("import os\nprogram p():\n    pass\n", "s.steer")
    assert (d.line, d.column, d.message) == (
        1, 1, "'import' is not part of the steer language: a program can only use its builtins "
              "(register Python functions with @ppl.builtin)")


# -- the bad example files (tests/steer/bad_*.steer) ---------------------------------------------------

BAD_FILES = {
    "bad_syntax.steer": [
        (4, 17, "use '==' to compare; '=' assigns a value"),
        (6, 10, "write 'elif', not 'else if'"),
        (8, 7, "augmented assignment is not supported: write x = x + 1"),
    ],
    "bad_names.steer": [
        (4, 34, "unknown function 'lack'; did you mean 'lacks'?"),
        (5, 9, "'open' is a Python builtin, which .steer programs cannot use; they can use only the steer "
               "builtins (see docs/dsl.md) and those registered with @ppl.builtin"),
        (6, 13, "attribute '__class__' is not accessible: a .steer program can use only ctx.text, ctx.tokens, "
                "ctx.next_token(), tok.text, tok.id and tok.is_eos"),
        (7, 5, "cannot use the builtin function 'len' as a variable name; choose another name"),
    ],
    "bad_types.steer": [
        (2, 23, "the default of 'n' must be int, got str 'five'"),
        (4, 9, "the right of '~' must be a distribution, such as ctx.next_token() or bernoulli(0.5); got int"),
        (5, 12, "factor needs a number (a log weight); got str"),
        (6, 12, "repeat needs an int count; got float"),
        (7, 38, "'where' needs a token constraint such as lacks(\"e\"); got str"),
        (8, 12, "return the context's text (ctx.text), not the context itself"),
        (9, 5, "break outside a loop"),
        (9, 5, "unreachable statement: the return on line 8 comes first (return ends the program)"),
    ],
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files(name):
    from pathlib import Path

    path = Path(__file__).parent / "steer" / name
    diags = dsl.check_file(path)
    assert [(d.line, d.column, d.message) for d in diags] == BAD_FILES[name]
    assert all(d.filename == str(path) for d in diags)
