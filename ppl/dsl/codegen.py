"""Code generation: a checked program's body as a flat list of
instructions (:class:`Instr`), shared by all its particles, and each
expression as a Python closure ``f(env)`` over a particle's environment.

An instruction is an opcode and up to three operands (closures, variable
names, jump targets). Control flow is jumps: ``if`` is ``JUMP_IF_FALSE``
over each branch; a loop's head (``FOR_NEXT``, ``REPEAT_NEXT``, or a
``while``'s ``JUMP_IF_FALSE``) leaves it, ``LOOP_BACK`` goes back to its
head, ``break`` is a ``JUMP`` past it. A ``step:`` block is a ``STEP``
(the step may end there) and its body, every instruction of which carries
the outermost block in ``group`` (no step ends before them). A ``for``/``repeat`` loop keeps its
state in the environment under a slot name (``%loop1`` ...), and the
language model is there under :data:`LM_KEY`: names a program cannot write.
A call of another program (``x = call f(args)``) is compiled by
:mod:`ppl.dsl.inline`, which copies ``f``'s body in place with its names
under a ``scope`` of their own (``%call1.n`` ...) and adds the opcodes
``CALL_START``, ``CALL_RETURN`` and ``CALL_END``.
:class:`~ppl.dsl.machine.SteerModel` runs the instructions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..constraints import TokenConstraint
from ..distributions import NextToken
from ..errors import ModelError
from . import ast
from .builtins import PREDICATE_TAKERS, Registry
from .errors import DSLError, Failure
from .operators import (
    OpError,
    attribute,
    binop,
    check_depth,
    compare,
    index,
    method,
    slice_,
    truth,
    unary,
)
from .resolve import FILE_ARGUMENTS, lark_file, read_lark
from .sampling import predicate, sample_spec
from .values import brief, show

LM_KEY = "%lm"  # the language model, in every environment (not a legal name)

# opcodes
(ASSIGN, SAMPLE, OBSERVE, CONDITION, FACTOR, TWIST, JUMP, JUMP_IF_FALSE, FOR_INIT, FOR_NEXT,
 REPEAT_INIT, REPEAT_NEXT, LOOP_BACK, FINISH, RETURN, STEP, CALL_START, CALL_RETURN, CALL_END) = range(19)

OPNAMES = ("ASSIGN SAMPLE OBSERVE CONDITION FACTOR TWIST JUMP JUMP_IF_FALSE FOR_INIT FOR_NEXT "
           "REPEAT_INIT REPEAT_NEXT LOOP_BACK FINISH RETURN STEP CALL_START CALL_RETURN CALL_END").split()


class Instr:
    """One instruction: ``op`` and up to three operands; ``node`` is the
    statement it comes from (for error places), ``loop`` the innermost loop
    around it (for the step limit), ``group`` the outermost ``step:`` block
    around it (None outside blocks)."""

    __slots__ = ("op", "a", "b", "c", "node", "loop", "group")

    def __init__(self, op: int, a=None, b=None, c=None, node=None, loop=None, group=None):
        self.op, self.a, self.b, self.c, self.node, self.loop = op, a, b, c, node, loop
        self.group = group

    def __repr__(self) -> str:
        line = getattr(self.node, "line", "?")
        return f"<{OPNAMES[self.op]} {self.a!r} {self.b!r} line {line}>"


@dataclass
class CompiledProgram:
    """A checked program's code, shared by all its particles; ``params`` are
    its declared parameters (:class:`~ppl.dsl.factory.Param` s)."""

    name: str
    filename: str
    source: str
    ast: ast.Program
    params: tuple[Any, ...]
    code: list[Instr]
    fail: Failure
    doc: str = ""


def generate(program: ast.Program, registry: Registry, fail: Failure) -> list[Instr]:
    """The instructions of a checked program's body."""
    gen = CodeGen(registry, fail)
    gen.block(program.body)
    return gen.code


class ExprCompiler(ast.Visitor):
    """Expressions -> closures ``f(env)``; a failing operation raises a
    located :class:`~ppl.dsl.errors.DSLRuntimeError` through ``fail``. A
    variable ``x`` is ``env[scope + "x"]``."""

    def __init__(self, registry: Registry, fail: Failure, scope: str = ""):
        self.registry = registry
        self.fail = fail
        self.scope = scope

    def visit_Const(self, e):
        value = e.value
        return lambda env: value

    def visit_ListExpr(self, e):
        fs = [self.visit(item) for item in e.items]
        fail = self.fail

        def f(env):
            items = tuple(g(env) for g in fs)
            for x in items:
                if isinstance(x, NextToken):
                    fail(e, "a next-token distribution cannot be put in a list")
                if isinstance(x, tuple):
                    try:
                        return check_depth(items)
                    except OpError as exc:
                        fail(e, str(exc), cause=exc)
            return items

        return f

    def visit_Name(self, e):
        name = e.id
        entry = self.registry.get(name)
        if entry is not None and entry.is_constant:
            value = entry.value
            return lambda env: value
        fail, key = self.fail, self.scope + name

        def f(env):
            try:
                return env[key]
            except KeyError:
                fail(e, f"{name!r} is used before it is given a value")

        return f

    def _op(self, e, fn, *subs):
        fail = self.fail
        if len(subs) == 1:
            (g,) = subs

            def f1(env):
                try:
                    return fn(g(env))
                except OpError as exc:
                    fail(e, str(exc), cause=exc)

            return f1
        g, h = subs

        def f2(env):
            a, b = g(env), h(env)
            try:
                return fn(a, b)
            except OpError as exc:
                fail(e, str(exc), cause=exc)

        return f2

    def visit_BinOp(self, e):
        op = e.op
        return self._op(e, lambda a, b: binop(op, a, b), self.visit(e.left), self.visit(e.right))

    def visit_Compare(self, e):
        op = e.op
        return self._op(e, lambda a, b: compare(op, a, b), self.visit(e.left), self.visit(e.right))

    def visit_BoolOp(self, e):
        left, right, fail = self.visit(e.left), self.visit(e.right), self.fail
        is_and = e.op == "and"

        def f(env):
            a = left(env)
            if isinstance(a, TokenConstraint):
                b = right(env)
                if not isinstance(b, TokenConstraint):
                    fail(e, f"'{e.op}' combines two token constraints; got a constraint and {show(b)}")
                return (a & b) if is_and else (a | b)
            if truth(a) != is_and:
                return a
            return right(env)

        return f

    def visit_IfExp(self, e):
        test, body, orelse = self.visit(e.test), self.visit(e.body), self.visit(e.orelse)
        return lambda env: body(env) if truth(test(env)) else orelse(env)

    def arguments(self, e: ast.Call, entry) -> list:
        """The closures of a call's arguments in order (keywords bound to their
        places; the checker reports what does not bind). A builtin function
        named as the argument of ``token_predicate`` is its predicate; a
        ``.lark`` file named in ``grammar`` is read beside the program
        (:mod:`ppl.dsl.resolve`)."""
        def arg(a):
            if entry.name in PREDICATE_TAKERS and isinstance(a, ast.Name) and a.id in self.registry \
                    and not self.registry[a.id].is_constant:
                fn = predicate(self.registry[a.id])
                return lambda env: fn
            path = lark_file(a.value, self.fail.filename) if entry.name in FILE_ARGUMENTS \
                and isinstance(a, ast.Const) else None
            if path is not None:  # a grammar file beside the program: read once, now
                text = read_lark(path)
                return lambda env: text
            return self.visit(a)

        try:
            return entry.bind([arg(a) for a in e.args], [(k.name, arg(k.value)) for k in e.keywords],
                              default=lambda v: (lambda env: v))
        except OpError as exc:
            message = str(exc)
            return [lambda env: self.fail(e, message)]

    def visit_UnaryOp(self, e):
        op = e.op
        return self._op(e, lambda a: unary(op, a), self.visit(e.operand))

    def visit_Index(self, e):
        return self._op(e, index, self.visit(e.value), self.visit(e.index))

    def visit_Slice(self, e):
        value, fail = self.visit(e.value), self.fail
        lo = self.visit(e.lower) if e.lower is not None else (lambda env: None)
        hi = self.visit(e.upper) if e.upper is not None else (lambda env: None)

        def f(env):
            v, a, b = value(env), lo(env), hi(env)
            try:
                return slice_(v, a, b)
            except OpError as exc:
                fail(e, str(exc), cause=exc)

        return f

    def visit_Attribute(self, e):
        value, name, fail = self.visit(e.value), e.attr, self.fail

        def f(env):
            v = value(env)
            try:
                return attribute(v, name)
            except OpError as exc:
                fail(e, str(exc), column=e.attr_column, end=e.attr_column + len(name), cause=exc)

        return f

    def visit_MethodCall(self, e):
        value, name, fail = self.visit(e.value), e.method, self.fail
        args = [self.visit(a) for a in e.args]

        def f(env):
            v = value(env)
            try:
                return method(v, name, tuple(g(env) for g in args))
            except (OpError, ModelError) as exc:
                fail(e, str(exc), column=e.attr_column, end=e.attr_column + len(name), cause=exc)

        return f

    def visit_Call(self, e):
        entry = self.registry.get(e.func.id)
        fail = self.fail
        if entry is None or entry.is_constant:  # the checker reports these
            name = e.func.id

            def missing(env):
                fail(e, f"unknown function {name!r}")

            return missing
        args = self.arguments(e, entry)
        needs_lm = entry.needs_lm

        def f(env):
            values = tuple(g(env) for g in args)
            for x in values:
                if isinstance(x, NextToken):
                    fail(e, "a next-token distribution cannot be passed to a function; sample it first")
            try:
                return entry.call(values, env.get(LM_KEY) if needs_lm else None)
            except (OpError, ModelError) as exc:
                fail(e, str(exc), cause=exc)

        return f


def guarded(f: Callable[[dict], Any], e: ast.Expr, fail: Failure) -> Callable[[dict], Any]:
    """``f``, whose every failure is a located error: what an operator
    reports is located where it happens; anything else (Python running out
    of stack or memory, a bug) is reported at the statement's expression."""

    def g(env):
        try:
            return f(env)
        except DSLError:
            raise
        except RecursionError as exc:
            fail(e, "the values here are nested too deeply to be worked on", cause=exc)
        except MemoryError as exc:
            fail(e, "there is not enough memory to build the value here (see the limit max_length)", cause=exc)
        except Exception as exc:
            fail(e, f"{type(exc).__name__} while working out this expression: {brief(str(exc))}", cause=exc)

    return g


class CodeGen(ast.Visitor):
    """Statements -> instructions, appended to ``code``; the program's names
    are ``scope`` + name in the environment, and ``bound`` collects them."""

    def __init__(self, registry: Registry, fail: Failure, scope: str = ""):
        self.expr = ExprCompiler(registry, fail, scope)
        self.scope = scope
        self.bound: set[str] = set()
        self.code: list[Instr] = []
        self.loops: list[tuple[ast.Stmt, int, list[Instr]]] = []  # (loop, continue pc, breaks)
        self.slots = 0
        self.group: ast.Stmt | None = None  # the outermost step: block (or call) being compiled

    def emit(self, op, a=None, b=None, c=None, node=None) -> Instr:
        ins = Instr(op, a, b, c, node, self.loops[-1][0] if self.loops else None, self.group)
        self.code.append(ins)
        return ins

    def block(self, body) -> None:
        for s in body:
            self.visit(s)

    def slot(self) -> str:
        self.slots += 1
        return self.var(f"%loop{self.slots}")

    def var(self, name: str) -> str:
        """The environment's key of the program's name ``name``."""
        key = self.scope + name
        self.bound.add(key)
        return key

    def closure(self, e: ast.Expr) -> Callable[[dict], Any]:
        return guarded(self.expr.visit(e), e, self.expr.fail)

    def visit_Assign(self, s: ast.Assign) -> None:
        self.emit(ASSIGN, self.closure(s.value), self.var(s.target.id), node=s)

    def visit_Sample(self, s: ast.Sample) -> None:
        spec = sample_spec(s, self.closure, self.expr.registry, self.expr.fail, self.scope)
        self.emit(SAMPLE, spec, self.var(s.target.id), node=s)

    def visit_Observe(self, s: ast.Observe) -> None:
        self.emit(OBSERVE, self.closure(s.dist), self.closure(s.value), node=s)

    def visit_Condition(self, s: ast.Condition) -> None:
        self.emit(CONDITION, self.closure(s.test), node=s)

    def visit_Factor(self, s: ast.Factor) -> None:
        self.emit(FACTOR, self.closure(s.value), node=s)

    def visit_Twist(self, s: ast.Twist) -> None:
        self.emit(TWIST, self.closure(s.value), node=s)

    def visit_Finish(self, s: ast.Finish) -> None:
        self.emit(FINISH, node=s)

    def visit_Return(self, s: ast.Return) -> None:
        self.emit(RETURN, self.closure(s.value), node=s)

    def visit_Pass(self, s: ast.Pass) -> None:
        pass

    def visit_Break(self, s: ast.Break) -> None:
        self.loops[-1][2].append(self.emit(JUMP, None, node=s))

    def visit_Continue(self, s: ast.Continue) -> None:
        self.emit(LOOP_BACK, self.loops[-1][1], node=s)

    def visit_Step(self, s: ast.Step) -> None:
        """The outermost block: ``STEP`` then its body; a nested one: its body."""
        if self.group is not None:
            self.block(s.body)
            return
        self.emit(STEP, node=s)
        self.group = s
        self.block(s.body)
        self.group = None

    def visit_If(self, s: ast.If) -> None:
        ends = []
        for test, body in s.branches:
            jump = self.emit(JUMP_IF_FALSE, self.closure(test), None, node=s)
            self.block(body)
            ends.append(self.emit(JUMP, None, node=s))
            jump.b = len(self.code)
        if s.orelse:
            self.block(s.orelse)
        for j in ends:
            j.a = len(self.code)

    def visit_For(self, s: ast.For) -> None:
        slot = self.slot()
        self.emit(FOR_INIT, self.closure(s.iter), slot, node=s)
        self.loop(s, FOR_NEXT, slot, self.var(s.target.id))

    def visit_Repeat(self, s: ast.Repeat) -> None:
        slot = self.slot()
        self.emit(REPEAT_INIT, self.closure(s.count), slot, node=s)
        self.loop(s, REPEAT_NEXT, slot, None)

    def visit_While(self, s: ast.While) -> None:
        top = len(self.code)
        breaks: list[Instr] = []
        self.loops.append((s, top, breaks))
        test = self.emit(JUMP_IF_FALSE, self.closure(s.test), None, node=s)
        self.block(s.body)
        self.emit(LOOP_BACK, top, node=s)
        self.loops.pop()
        test.b = len(self.code)
        for j in breaks:
            j.a = len(self.code)

    def loop(self, s, next_op: int, slot: str, target: str | None) -> None:
        """A for/repeat loop: its head ``next_op`` leaves it when done."""
        top = len(self.code)
        breaks: list[Instr] = []
        self.loops.append((s, top, breaks))
        head = self.emit(next_op, slot, target, None, node=s)
        self.block(s.body)
        self.emit(LOOP_BACK, top, node=s)
        self.loops.pop()
        head.c = len(self.code)
        for j in breaks:
            j.a = len(self.code)
