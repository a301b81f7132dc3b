"""The abstract syntax of the steer language: frozen dataclasses, each
carrying the place it was written (``line``, ``column``, 1-based, and the
``end_line``/``end_column`` just after it).

Built by the lark Transformer in :mod:`ppl.dsl.parser`, read by the checker
(:mod:`ppl.dsl.checker`) and the compiler (:mod:`ppl.dsl.compiler`). Blocks
are tuples, so a whole program is an immutable value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Node:
    line: int = field(default=0, kw_only=True, compare=False)
    column: int = field(default=0, kw_only=True, compare=False)
    end_line: int = field(default=0, kw_only=True, compare=False)
    end_column: int = field(default=0, kw_only=True, compare=False)


# -- expressions -----------------------------------------------------------------


@dataclass(frozen=True)
class Expr(Node):
    pass


@dataclass(frozen=True)
class Const(Expr):
    """A literal: int, float, str or bool."""

    value: Any


@dataclass(frozen=True)
class Name(Expr):
    id: str


@dataclass(frozen=True)
class ListExpr(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class BinOp(Expr):
    """Arithmetic: ``+ - * / // % **``."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Compare(Expr):
    """``== != < <= > >= in``, ``not in`` (never chained)."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class BoolOp(Expr):
    """``and`` / ``or``, short-circuiting; on two token constraints they mean
    ``&`` / ``|``."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class UnaryOp(Expr):
    """``-x``, ``+x``, ``not x``."""

    op: str
    operand: Expr


@dataclass(frozen=True)
class Index(Expr):
    value: Expr
    index: Expr


@dataclass(frozen=True)
class Slice(Expr):
    value: Expr
    lower: Expr | None
    upper: Expr | None


@dataclass(frozen=True)
class Attribute(Expr):
    """``x.name``: only the properties of contexts and tokens are allowed."""

    value: Expr
    attr: str
    attr_column: int = 0


@dataclass(frozen=True)
class MethodCall(Expr):
    """``x.name(args)``: only ``ctx.next_token()`` is a method."""

    value: Expr
    method: str
    args: tuple[Expr, ...]
    attr_column: int = 0


@dataclass(frozen=True)
class Call(Expr):
    """``name(args)``: a call of a builtin."""

    func: Name
    args: tuple[Expr, ...]


# -- statements ------------------------------------------------------------------


@dataclass(frozen=True)
class Stmt(Node):
    pass


@dataclass(frozen=True)
class Assign(Stmt):
    target: Name
    value: Expr


@dataclass(frozen=True)
class Sample(Stmt):
    """``target ~ dist`` or ``target ~ dist where constraint``."""

    target: Name
    dist: Expr
    where: Expr | None


@dataclass(frozen=True)
class Observe(Stmt):
    """``observe dist = value``; ``observe ctx = "text"`` observes a string."""

    dist: Expr
    value: Expr


@dataclass(frozen=True)
class Condition(Stmt):
    test: Expr


@dataclass(frozen=True)
class Factor(Stmt):
    value: Expr


@dataclass(frozen=True)
class Twist(Stmt):
    value: Expr


@dataclass(frozen=True)
class Finish(Stmt):
    pass


@dataclass(frozen=True)
class Return(Stmt):
    value: Expr


@dataclass(frozen=True)
class Break(Stmt):
    pass


@dataclass(frozen=True)
class Continue(Stmt):
    pass


@dataclass(frozen=True)
class Pass(Stmt):
    pass


@dataclass(frozen=True)
class If(Stmt):
    """``if``/``elif`` branches (test, body) in order, then ``orelse``."""

    branches: tuple[tuple[Expr, tuple[Stmt, ...]], ...]
    orelse: tuple[Stmt, ...] | None


@dataclass(frozen=True)
class For(Stmt):
    target: Name
    iter: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Repeat(Stmt):
    count: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class While(Stmt):
    test: Expr
    body: tuple[Stmt, ...]


Loop = (For, Repeat, While)


# -- the program -------------------------------------------------------------------


@dataclass(frozen=True)
class Param(Node):
    """``name: type = default`` (type and default may be omitted)."""

    name: str
    type: str | None
    default: Expr | None
    type_column: int = 0


@dataclass(frozen=True)
class Program(Node):
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    name_column: int = 0


def children(node: Node):
    """The direct sub-nodes of ``node`` (expressions and statements)."""
    if isinstance(node, If):
        for test, body in node.branches:
            yield test
            yield from body
        if node.orelse:
            yield from node.orelse
        return
    for name in node.__dataclass_fields__:
        value = getattr(node, name)
        if isinstance(value, Node):
            yield value
        elif isinstance(value, tuple):
            for v in value:
                if isinstance(v, Node):
                    yield v


def walk(node: Node):
    """``node`` and every node below it, depth first, in source order."""
    yield node
    for child in children(node):
        yield from walk(child)
