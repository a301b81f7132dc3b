"""The abstract syntax of the steer language: frozen dataclasses, each
carrying the place it was written (``line``, ``column``, 1-based, and the
``end_line``/``end_column`` just after it).

Built by the lark Transformer in :mod:`ppl.dsl.parser`: a node class that
also derives from lark's ``ast_utils.Ast`` (here ``_FromRule``) is built
straight from the grammar rule of its name, its fields being the rule's
children in order (``Observe`` from ``observe: "observe" expr "=" expr``;
``Return`` from ``return_stmt``, as the grammar adds ``_stmt`` to a few).
Read by the checker (:mod:`ppl.dsl.checker`) and the code generator
(:mod:`ppl.dsl.codegen`), both :class:`Visitor` s. Blocks are tuples, so a
whole program is an immutable value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lark.ast_utils import Ast as _FromRule


@dataclass(frozen=True)
class Node:
    line: int = field(default=0, kw_only=True, compare=False)
    column: int = field(default=0, kw_only=True, compare=False)
    end_line: int = field(default=0, kw_only=True, compare=False)
    end_column: int = field(default=0, kw_only=True, compare=False)


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
class Index(Expr, _FromRule):
    value: Expr
    index: Expr


@dataclass(frozen=True)
class Slice(Expr, _FromRule):
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
class Keyword(Node):
    """``name=value`` in a call."""

    name: str
    value: Expr


@dataclass(frozen=True)
class Call(Expr):
    """``name(args, key=value, ...)``: a call of a builtin."""

    func: Name
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...] = ()


@dataclass(frozen=True)
class IfExp(Expr):
    """``body if test else orelse``: only the chosen branch is evaluated."""

    test: Expr
    body: Expr
    orelse: Expr


@dataclass(frozen=True)
class Predicate(Node):
    """``NAME: TEST`` after ``where_checked``: a predicate on the text written
    in the language, ``TEST`` worked out with ``NAME`` bound to the text."""

    param: Name
    test: Expr


@dataclass(frozen=True)
class Stmt(Node):
    pass


@dataclass(frozen=True)
class Assign(Stmt, _FromRule):
    target: Name
    value: Expr


@dataclass(frozen=True)
class Sample(Stmt):
    """``target ~ dist [where C] [where_checked PRED] [proposal Q [where D]]``:
    ``where`` restricts ``dist`` by a token mask, ``where_checked`` by a
    predicate on the text (AWRS: a builtin's name, or a :class:`Predicate`),
    ``proposal`` draws from ``Q`` (restricted by ``D``) and weights by ``p/q``."""

    target: Name
    dist: Expr
    where: Expr | None
    checked: Expr | Predicate | None = None
    proposal: Expr | None = None
    proposal_where: Expr | None = None


@dataclass(frozen=True)
class CallProgram(Stmt):
    """``[target =] call program(args, key=value, ...)``: the body of
    another program of the file, run here on the calling particle as one
    step block; ``target`` (None for a bare ``call``) gets its value."""

    target: Name | None
    program: Name
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...] = ()


@dataclass(frozen=True)
class Observe(Stmt, _FromRule):
    """``observe dist = value``; ``observe ctx = "text"`` observes a string."""

    dist: Expr
    value: Expr


@dataclass(frozen=True)
class Condition(Stmt, _FromRule):
    test: Expr


@dataclass(frozen=True)
class Factor(Stmt, _FromRule):
    value: Expr


@dataclass(frozen=True)
class Twist(Stmt, _FromRule):
    value: Expr


@dataclass(frozen=True)
class Finish(Stmt, _FromRule):
    pass


@dataclass(frozen=True)
class Return(Stmt, _FromRule):
    value: Expr


@dataclass(frozen=True)
class Break(Stmt, _FromRule):
    pass


@dataclass(frozen=True)
class Continue(Stmt, _FromRule):
    pass


@dataclass(frozen=True)
class Pass(Stmt, _FromRule):
    pass


@dataclass(frozen=True)
class If(Stmt):
    """``if``/``elif`` branches (test, body) in order, then ``orelse``."""

    branches: tuple[tuple[Expr, tuple[Stmt, ...]], ...]
    orelse: tuple[Stmt, ...] | None


@dataclass(frozen=True)
class For(Stmt, _FromRule):
    target: Name
    iter: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Repeat(Stmt, _FromRule):
    count: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class While(Stmt, _FromRule):
    test: Expr
    body: tuple[Stmt, ...]


Loop = (For, Repeat, While)


@dataclass(frozen=True)
class Step(Stmt, _FromRule):
    """``step:``: every primitive of ``body`` belongs to one SMC step."""

    body: tuple[Stmt, ...]


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


class Visitor:
    """Dispatch by node class: ``visit(node, *args)`` calls
    ``self.visit_<ClassName>(node, *args)`` (``visit_BinOp`` for a
    :class:`BinOp`). The checker and the code generator are visitors."""

    def visit(self, node: Node, *args):
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:  # pragma: no cover - every node class has its method
            raise TypeError(f"{type(self).__name__} has no visit_{type(node).__name__}")
        return method(node, *args)


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
