"""Calls of programs, compiled by inlining and run by three opcodes.

``x = call f(a, key=b)`` (see :mod:`ppl.dsl.calls` for the language side)
becomes, in the caller's code::

    STEP                     (when the call is not inside a step block already)
    CALL_START  frame        the particle's token count, kept to tell f's value
    ASSIGN      a -> %call1.p1, b -> %call1.key, defaults for the rest
    ... f's body, its names under the scope "%call1." ...
    CALL_RETURN frame        falling off the end of f (as its finish)
    CALL_END    frame        f's names leave the environment

where every ``return v`` of ``f`` is a ``CALL_RETURN`` that puts ``v`` in
``x`` and jumps to the ``CALL_END``, and ``finish`` (or the end of ``f``)
gives the value ``f`` would have as a program: the text of the context the
call last drew a token from, or else of the only context among ``f``'s
names. So the callee's primitives are the caller's, run in place: the same
sites, in the same order, as the program with ``f``'s body written there;
cloning never meets a call in flight (a call is one step block: no step
ends inside it), and nothing of ``f`` stays in the environment after it.
Each call site has its own copy of the body (the checker forbids
recursion and bounds the copies, :data:`~ppl.dsl.calls.MAX_INLINED`).
Arguments are checked against the declared parameter types when they are
bound (an int for a ``float`` parameter becomes a float, as in
:mod:`ppl.dsl.factory`).

:class:`InlineGen` is the code generator; :class:`CallOps` holds the
interpreter's methods for the three opcodes (a base of
:class:`~ppl.dsl.machine.SteerModel`).
"""

from __future__ import annotations

from typing import Any, Callable

from ..context import LMContext
from ..distributions import NextToken
from . import ast
from .builtins import Registry
from .calls import Programs, bind
from .checker import constant
from .codegen import ASSIGN, CALL_END, CALL_RETURN, CALL_START, STEP, CodeGen, Instr
from .errors import Failure
from .types import CALL_PARAM_TYPES, describe_type, fits, value_type
from .values import is_int, show


class Frame:
    """One call site: the callee, the caller's ``target`` key (None: the
    value is dropped), the key of the token count at the call's start, and
    the callee's keys in the environment (filled once its body is compiled)."""

    __slots__ = ("program", "target", "start", "names", "node")

    def __init__(self, program: ast.Program, target: str | None, start: str, node: ast.CallProgram):
        self.program, self.target, self.start, self.node = program, target, start, node
        self.names: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<call {self.program.name} line {self.node.line}>"


def generate(program: ast.Program, programs: Programs, registry: Registry, fail: Failure) -> list[Instr]:
    """The instructions of a checked program's body, its calls inlined."""
    gen = InlineGen(registry, fail, programs)
    gen.block(program.body)
    return gen.code


class InlineGen(CodeGen):
    """:class:`~ppl.dsl.codegen.CodeGen` with calls: ``frame`` is the call
    whose callee body is being compiled (None for the program that runs),
    ``calls`` the counter that gives each call site its scope."""

    def __init__(self, registry: Registry, fail: Failure, programs: Programs, *, scope: str = "",
                 frame: Frame | None = None, parent: "InlineGen | None" = None):
        super().__init__(registry, fail, scope)
        self.programs = programs
        self.frame = frame
        self.exits: list[Instr] = []  # this callee's CALL_RETURNs, to point at its CALL_END
        self.calls = parent.calls if parent is not None else [0]
        if parent is not None:
            self.code, self.group = parent.code, parent.group

    def visit_CallProgram(self, s: ast.CallProgram) -> None:
        callee = self.programs.get(s.program.id)
        bound, _, _ = bind(s, callee)  # the checker reported what does not bind
        self.calls[0] += 1
        scope = f"%call{self.calls[0]}."
        opened = self.group is None
        if opened:  # a call is one step block; inside one already, it changes nothing
            self.emit(STEP, node=s)
            self.group = s
        frame = Frame(callee, self.var(s.target.id) if s.target is not None else None, scope + "%start", s)
        self.emit(CALL_START, frame, node=s)
        sub = InlineGen(self.expr.registry, self.expr.fail, self.programs, scope=scope, frame=frame, parent=self)
        for param, arg in bound:
            value = self.closure(arg) if arg is not None else self.default(param)
            self.emit(ASSIGN, self.argument(value, param, callee, arg or s), sub.var(param.name), node=arg or s)
        sub.block(callee.body)
        sub.visit_Finish(None)  # the end of the callee's body
        for ins in sub.exits:
            ins.c = len(self.code)
        frame.names = tuple(sorted(sub.bound | {frame.start}))
        self.emit(CALL_END, frame, node=s)
        if opened:
            self.group = None

    def default(self, param: ast.Param) -> Callable[[dict], Any]:
        _, value = constant(param.default, self.expr.registry)
        return lambda env: value

    def argument(self, value: Callable[[dict], Any], param: ast.Param, callee: ast.Program, node: ast.Node):
        """``value`` checked against ``param``'s declared type when it is bound."""
        declared = CALL_PARAM_TYPES.get(param.type) if param.type is not None else None
        if declared is None and param.default is not None:
            declared = CALL_PARAM_TYPES.get(value_type(constant(param.default, self.expr.registry)[1]))
        fail = self.expr.fail

        def checked(env):
            v = value(env)
            if isinstance(v, NextToken):
                fail(node, "a next-token distribution cannot be passed to a program; sample it first")
            if declared == "float" and is_int(v):
                return float(v)
            if declared is not None and not fits(v, declared):
                fail(node, f"argument {param.name!r} of program {callee.name!r} must be "
                     f"{describe_type(declared)}, got {show(v)}")
            return v

        return checked

    def visit_Return(self, s: ast.Return) -> None:
        if self.frame is None:
            super().visit_Return(s)
            return
        self.exits.append(self.emit(CALL_RETURN, self.closure(s.value), self.frame, node=s))

    def visit_Finish(self, s: ast.Finish | None) -> None:
        if self.frame is None:
            super().visit_Finish(s)
            return
        self.exits.append(self.emit(CALL_RETURN, None, self.frame, node=s or self.frame.node))


class CallOps:
    """The interpreter's methods for calls (see the module docstring); a
    base class of :class:`~ppl.dsl.machine.SteerModel`, which counts the
    token primitives a particle took in ``_tokens``."""

    _tokens: int
    _env: dict
    _last_ctx: LMContext | None

    def _op_call_start(self, ins: Instr, pc: int) -> int:
        self._env[ins.a.start] = self._tokens
        return pc + 1

    def _op_call_return(self, ins: Instr, pc: int) -> int:
        """``return v`` in a called program, its ``finish``, or its end."""
        frame: Frame = ins.b
        if ins.a is not None:
            value = ins.a(self._env)
            if isinstance(value, LMContext):
                value = value.text
            elif isinstance(value, NextToken):
                self._fail(ins.node, "a program cannot return a next-token distribution; sample it first")
        else:
            value = self._call_value(ins, frame)
        if frame.target is not None:
            self._env[frame.target] = value
        return ins.c

    def _call_value(self, ins: Instr, frame: Frame):
        """The value of a call that ended without ``return``: the text of the
        context it last drew a token from, else of its only context."""
        env = self._env
        ctx = self._last_ctx if self._tokens > env[frame.start] else None
        if ctx is None:
            found = {id(v): v for v in (env.get(n) for n in frame.names) if isinstance(v, LMContext)}
            ctx = next(iter(found.values())) if len(found) == 1 else None
        if ctx is None and frame.target is not None:
            self._fail(ins.node, f"program {frame.program.name!r} ended without 'return VALUE', and it has no "
                       "context whose text would be its value; end it with return VALUE")
        return ctx.text if ctx is not None else None

    def _op_call_end(self, ins: Instr, pc: int) -> int:
        env = self._env
        for name in ins.a.names:
            env.pop(name, None)
        return pc + 1

    CALL_OPS = {CALL_START: _op_call_start, CALL_RETURN: _op_call_return, CALL_END: _op_call_end}
