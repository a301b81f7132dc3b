"""Parsing ``.steer`` text into :mod:`ppl.dsl.ast` nodes: the lark grammar
``grammar/steer.lark`` (LALR, with the post-lexer of :mod:`ppl.dsl.layout`),
a Transformer from parse trees to nodes, and recovery from syntax errors.

Most nodes are built straight from the grammar rule of their name (see
:mod:`ppl.dsl.ast`, lark's ``ast_utils.create_transformer``); :class:`ToAST`
writes out only the rules that need more: operators that the rule implies,
spans over the operands, literal values, optional parts.

After a syntax error (put in words by :mod:`ppl.dsl.syntax_errors`) the
offending line is replaced by a placeholder (``pass``, or ``if True:`` for a
line that opens a block) and the text is parsed again, so one check reports
every syntax error, not only the first. Names written on the replaced lines
are remembered so that the checker does not report them as undefined.
"""

from __future__ import annotations

import functools
import re

from lark import Lark, Token, Transformer, v_args
from lark.ast_utils import create_transformer
from lark.exceptions import UnexpectedInput, VisitError

from .. import grammars as _grammars
from . import ast
from .errors import Diagnostic
from .layout import LayoutError, SteerIndenter
from .syntax_errors import syntax_message

MAX_SYNTAX_ERRORS = 20
MAX_PARSED_CHARS = 150_000  # recovery from syntax errors re-parses; this bounds the work of one check


@functools.lru_cache(maxsize=1)
def lark_parser() -> Lark:
    """The LALR parser for ``grammar/steer.lark`` (built once)."""
    return Lark(
        _grammars.read("steer"),
        parser="lalr",
        lexer="basic",  # keywords are reserved everywhere, so errors read predictably
        postlex=SteerIndenter(),
        propagate_positions=True,
        maybe_placeholders=True,
    )


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


class _Build:
    """A rule's callback that builds ``node`` from the rule's children, in
    order, at the rule's place."""

    def __init__(self, node: type):
        self.node = node

    def __call__(self, meta, children):
        return self.node(*children, **_pos(meta))


def _from_rule(inline: bool, meta: bool):
    """The decorator ``create_transformer`` applies to each node class (in
    place of lark's ``v_args(inline, meta)``: every node takes its children
    inline and its place from the rule's meta)."""
    return lambda node: v_args(meta=True)(_Build(node))


#: statements whose rule is named after the node with ``_stmt`` added
#: (``return_stmt`` builds a :class:`~ppl.dsl.ast.Return`)
_STMT_RULES = ("return", "break", "continue", "pass", "for", "repeat", "while", "step")


@v_args(meta=True)
class ToAST(Transformer):
    """Builds :mod:`ppl.dsl.ast` nodes; string-escape problems are collected
    in ``problems`` as (line, column, end_column, message). The methods are
    the rules that are not a node's fields in order."""

    def __init__(self):
        super().__init__()
        self.problems: list[tuple[int, int, int, str]] = []
        create_transformer(ast, self, _from_rule)
        for word in _STMT_RULES:
            setattr(self, word + "_stmt", getattr(self, word))

    def NAME(self, token: Token) -> ast.Name:
        return ast.Name(str(token), **_pos(token))

    def start(self, meta, children):
        return tuple(children)

    def program(self, meta, children):
        name, params, body = children
        return ast.Program(name.id, params or (), body, name_column=name.column, **_pos(meta))

    def params(self, meta, children):
        return tuple(children)

    def param(self, meta, children):
        name, type_, default = children
        return ast.Param(
            name.id, type_.id if type_ is not None else None, default,
            type_column=type_.column if type_ is not None else 0, **_pos(meta),
        )

    def inline_suite(self, meta, children):
        return (children[0],)

    def block_suite(self, meta, children):
        return tuple(children)

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

    def method_call(self, meta, children):
        value, name, args = children
        positional, keywords = args or ((), ())
        for k in keywords:
            self.problems.append((k.line, k.column, k.column + len(k.name),
                                  f"{name.id}() takes no keyword arguments"))
        return ast.MethodCall(value, name.id, positional, attr_column=name.column, **_pos(meta))

    def attribute(self, meta, children):
        value, name = children
        return ast.Attribute(value, name.id, attr_column=name.column, **_pos(meta))

    def call(self, meta, children):
        name, args = children
        positional, keywords = args or ((), ())
        return ast.Call(name, positional, keywords, **_pos(meta))

    def call_args(self, meta, children):
        """Positional arguments, then keyword arguments (``(args, keywords)``)."""
        first_kw = next((i for i, c in enumerate(children) if isinstance(c, ast.Keyword)), len(children))
        positional = tuple(children[:first_kw])  # a stray one after a keyword is reported, then dropped
        keywords = tuple(c for c in children if isinstance(c, ast.Keyword))
        for c in children[first_kw:]:
            if not isinstance(c, ast.Keyword):
                self.problems.append((c.line, c.column, c.end_column if c.end_line == c.line else c.column + 1,
                                      "a positional argument cannot follow a keyword argument"))
        return positional, keywords

    def call_stmt(self, meta, children):
        return self._call_program(None, *children, meta)

    def call_assign(self, meta, children):
        return self._call_program(*children, meta)

    def _call_program(self, target, name, args, meta):
        positional, keywords = args or ((), ())
        return ast.CallProgram(target, name, positional, keywords, **_pos(meta))

    def keyword(self, meta, children):
        name, value = children
        return ast.Keyword(name.id, value, **_span(name, value))

    def if_exp(self, meta, children):
        body, test, orelse = children
        return ast.IfExp(test, body, orelse, **_span(body, orelse))

    def sample(self, meta, children):
        target, dist, where, checked, proposal = children
        q, q_where = proposal if proposal is not None else (None, None)
        return ast.Sample(target, dist, where, checked, q, q_where, **_pos(meta))

    def where_clause(self, meta, children):
        return children[0]

    def checked_clause(self, meta, children):
        return children[0]

    def checked_test(self, meta, children):
        name, test = children
        return ast.Predicate(name, test, **_span(name, test))

    def proposal_clause(self, meta, children):
        return children[0], children[1]

    def args(self, meta, children):
        return tuple(children)

    def var(self, meta, children):
        return children[0]

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


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse(text: str, filename: str = "<string>") -> tuple[ast.Program | None, list[Diagnostic], set[str]]:
    """Parse ``text``: its first program (None if it could not be recovered;
    :func:`parse_programs` gives them all), the syntax diagnostics, and the
    names written on lines that failed to parse."""
    programs, diagnostics, broken = parse_programs(text, filename)
    return (programs[0] if programs else None), diagnostics, broken


def parse_programs(text: str, filename: str = "<string>"
                   ) -> tuple[tuple[ast.Program, ...] | None, list[Diagnostic], set[str]]:
    """Parse ``text``: its programs in source order (None if they could not
    be recovered), the syntax diagnostics, and the names written on lines
    that failed to parse."""
    parser = lark_parser()
    source_lines = text.split("\n")
    lines = list(source_lines)
    diagnostics: list[Diagnostic] = []
    broken_names: set[str] = set()
    replaced: set[int] = set()

    def diag(line: int, column: int, end: int | None, message: str) -> Diagnostic:
        src = source_lines[line - 1] if 1 <= line <= len(source_lines) else ""
        return Diagnostic(filename, line, column, message, src, end)

    parsed = 0  # characters read by failed attempts: a long text with many late errors is re-read only a few times
    while True:
        current = "\n".join(lines)
        if not current.endswith("\n"):
            current += "\n"
        try:
            tree = parser.parse(current)
        except (LayoutError, UnexpectedInput) as exc:
            line_no, column, end, message = _describe(exc, current, parser)
            parsed += sum(len(ln) + 1 for ln in lines[:line_no])  # what this attempt read
            if line_no in replaced:
                return None, diagnostics, broken_names
            diagnostics.append(diag(line_no, column, end, message))
            tok = getattr(exc, "token", None)
            if tok is not None and tok.type in ("$END",):
                return None, diagnostics, broken_names
        else:
            transformer = ToAST()
            try:
                programs = transformer.transform(tree)
            except VisitError as exc:  # a bug in the transformer: report it plainly
                raise exc.orig_exc from exc
            for line, column, end, message in transformer.problems:
                diagnostics.append(diag(line, column, end, message))
            return programs, diagnostics, broken_names
        if len(diagnostics) >= MAX_SYNTAX_ERRORS or parsed > MAX_PARSED_CHARS or not _replace(lines, line_no, replaced):
            return None, diagnostics, broken_names
        broken_names.update(_IDENT.findall(source_lines[line_no - 1]))


def _describe(exc: Exception, text: str, parser: Lark) -> tuple[int, int, int | None, str]:
    if isinstance(exc, LayoutError):
        return exc.line, exc.column, None, exc.message
    return syntax_message(exc, text, parser)


def _replace(lines: list[str], line_no: int, replaced: set[int]) -> bool:
    """Replace broken line ``line_no`` by a placeholder, to parse again;
    False if it cannot be recovered from."""
    if (
        not 1 <= line_no <= len(lines)
        or line_no in replaced
        or (replaced and line_no < max(replaced))
        or not lines[line_no - 1].strip()
    ):
        return False
    first_code = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")), 0)
    header = lines[line_no - 1].startswith("program ")
    if line_no - 1 == first_code and not lines[line_no - 1].lstrip().startswith("program "):
        return False  # no header: nothing to recover
    if line_no - 1 != first_code and not lines[line_no - 1][:1].isspace() and not header:
        return False  # outside every program: nothing to recover
    replaced.add(line_no)
    if line_no - 1 == first_code or header:  # a broken header: a program named _ (ppl.dsl.calls ignores it)
        lines[line_no - 1] = "program _():"
    else:
        lines[line_no - 1] = _placeholder(lines, line_no - 1)
    return True


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
