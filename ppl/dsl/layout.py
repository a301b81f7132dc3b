"""The layout of a ``.steer`` file: indentation as ``_INDENT``/``_DEDENT``
tokens, Python-style, and line breaks inside ``(...)`` and ``[...]``
ignored. This is the lark post-lexer of :func:`ppl.dsl.parser.lark_parser`.
"""

from __future__ import annotations

from typing import Iterator

from lark import Token
from lark.indenter import Indenter


class LayoutError(Exception):
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
                raise LayoutError(
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
                    raise LayoutError(token.line, token.column, f"unmatched '{token}': no bracket is open here")
                self.paren_level -= 1
        while len(self.indent_level) > 1:
            self.indent_level.pop()
            yield Token.new_borrow_pos(self.DEDENT_type, "", token) if token else Token(
                self.DEDENT_type, "", 0, 1, 1, 1, 1, 0
            )
