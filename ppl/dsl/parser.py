"""Parsing ``.steer`` text: the lark grammar ``grammar/steer.lark`` (LALR),
an indentation post-lexer, a Transformer that builds :mod:`ppl.dsl.ast`
nodes, and syntax errors in words.

Syntax errors get a human message: first by lark's ``match_examples`` against
:data:`SYNTAX_EXAMPLES` (malformed programs labelled with what is wrong), then
by a few rules on the unexpected token, then a generic "unexpected X;
expected Y". After an error the offending line is replaced by a placeholder
(``pass``, or ``if True:`` for a line that opens a block) and the text is
parsed again, so one check reports every syntax error, not only the first.
Names written on the replaced lines are remembered so that the checker does
not report them as undefined.
"""

from __future__ import annotations

import functools
import re
from typing import Iterator

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import Indenter

from .. import grammar as _grammar
from . import ast
from .errors import Diagnostic

MAX_SYNTAX_ERRORS = 20


class _LayoutError(Exception):
    """Raised by the post-lexer: bad indentation, an unmatched bracket."""

    def __init__(self, line: int, column: int, message: str):
        super().__init__(message)
        self.line, self.column, self.message = line, column, message


class SteerIndenter(Indenter):
    """Python-style INDENT/DEDENT tokens; line breaks inside brackets are
    ignored. Unlike lark's own, it reports a bad dedent or a stray closing
    bracket with its place."""

    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def handle_NL(self, token: Token) -> Iterator[Token]:
        if self.paren_level > 0:
            return
        yield token
        indent_str = token.rsplit("\n", 1)[1]
        indent = indent_str.count(" ") + indent_str.count("\t") * self.tab_len
        if indent > self.indent_level[-1]:
            self.indent_level.append(indent)
            yield Token.new_borrow_pos(self.INDENT_type, indent_str, token)
        else:
            levels = list(self.indent_level)
            while indent < self.indent_level[-1]:
                self.indent_level.pop()
                yield Token.new_borrow_pos(self.DEDENT_type, indent_str, token)
            if indent != self.indent_level[-1]:
                raise _LayoutError(
                    token.end_line, token.end_column,
                    "this line's indentation does not match any enclosing block "
                    f"(it is indented by {indent}; the enclosing blocks by "
                    f"{', '.join(str(i) for i in levels)})",
                )

    def _process(self, stream):
        token = None
        for token in stream:
            if token.type == self.NL_type:
                yield from self.handle_NL(token)
            else:
                yield token
            if token.type in self.OPEN_PAREN_types:
                self.paren_level += 1
            elif token.type in self.CLOSE_PAREN_types:
                if self.paren_level == 0:
                    raise _LayoutError(token.line, token.column, f"unmatched '{token}': no bracket is open here")
                self.paren_level -= 1
        while len(self.indent_level) > 1:
            self.indent_level.pop()
            yield Token.new_borrow_pos(self.DEDENT_type, "", token) if token else Token(
                self.DEDENT_type, "", 0, 1, 1, 1, 1, 0
            )


@functools.lru_cache(maxsize=1)
def lark_parser() -> Lark:
    """The LALR parser for ``grammar/steer.lark`` (built once)."""
    return Lark(
        _grammar.read("steer"),
        parser="lalr",
        lexer="basic",  # keywords are reserved everywhere, so errors read predictably
        postlex=SteerIndenter(),
        propagate_positions=True,
        maybe_placeholders=True,
    )


# -- the Transformer: parse tree -> AST ---------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
_HEX = {"x": 2, "u": 4, "U": 8}


def decode_string(raw: str) -> tuple[str, list[tuple[int, str]]]:
    """The value of a string literal (quotes included in ``raw``) and its
    problems as (offset in ``raw``, message)."""
    body, out, problems, i = raw[1:-1], [], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1] if i + 1 < len(body) else ""
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        elif esc in _HEX:
            digits = body[i + 2 : i + 2 + _HEX[esc]]
            if len(digits) == _HEX[esc] and re.fullmatch(r"[0-9A-Fa-f]+", digits) and int(digits, 16) <= 0x10FFFF:
                out.append(chr(int(digits, 16)))
            else:
                problems.append((i + 1, f"bad escape \\{esc}{digits}: \\{esc} needs {_HEX[esc]} hex digits"))
            i += 2 + _HEX[esc]
        else:
            problems.append((i + 1, f"unknown escape \\{esc} in a string; write \\\\ for a backslash"))
            i += 2
    return "".join(out), problems


def _pos(item) -> dict:
    if isinstance(item, Token):
        return dict(line=item.line, column=item.column, end_line=item.end_line, end_column=item.end_column)
    if isinstance(item, ast.Node):
        return dict(line=item.line, column=item.column, end_line=item.end_line, end_column=item.end_column)
    if getattr(item, "empty", True):
        return dict(line=0, column=0, end_line=0, end_column=0)
    return dict(line=item.line, column=item.column, end_line=item.end_line, end_column=item.end_column)


def _span(first, last) -> dict:
    a, b = _pos(first), _pos(last)
    return dict(line=a["line"], column=a["column"], end_line=b["end_line"], end_column=b["end_column"])


@v_args(meta=True)
class ToAST(Transformer):
    """Builds :mod:`ppl.dsl.ast` nodes; string-escape problems are collected
    in ``problems`` as (line, column, end_column, message)."""

    def __init__(self):
        super().__init__()
        self.problems: list[tuple[int, int, int, str]] = []

    # program and parameters
    def start(self, meta, children):
        return children[-1]

    def program(self, meta, children):
        name, params, body = children
        return ast.Program(str(name), params or (), body, name_column=name.column, **_pos(meta))

    def params(self, meta, children):
        return tuple(children)

    def param(self, meta, children):
        name, type_, default = children
        return ast.Param(
            str(name), str(type_) if type_ is not None else None, default,
            type_column=type_.column if type_ is not None else 0, **_pos(meta),
        )

    # blocks
    def inline_suite(self, meta, children):
        return (children[0],)

    def block_suite(self, meta, children):
        return tuple(children)

    # simple statements
    def assign(self, meta, children):
        name, value = children
        return ast.Assign(ast.Name(str(name), **_pos(name)), value, **_pos(meta))

    def sample(self, meta, children):
        name, dist, where = children
        return ast.Sample(ast.Name(str(name), **_pos(name)), dist, where, **_pos(meta))

    def observe(self, meta, children):
        return ast.Observe(children[0], children[1], **_pos(meta))

    def condition(self, meta, children):
        return ast.Condition(children[0], **_pos(meta))

    def factor(self, meta, children):
        return ast.Factor(children[0], **_pos(meta))

    def twist(self, meta, children):
        return ast.Twist(children[0], **_pos(meta))

    def finish(self, meta, children):
        return ast.Finish(**_pos(meta))

    def return_stmt(self, meta, children):
        return ast.Return(children[0], **_pos(meta))

    def break_stmt(self, meta, children):
        return ast.Break(**_pos(meta))

    def continue_stmt(self, meta, children):
        return ast.Continue(**_pos(meta))

    def pass_stmt(self, meta, children):
        return ast.Pass(**_pos(meta))

    # compound statements
    def if_stmt(self, meta, children):
        test, body, *rest = children
        branches, orelse = [(test, body)], None
        for item in rest:
            if item is None:
                continue
            if item[0] == "elif":
                branches.append((item[1], item[2]))
            else:
                orelse = item[1]
        return ast.If(tuple(branches), orelse, **_pos(meta))

    def elif_clause(self, meta, children):
        return ("elif", children[0], children[1])

    def else_clause(self, meta, children):
        return ("else", children[0])

    def for_stmt(self, meta, children):
        name, it, body = children
        return ast.For(ast.Name(str(name), **_pos(name)), it, body, **_pos(meta))

    def repeat_stmt(self, meta, children):
        return ast.Repeat(children[0], children[1], **_pos(meta))

    def while_stmt(self, meta, children):
        return ast.While(children[0], children[1], **_pos(meta))

    # expressions
    def or_op(self, meta, children):
        return ast.BoolOp("or", children[0], children[1], **_span(children[0], children[1]))

    def and_op(self, meta, children):
        return ast.BoolOp("and", children[0], children[1], **_span(children[0], children[1]))

    def not_op(self, meta, children):
        return ast.UnaryOp("not", children[0], **_pos(meta))

    def comp_op(self, meta, children):
        return " ".join(str(t) for t in children)

    def compare(self, meta, children):
        left, op, right = children
        return ast.Compare(op, left, right, **_span(left, right))

    def binop(self, meta, children):
        left, op, right = children
        return ast.BinOp(str(op), left, right, **_span(left, right))

    def pow(self, meta, children):
        return ast.BinOp("**", children[0], children[1], **_span(children[0], children[1]))

    def neg(self, meta, children):
        return ast.UnaryOp("-", children[0], **_pos(meta))

    def pos(self, meta, children):
        return ast.UnaryOp("+", children[0], **_pos(meta))

    def index(self, meta, children):
        return ast.Index(children[0], children[1], **_pos(meta))

    def slice(self, meta, children):
        return ast.Slice(children[0], children[1], children[2], **_pos(meta))

    def method_call(self, meta, children):
        value, name, args = children
        return ast.MethodCall(value, str(name), args or (), attr_column=name.column, **_pos(meta))

    def attribute(self, meta, children):
        value, name = children
        return ast.Attribute(value, str(name), attr_column=name.column, **_pos(meta))

    def call(self, meta, children):
        name, args = children
        return ast.Call(ast.Name(str(name), **_pos(name)), args or (), **_pos(meta))

    def args(self, meta, children):
        return tuple(children)

    def var(self, meta, children):
        return ast.Name(str(children[0]), **_pos(children[0]))

    def int_lit(self, meta, children):
        return ast.Const(int(children[0]), **_pos(children[0]))

    def float_lit(self, meta, children):
        return ast.Const(float(children[0]), **_pos(children[0]))

    def str_lit(self, meta, children):
        tok = children[0]
        value, problems = decode_string(str(tok))
        for offset, message in problems:
            col = tok.column + offset
            self.problems.append((tok.line, col, col + 1, message))
        return ast.Const(value, **_pos(tok))

    def true_lit(self, meta, children):
        return ast.Const(True, **_pos(meta))

    def false_lit(self, meta, children):
        return ast.Const(False, **_pos(meta))

    def list_lit(self, meta, children):
        return ast.ListExpr(children[0] or (), **_pos(meta))


# -- syntax errors in words --------------------------------------------------------------

_HEAD = "program p(n: int = 1):\n"


def _body(*lines: str) -> list[str]:
    """The statements as the first of a block and after another: LALR
    states differ between the two."""
    return [_HEAD + "".join("    " + line + "\n" for line in block) for block in (lines, ("pass",) + lines)]


#: malformed programs, labelled with what is wrong; see lark's match_examples
SYNTAX_EXAMPLES: dict[str, list[str]] = {
    "use '==' to compare; '=' assigns a value": [
        _body("if n = 1:", "    pass"),
        _body("while n = 1:", "    pass"),
        _body("if n == 1:", "    pass", "elif n = 2:", "    pass"),
        _body("condition n = 1"),
        _body("x = n = 1"),
        _body("return n = 1"),
        _body("factor n = 1"),
    ],
    "a statement cannot start with an expression: assign it (x = ...), sample it (x ~ ...), "
    "or use it in factor, condition, twist or observe": [
        _body("lacks('e')"),
        _body("n + 1"),
        _body("n.text"),
        _body("n[0]"),
        _body("n < 1"),
        _body("'text'"),
        _body("3"),
        _body("-n"),
    ],
    "write 'elif', not 'else if'": [
        _body("if n:", "    pass", "else if n:", "    pass"),
    ],
    "'import' is not part of the steer language: a program can only use its builtins "
    "(register Python functions with @ppl.builtin)": [
        _body("import os"),
        "import os\n",
        _body("from os import path"),
        "from os import path\n",
    ],
    "functions cannot be defined in a .steer program: register Python functions with @ppl.builtin": [
        _body("def f(x):", "    pass"),
        "def f(x):\n    pass\n",
        _body("lambda x: x"),
    ],
    "return needs a value; use finish to end the program without one": [
        _body("return"),
    ],
    "finish takes no value; use return VALUE to end the program with a value": [
        _body("finish n"),
        _body("finish 1"),
        _body("finish 'x'"),
        _body("finish (n)"),
        _body("finish [n]"),
    ],
    "comparisons cannot be chained: write a < b and b < c": [
        _body("x = 1 < n < 3"),
        _body("x = 1 == n == 3"),
        _body("condition 1 < n < 3"),
        _body("x = n in [1] == True"),
    ],
    "keyword arguments are not supported: pass arguments by position": [
        _body("x = lm(prompt='x')"),
        _body("x = ctx.next_token(k=1)"),
    ],
    "a .steer file must start with a header: program NAME(PARAMETERS):": [
        "x = 1\n",
        "ctx = lm('x')\n",
        "repeat 3:\n    pass\n",
        "if x:\n    pass\n",
        "observe x = 1\n",
        "factor 1\n",
        "finish\n",
        "prog p():\n    pass\n",
        "3\n",
    ],
    "a .steer file holds one program: everything after the header must be indented under it": [
        _HEAD + "    pass\nx = 1\n",
        _HEAD + "    pass\nprogram q():\n    pass\n",
        _HEAD + "    pass\nrepeat 3:\n    pass\n",
        _HEAD + "    pass\nfinish\n",
        _HEAD + "    if n:\n        pass\nx = 1\n",
    ],
    "expected ':' at the end of this line, before the indented block": [
        _body("if n == 1", "    pass"),
        _body("while n", "    pass"),
        _body("repeat n", "    pass"),
        _body("for x in [1]", "    pass"),
        _body("if n:", "    pass", "elif n", "    pass"),
        _body("if n:", "    pass", "else", "    pass"),
        "program p()\n    pass\n",
        "program p(n: int = 1)\n    pass\n",
    ],
    "expected an indented block after ':'": [
        _body("if n:", "pass"),
        _body("repeat n:", "pass"),
        _body("while n:", "pass"),
        _body("for x in [1]:", "pass"),
        _body("if n:", "    pass", "else:", "pass"),
        "program p():\npass\n",
    ],
    "unexpected indentation: this line is indented more than the block it is in": [
        _body("pass", "    pass"),
        "program p():\n    pass\n        pass\n",
    ],
    "'where' needs a token constraint after it, e.g. where lacks(\"e\")": [
        _body("x ~ n where"),
    ],
    "observe needs '= VALUE': observe DISTRIBUTION = VALUE": [
        _body("observe n"),
        _body("observe bernoulli(0.5)"),
        _body("observe n.next_token()"),
    ],
    "a for loop is: for NAME in EXPRESSION:": [
        _body("for n [1]:", "    pass"),
        _body("for n:", "    pass"),
        _body("for n[0] in [1]:", "    pass"),
    ],
    "a parameter is NAME: TYPE or NAME: TYPE = DEFAULT": [
        "program p(n int):\n    pass\n",
        "program p(n: 3):\n    pass\n",
        "program p(1):\n    pass\n",
        "program p(n: int := 1):\n    pass\n",
    ],
    "expected ',' or ')' between arguments": [
        _body("x = lm('a' 'b')"),
        _body("x = lm(n n)"),
    ],
    "expected ',' or ']' between list elements": [
        _body("x = [1 2]"),
        _body("x = [n n]"),
    ],
    "'else' needs a matching 'if' just before it, at the same indentation": [
        _body("else:", "    pass"),
        _body("pass", "else:", "    pass"),
    ],
    "'elif' needs a matching 'if' just before it, at the same indentation": [
        _body("elif n:", "    pass"),
        _body("pass", "elif n:", "    pass"),
    ],
}

SYNTAX_EXAMPLES = {
    label: [x for item in examples for x in (item if isinstance(item, list) else [item])]
    for label, examples in SYNTAX_EXAMPLES.items()
}

_TOKEN_WORDS = {
    "_NL": "end of line",
    "_INDENT": "indentation",
    "_DEDENT": "end of the indented block",
    "$END": "end of file",
    "NAME": "a name",
    "STRING": "a string",
    "INT": "a number",
    "FLOAT": "a number",
}


def _describe_token(tok: Token) -> str:
    if tok.type in ("NAME",):
        return f"name {str(tok)!r}"
    if tok.type in ("INT", "FLOAT"):
        return f"number {tok}"
    if tok.type == "STRING":
        return f"string {tok}"
    if tok.type in _TOKEN_WORDS:
        return _TOKEN_WORDS[tok.type]
    return f"'{tok}'"


def _describe_expected(accepts: set[str]) -> str:
    parser = lark_parser()
    names = []
    expression_start = {"NAME", "STRING", "INT", "FLOAT", "LSQB", "LPAR", "MINUS"}
    if expression_start <= accepts:
        names.append("an expression")
        accepts = accepts - expression_start - {"PLUS", "TRUE", "FALSE", "NOT"}
    for t in sorted(accepts):
        if t in _TOKEN_WORDS:
            names.append(_TOKEN_WORDS[t])
            continue
        try:
            pattern = parser.get_terminal(t).pattern
        except KeyError:
            names.append(t)
            continue
        names.append(f"'{pattern.value}'" if pattern.type == "str" else t.lower())
    names = list(dict.fromkeys(names))
    if len(names) > 6:
        names = names[:6] + ["..."]
    return " or ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " or " + names[-1]


_BRACKETS = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|#[^\n]*|[()\[\]]")


def _unclosed_bracket(text: str, upto: int | None = None) -> tuple[int, int, str] | None:
    """The innermost bracket still open at offset ``upto`` (line, column, char)."""
    stack: list[int] = []
    for m in _BRACKETS.finditer(text, 0, len(text) if upto is None else upto):
        ch = m.group()
        if ch in "([":
            stack.append(m.start())
        elif ch in ")]" and stack:
            stack.pop()
    if not stack:
        return None
    pos = stack[-1]
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column, text[pos]


def _token_place(tok: Token) -> tuple[int, int, int | None]:
    """Where to point for an unexpected token."""
    if tok.type in ("_INDENT", "_DEDENT", "_NL") and tok.type != "_NL":
        return tok.end_line, tok.end_column, None
    if tok.type == "_NL":
        return tok.line, tok.column, None
    end = tok.end_column if tok.end_line == tok.line else None
    return tok.line, tok.column, end


def _state_id(exc: UnexpectedToken):
    state = exc.state
    return getattr(state, "position", state)


@functools.lru_cache(maxsize=1)
def _example_table() -> tuple[tuple[int, str, str, frozenset, str], ...]:
    """(LALR state, token type, token text, accepted tokens, label) of every
    example in :data:`SYNTAX_EXAMPLES`: lark's ``match_examples`` technique,
    with each example parsed once rather than at every error, and states
    compared by their LALR state alone (lark's ``ParserState`` equality also
    compares the stack depth, which grows with every earlier statement)."""
    parser = lark_parser()
    rows = []
    for label, examples in SYNTAX_EXAMPLES.items():
        for example in examples:
            try:
                parser.parse(example)
            except UnexpectedToken as ut:
                rows.append((_state_id(ut), ut.token.type, str(ut.token), frozenset(ut.accepts), label))
            except (UnexpectedInput, _LayoutError):
                continue
    return tuple(rows)


def match_example(exc: UnexpectedToken) -> str | None:
    """The label of the example that failed in the same parser state, with the
    same accepted tokens and the same unexpected token (its text if possible,
    else its type); None if there is none."""
    accepts = frozenset(exc.accepts)
    tok = exc.token
    here = _state_id(exc)
    by_type = None
    for state, ttype, text, acc, label in _example_table():
        if state != here or acc != accepts or ttype != tok.type:
            continue
        if text == str(tok):
            return label
        if by_type is None:
            by_type = label
    return by_type


#: labels that describe the whole statement: point at its start
_STATEMENT_LABELS = {label for label in SYNTAX_EXAMPLES if label.startswith("a statement cannot")}

_ASSIGN_LATER = re.compile(r"(?<![=<>!])=(?!=)")

_PY_WORDS = {
    "import": "'import' is not part of the steer language: a program can only use its builtins "
              "(register Python functions with @ppl.builtin)",
    "from": "'from' is not part of the steer language: a program can only use its builtins "
            "(register Python functions with @ppl.builtin)",
    "def": "functions cannot be defined in a .steer program: register Python functions with @ppl.builtin",
    "class": "classes cannot be defined in a .steer program",
    "lambda": "functions cannot be defined in a .steer program: register Python functions with @ppl.builtin",
}
_OTHER_PY_WORDS = {"with", "try", "except", "raise", "del", "global", "nonlocal", "assert", "yield",
                   "async", "await", "print", "exec", "switch", "case", "match", "until", "loop", "do"}


def _line_start(text: str, line: int) -> tuple[int, str]:
    lines = text.split("\n")
    src = lines[line - 1] if 1 <= line <= len(lines) else ""
    return len(src) - len(src.lstrip(" \t")) + 1, src.strip()


def _offset(text: str, line: int, column: int) -> int:
    pos = 0
    for _ in range(line - 1):
        pos = text.index("\n", pos) + 1
    return pos + column - 1


def _syntax_message(exc: UnexpectedInput, text: str) -> tuple[int, int, int | None, str]:
    """(line, column, end_column, message) for a lark syntax error."""
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if ch in "\"'":
            return exc.line, exc.column, None, (
                f"unterminated string: the string opened here has no closing {ch} on this line"
            )
        hint = ""
        if ch in "{}":
            hint = "; dictionaries and sets are not part of the steer language"
        elif ch in "!&|;":
            hint = "; " + {"!": "use 'not' or '!='", "&": "use 'and'", "|": "use 'or'",
                           ";": "put each statement on its own line"}[ch]
        return exc.line, exc.column, exc.column + 1, f"unexpected character {ch!r}{hint}"
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    line, column, end = _token_place(tok)
    # a bracket left open on an earlier line (or at the end of the file)
    at = len(text) if tok.type in ("$END", "_DEDENT") and tok.end_pos is not None and tok.end_pos >= len(text.rstrip()) \
        else (tok.start_pos if tok.start_pos is not None else len(text))
    opened = _unclosed_bracket(text, at)
    if opened and (opened[0] < line or at == len(text)):
        return opened[0], opened[1], opened[1] + 1, f"'{opened[2]}' is never closed"
    if tok.type in ("RPAR", "RSQB") and _unclosed_bracket(text, tok.start_pos) is None:
        return line, column, end, f"unmatched '{tok}': no bracket is open here"
    # Python habits, recognised by the line's first word
    first_col, stripped = _line_start(text, line)
    first_word = re.match(r"[A-Za-z_]\w*", stripped)
    first_word = first_word.group() if first_word else ""
    if first_word in _PY_WORDS and tok.line == line:
        return line, first_col, first_col + len(first_word), _PY_WORDS[first_word]
    if first_word in _OTHER_PY_WORDS and tok.line == line and column > first_col:
        return line, first_col, first_col + len(first_word), f"'{first_word}' is not part of the steer language"
    if tok.type in ("PLUS", "MINUS", "STAR", "SLASH", "PERCENT") and tok.end_pos is not None \
            and text[tok.end_pos : tok.end_pos + 1] == "=":
        return line, column, column + 2, "augmented assignment is not supported: write x = x + 1"
    if str(tok) in ("==", "!=", "<", "<=", ">", ">=", "in", "not") and first_word and tok.line == line \
            and not text[_offset(text, line, first_col) + len(first_word):tok.start_pos].strip():
        return line, first_col, None, (
            "a statement cannot start with a comparison: to require it, write condition "
            + stripped.split("#")[0].strip()
        )
    if set(exc.accepts or ()) == {"EQUAL", "TILDE"} and tok.line == line:
        # a statement that starts with a name and goes on with something else
        rest = _BRACKETS.sub(lambda m: m.group() if m.group() in "()[]" else '""', text.split("\n")[line - 1][column - 1:])
        if _ASSIGN_LATER.search(rest):
            return line, first_col, None, (
                "only a name can be assigned to: values are immutable, build a new one instead "
                "(e.g. xs = xs[:i] + [v] + xs[i + 1:])"
            )
        if "~" in rest:
            return line, first_col, None, "a sample statement is NAME ~ DISTRIBUTION; nothing else can be on the left of '~'"
    label = match_example(exc)
    if label is not None:
        if label in _STATEMENT_LABELS:
            return line, first_col, None, label
        return line, column, end, label
    accepts = set(exc.accepts or exc.expected or ())
    if str(tok) == "=" and "EQUAL" not in accepts and "NAME" not in accepts:
        if _unclosed_bracket(text, tok.start_pos) is not None and "RPAR" in accepts:
            return line, column, end, "keyword arguments are not supported: pass arguments by position"
        return line, column, end, "use '==' to compare; '=' assigns a value"
    if tok.type == "_INDENT":
        return line, column, end, "unexpected indentation: this line is indented more than the block it is in"
    if accepts == {"_INDENT"}:
        return line, column, end, "expected an indented block after ':'"
    return line, column, end, f"unexpected {_describe_token(tok)}; expected {_describe_expected(accepts)}"


# -- parsing with recovery -------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _placeholder(lines: list[str], i: int) -> str:
    """A harmless statement for broken line ``i`` with the same indentation:
    ``if True:`` when the next line is indented more (it opened a block)."""
    line = lines[i]
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    width = len(indent.expandtabs(8))
    for nxt in lines[i + 1 :]:
        if nxt.strip() and not nxt.strip().startswith("#"):
            if len(nxt[: len(nxt) - len(nxt.lstrip(" \t"))].expandtabs(8)) > width:
                return indent + "if True:"
            break
    return indent + "pass"


def parse(text: str, filename: str = "<string>") -> tuple[ast.Program | None, list[Diagnostic], set[str]]:
    """Parse ``text``: the program (None if it could not be recovered), the
    syntax diagnostics, and the names written on lines that failed to parse."""
    parser = lark_parser()
    source_lines = text.split("\n")
    lines = list(source_lines)
    diagnostics: list[Diagnostic] = []
    broken_names: set[str] = set()
    replaced: set[int] = set()

    def diag(line: int, column: int, end: int | None, message: str) -> Diagnostic:
        src = source_lines[line - 1] if 1 <= line <= len(source_lines) else ""
        return Diagnostic(filename, line, column, message, src, end)

    while True:
        current = "\n".join(lines)
        if not current.endswith("\n"):
            current += "\n"
        try:
            tree = parser.parse(current)
        except _LayoutError as exc:
            if exc.line in replaced:
                return None, diagnostics, broken_names
            diagnostics.append(diag(exc.line, exc.column, None, exc.message))
            line_no = exc.line
        except UnexpectedInput as exc:
            line, column, end, message = _syntax_message(exc, current)
            if line in replaced:
                return None, diagnostics, broken_names
            diagnostics.append(diag(line, column, end, message))
            line_no = line
            tok = getattr(exc, "token", None)
            if tok is not None and tok.type in ("$END",):
                return None, diagnostics, broken_names
        else:
            transformer = ToAST()
            try:
                program = transformer.transform(tree)
            except VisitError as exc:  # a bug in the transformer: report it plainly
                raise exc.orig_exc from exc
            for line, column, end, message in transformer.problems:
                diagnostics.append(diag(line, column, end, message))
            return program, diagnostics, broken_names
        # recover: replace the broken line and parse again
        if (
            len(diagnostics) >= MAX_SYNTAX_ERRORS
            or not 1 <= line_no <= len(lines)
            or line_no in replaced
            or (replaced and line_no < max(replaced))
            or not lines[line_no - 1].strip()
        ):
            return None, diagnostics, broken_names
        first_code = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")), 0)
        if line_no - 1 == first_code and not lines[line_no - 1].lstrip().startswith("program "):
            return None, diagnostics, broken_names  # no header: nothing to recover
        if line_no - 1 != first_code and not lines[line_no - 1][:1].isspace():
            return None, diagnostics, broken_names  # outside the program: nothing to recover
        broken_names.update(_IDENT.findall(source_lines[line_no - 1]))
        replaced.add(line_no)
        if line_no - 1 == first_code:
            lines[line_no - 1] = "program _():"
        else:
            lines[line_no - 1] = _placeholder(lines, line_no - 1)
