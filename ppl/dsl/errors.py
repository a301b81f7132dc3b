"""Diagnostics and the exceptions of the steer DSL.

Every problem found in a ``.steer`` program is a :class:`Diagnostic`: a place
(file, line, column, counted from 1) and a message. Formatted, it reads like a
compiler's report::

    lipogram.steer:5:38: undefined name 'lack'; did you mean 'lacks'?
            tok ~ ctx.next_token() where lack("e")
                                         ^^^^

:class:`DSLError` carries the list of diagnostics of one check (all of them,
found in one pass); its ``str()`` is the formatted report.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PPLError


SOURCE_WIDTH = 100  # characters of a source line shown under a message
MESSAGE_WIDTH = 200  # a runtime message longer than this is cut in its middle


@dataclass(frozen=True)
class Diagnostic:
    """One problem at ``filename:line:column`` (1-based). ``end_column`` (on
    the same line, exclusive) widens the caret under the offending text."""

    filename: str
    line: int
    column: int
    message: str
    source_line: str = ""
    end_column: int | None = None

    @property
    def location(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}"

    def format(self) -> str:
        """``FILE:LINE:COL: message``, then the source line and a caret (a
        long line is cut to a window around the column)."""
        head = f"{self.location}: {self.message}"
        src = self.source_line.rstrip("\r\n")
        if not src.strip():
            return head
        column, end = self.column, self.end_column
        if len(src) > SOURCE_WIDTH:
            start = max(column - 1 - SOURCE_WIDTH // 2, 0)
            cut = src[start:start + SOURCE_WIDTH]
            src = ("..." if start else "") + cut + ("..." if start + SOURCE_WIDTH < len(src) else "")
            shift = start - (3 if start else 0)
            column -= shift
            end = None if end is None else end - shift
        # keep the line's own tabs so the caret lines up in a terminal
        lead = "".join(ch if ch == "\t" else " " for ch in src[: max(column - 1, 0)])
        width = 1
        if end is not None and end > column:
            width = min(end - column, max(len(src) - column + 1, 1))
        return f"{head}\n    {src}\n    {lead}{'^' * width}"

    def __str__(self) -> str:
        return self.format()


class DSLError(PPLError):
    """A ``.steer`` program has errors (syntax, semantics, bad arguments, or a
    runtime error at a known place). ``diagnostics`` lists them in source
    order; ``str()`` is the formatted report, one block per diagnostic."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic, summary: str | None = None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        self.summary = summary
        super().__init__(self._report())

    def _report(self) -> str:
        parts = [d.format() for d in self.diagnostics]
        if self.summary:
            parts.append(self.summary)
        return "\n".join(parts)

    def __str__(self) -> str:
        return self._report()


class DSLRuntimeError(DSLError):
    """A running ``.steer`` program failed at a known place (division by
    zero, an index out of range, a step limit ...). The runtime wraps it in
    :class:`~ppl.errors.InferenceError` naming the program and the step."""


class DSLArgumentError(DSLError):
    """A program factory was called with arguments that do not fit the
    program's declared parameters."""

    def __init__(self, message: str):
        self.diagnostics = []
        self.summary = message
        PPLError.__init__(self, message)


class Failure:
    """Raises the located runtime errors of one program:
    ``fail(node, message)`` raises :class:`DSLRuntimeError` at ``node``'s
    place in ``filename`` (``column``/``end`` narrow it, ``cause`` chains)."""

    def __init__(self, filename: str, lines: list[str]):
        self.filename, self.lines = filename, lines

    def diagnostic(self, node, message: str, column: int | None = None, end: int | None = None) -> Diagnostic:
        line = getattr(node, "line", 0)
        col = column if column is not None else getattr(node, "column", 0)
        if column is None and end is None and getattr(node, "end_line", None) == line:
            end = node.end_column
        src = self.lines[line - 1] if 1 <= line <= len(self.lines) else ""
        if len(message) > MESSAGE_WIDTH:
            keep = (MESSAGE_WIDTH - 30) // 2
            message = f"{message[:keep]}... [{len(message) - 2 * keep} more characters] ...{message[-keep:]}"
        return Diagnostic(self.filename, line, col, message, src, end)

    def __call__(self, node, message: str, column: int | None = None, cause=None, end: int | None = None):
        raise DSLRuntimeError(self.diagnostic(node, message, column, end)) from cause
