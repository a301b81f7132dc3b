"""Syntax errors in words.

A lark error becomes (line, column, end column, message) by, in order:
rules on the unexpected token and its line (a bracket never closed, Python
habits such as ``import``, ``x += 1`` or a comparison used as a statement),
then lark's ``match_examples`` technique against :data:`SYNTAX_EXAMPLES`
(malformed programs labelled with what is wrong: the error whose parser
state, accepted tokens and unexpected token match an example's gets its
label), then a generic "unexpected X; expected Y".

The functions take the LALR parser (:func:`ppl.dsl.parser.lark_parser`)
as an argument: the examples are parsed with it, and the names of the
tokens it expected come from its terminals.
"""

from __future__ import annotations

import functools
import re

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from .layout import LayoutError

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
    "'step' is a word of the language, not a name: 'step:' opens a block whose primitives make "
    "one SMC step; choose another name": [
        _body("step = 1"),
        _body("step ~ bernoulli(0.5)"),
        _body("step += 1"),
    ],
    "'call' is a word of the language, not a name: 'call NAME(ARGUMENTS)' runs another program "
    "of the file; choose another name": [
        _body("call = 1"),
        _body("call ~ bernoulli(0.5)"),
        _body("call += 1"),
    ],
    "a call of a program is a statement of its own: x = call NAME(ARGUMENTS), or call NAME(ARGUMENTS) "
    "when its value is not needed": [
        _body("x = 1 + call f(n)"),
        _body("x = [call f(n)]"),
        _body("x = g(call f(n))"),
        _body("condition call f(n)"),
        _body("factor call f(n)"),
        _body("return call f(n)"),
        _body("if call f(n):", "    pass"),
    ],
    "'call' names the program to run and its arguments: call NAME(ARGUMENTS)": [
        _body("call f"),
        _body("x = call f"),
        _body("call 3"),
        _body("x = call 3"),
        _body("call f.g()"),
        _body("x = call"),
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
    "a statement outside every program: a program's statements are indented under its header, "
    "and another program starts with program NAME(PARAMETERS):": [
        [head + tail for head in (_HEAD, "program p():\n")  # a header with and without parameters
         for tail in ("    pass\nx = 1\n", "    pass\nrepeat 3:\n    pass\n", "    pass\nfinish\n",
                      "    if n:\n        pass\nx = 1\n")],
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


def _state_id(exc: UnexpectedToken):
    state = exc.state
    return getattr(state, "position", state)


@functools.lru_cache(maxsize=1)
def _example_table(parser: Lark) -> tuple[tuple[int, str, str, frozenset, str], ...]:
    """(LALR state, token type, token text, accepted tokens, label) of every
    example in :data:`SYNTAX_EXAMPLES`: lark's ``match_examples`` technique,
    with each example parsed once rather than at every error, and states
    compared by their LALR state alone (lark's ``ParserState`` equality also
    compares the stack depth, which grows with every earlier statement)."""
    rows = []
    for label, examples in SYNTAX_EXAMPLES.items():
        for example in examples:
            try:
                parser.parse(example)
            except UnexpectedToken as ut:
                rows.append((_state_id(ut), ut.token.type, str(ut.token), frozenset(ut.accepts), label))
            except (UnexpectedInput, LayoutError):
                continue
    return tuple(rows)


def match_example(exc: UnexpectedToken, parser: Lark) -> str | None:
    """The label of the example that failed in the same parser state, with the
    same accepted tokens and the same unexpected token (its text if possible,
    else its type); None if there is none."""
    accepts = frozenset(exc.accepts)
    tok = exc.token
    here = _state_id(exc)
    by_type = None
    for state, ttype, text, acc, label in _example_table(parser):
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

_BRACKETS = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|#[^\n]*|[()\[\]]")

#: where a syntax error is and what it says: (line, column, end column or None, message)
Place = tuple[int, int, int | None, str]


def syntax_message(exc: UnexpectedInput, text: str, parser: Lark) -> Place:
    """(line, column, end_column, message) for a lark syntax error in ``text``."""
    if isinstance(exc, UnexpectedCharacters):
        return _character_message(exc, text)
    assert isinstance(exc, UnexpectedToken)
    return (_bracket_message(exc, text) or _habit_message(exc, text)
            or _example_message(exc, text, parser) or _generic_message(exc, text, parser))


def _character_message(exc: UnexpectedCharacters, text: str) -> Place:
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


def _bracket_message(exc: UnexpectedToken, text: str) -> Place | None:
    """A bracket left open on an earlier line (or at the end of the file), or
    a closing bracket with none open."""
    tok = exc.token
    line, column, end = _token_place(tok)
    at = len(text) if tok.type in ("$END", "_DEDENT") and tok.end_pos is not None and tok.end_pos >= len(text.rstrip()) \
        else (tok.start_pos if tok.start_pos is not None else len(text))
    opened = _unclosed_bracket(text, at)
    if opened and (opened[0] < line or at == len(text)):
        return opened[0], opened[1], opened[1] + 1, f"'{opened[2]}' is never closed"
    if tok.type in ("RPAR", "RSQB") and _unclosed_bracket(text, tok.start_pos) is None:
        return line, column, end, f"unmatched '{tok}': no bracket is open here"
    return None


def _habit_message(exc: UnexpectedToken, text: str) -> Place | None:
    """Python habits, recognised by the line's first word and the token."""
    tok = exc.token
    line, column, end = _token_place(tok)
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
    return None


def _example_message(exc: UnexpectedToken, text: str, parser: Lark) -> Place | None:
    label = match_example(exc, parser)
    if label is None:
        return None
    line, column, end = _token_place(exc.token)
    if label in _STATEMENT_LABELS:
        return line, _line_start(text, line)[0], None, label
    return line, column, end, label


def _generic_message(exc: UnexpectedToken, text: str, parser: Lark) -> Place:
    tok = exc.token
    line, column, end = _token_place(tok)
    accepts = set(exc.accepts or exc.expected or ())
    if str(tok) == "=" and "EQUAL" not in accepts and "NAME" not in accepts:
        if _unclosed_bracket(text, tok.start_pos) is not None and "RPAR" in accepts:
            return line, column, end, "'=' inside brackets: a keyword argument is NAME=VALUE in a call; compare with '=='"
        return line, column, end, "use '==' to compare; '=' assigns a value"
    if tok.type == "_INDENT":
        return line, column, end, "unexpected indentation: this line is indented more than the block it is in"
    if accepts == {"_INDENT"}:
        return line, column, end, "expected an indented block after ':'"
    return line, column, end, f"unexpected {_describe_token(tok)}; expected {_describe_expected(accepts, parser)}"


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


def _describe_expected(accepts: set[str], parser: Lark) -> str:
    names = []
    expression_start = {"NAME", "STRING", "INT", "FLOAT", "LSQB", "LPAR", "MINUS"}
    if expression_start <= accepts:
        names.append("an expression")
        accepts = accepts - expression_start - {"PLUS", "TRUE", "FALSE", "NOT", "CALL"}
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


def _line_start(text: str, line: int) -> tuple[int, str]:
    lines = text.split("\n")
    src = lines[line - 1] if 1 <= line <= len(lines) else ""
    return len(src) - len(src.lstrip(" \t")) + 1, src.strip()


def _offset(text: str, line: int, column: int) -> int:
    pos = 0
    for _ in range(line - 1):
        pos = text.index("\n", pos) + 1
    return pos + column - 1
