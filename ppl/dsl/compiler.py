"""Compiling a checked ``.steer`` program into a Feynman-Kac model.

The program body becomes a flat list of instructions (:class:`Instr`), shared
by every particle; each expression becomes a Python closure ``f(env)``. A
particle (:class:`SteerModel`, a :class:`ppl.Model`) is then only

- ``_pc``: the index of its next instruction,
- ``_env``: its variables, a dict of immutable values (loop counters
  included, under names a program cannot write),

plus the weights the :class:`~ppl.Model` base keeps. Cloning copies that
small record; language-model contexts in it are copied as handles that share
their immutable token sequence (``copy.copy(ctx)``). Nothing is replayed and no
Python generator or coroutine outlives a step.

**Steps.** As with ``@ppl.program``, each step holds exactly one sample or
observe of a language-model token (``x ~ ctx.next_token() ...``,
``observe ctx.next_token() = v``, or ``observe ctx = "text"``) and everything
the program does after it, up to its next token primitive: the interpreter
stops *before* that primitive, with ``_pc`` on it, and the next step starts
there. (The first step also holds everything before the first token.) A
step that reaches ``finish``, ``return`` or the end of the program finishes
the particle.

**Limits.** A particle may take at most ``max_steps`` steps (default 4096);
between two language-model tokens the loops may turn at most
``max_iterations`` times (default 100000). Going past either raises
:class:`~ppl.dsl.errors.DSLRuntimeError` at the loop's line. Every runtime
error of a program (an index out of range, a division by zero, a wrong
argument type) is a ``DSLRuntimeError`` naming ``FILE:LINE:COL``.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..constraints import TokenConstraint, as_token_constraint
from ..context import LMContext
from ..distributions import Distribution, NextToken, Token
from ..errors import ModelError
from ..model import Model
from . import ast
from .builtins import BUILTINS, Registry, fits
from .checker import PARAM_TYPES, check_program
from .errors import Diagnostic, DSLArgumentError, DSLError, DSLRuntimeError
from .parser import parse
from .values import (
    EOS,
    OpError,
    attribute,
    binop,
    compare,
    freeze,
    index,
    is_number,
    method,
    show,
    slice_,
    truth,
    unary,
)

DEFAULT_MAX_STEPS = 4096
DEFAULT_MAX_ITERATIONS = 100_000
LM_KEY = "%lm"  # the language model, in every environment (not a legal name)

# opcodes
(ASSIGN, SAMPLE, OBSERVE, CONDITION, FACTOR, TWIST, JUMP, JUMP_IF_FALSE, FOR_INIT, FOR_NEXT,
 REPEAT_INIT, REPEAT_NEXT, LOOP_BACK, FINISH, RETURN) = range(15)

OPNAMES = ("ASSIGN SAMPLE OBSERVE CONDITION FACTOR TWIST JUMP JUMP_IF_FALSE FOR_INIT FOR_NEXT "
           "REPEAT_INIT REPEAT_NEXT LOOP_BACK FINISH RETURN").split()


class Instr:
    """One instruction: ``op`` and up to three operands; ``node`` is the
    statement it comes from (for error places), ``loop`` the innermost loop
    around it (for the step limit)."""

    __slots__ = ("op", "a", "b", "c", "node", "loop")

    def __init__(self, op: int, a=None, b=None, c=None, node=None, loop=None):
        self.op, self.a, self.b, self.c, self.node, self.loop = op, a, b, c, node, loop

    def __repr__(self) -> str:
        line = getattr(self.node, "line", "?")
        return f"<{OPNAMES[self.op]} {self.a!r} {self.b!r} line {line}>"


@dataclass(frozen=True)
class Param:
    """A declared parameter: ``name``, ``type`` (``str int float bool list``,
    or ``None`` if the program gave neither type nor default), ``default``
    (meaningful when ``has_default``)."""

    name: str
    type: str | None
    default: Any
    has_default: bool
    line: int = 0
    column: int = 0


class _Failure:
    """Builds located runtime errors."""

    def __init__(self, filename: str, lines: list[str]):
        self.filename, self.lines = filename, lines

    def diagnostic(self, node, message: str, column: int | None = None, end: int | None = None) -> Diagnostic:
        line = getattr(node, "line", 0)
        col = column if column is not None else getattr(node, "column", 0)
        if column is None and end is None and getattr(node, "end_line", None) == line:
            end = node.end_column
        src = self.lines[line - 1] if 1 <= line <= len(self.lines) else ""
        return Diagnostic(self.filename, line, col, message, src, end)

    def __call__(self, node, message: str, column: int | None = None, cause=None, end: int | None = None):
        raise DSLRuntimeError(self.diagnostic(node, message, column, end)) from cause


# -- expressions -> closures ------------------------------------------------------------


class _ExprCompiler:
    def __init__(self, registry: Registry, fail: _Failure):
        self.registry = registry
        self.fail = fail

    def __call__(self, e: ast.Expr) -> Callable[[dict], Any]:
        return getattr(self, "c_" + type(e).__name__)(e)

    def c_Const(self, e):
        value = e.value
        return lambda env: value

    def c_ListExpr(self, e):
        fs = [self(item) for item in e.items]
        fail = self.fail

        def f(env):
            items = tuple(g(env) for g in fs)
            for x in items:
                if isinstance(x, NextToken):
                    fail(e, "a next-token distribution cannot be put in a list")
            return items

        return f

    def c_Name(self, e):
        name = e.id
        entry = self.registry.get(name)
        if entry is not None and entry.is_constant:
            value = entry.value
            return lambda env: value
        fail = self.fail

        def f(env):
            try:
                return env[name]
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

    def c_BinOp(self, e):
        op = e.op
        return self._op(e, lambda a, b: binop(op, a, b), self(e.left), self(e.right))

    def c_Compare(self, e):
        op = e.op
        return self._op(e, lambda a, b: compare(op, a, b), self(e.left), self(e.right))

    def c_BoolOp(self, e):
        left, right, fail = self(e.left), self(e.right), self.fail
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

    def c_UnaryOp(self, e):
        op = e.op
        return self._op(e, lambda a: unary(op, a), self(e.operand))

    def c_Index(self, e):
        return self._op(e, index, self(e.value), self(e.index))

    def c_Slice(self, e):
        value, fail = self(e.value), self.fail
        lo = self(e.lower) if e.lower is not None else (lambda env: None)
        hi = self(e.upper) if e.upper is not None else (lambda env: None)

        def f(env):
            v, a, b = value(env), lo(env), hi(env)
            try:
                return slice_(v, a, b)
            except OpError as exc:
                fail(e, str(exc), cause=exc)

        return f

    def c_Attribute(self, e):
        value, name, fail = self(e.value), e.attr, self.fail

        def f(env):
            v = value(env)
            try:
                return attribute(v, name)
            except OpError as exc:
                fail(e, str(exc), column=e.attr_column, end=e.attr_column + len(name), cause=exc)

        return f

    def c_MethodCall(self, e):
        value, name, fail = self(e.value), e.method, self.fail
        args = [self(a) for a in e.args]

        def f(env):
            v = value(env)
            try:
                return method(v, name, tuple(g(env) for g in args))
            except (OpError, ModelError) as exc:
                fail(e, str(exc), column=e.attr_column, end=e.attr_column + len(name), cause=exc)

        return f

    def c_Call(self, e):
        entry = self.registry.get(e.func.id)
        fail = self.fail
        if entry is None or entry.is_constant:  # the checker reports these
            name = e.func.id

            def missing(env):
                fail(e, f"unknown function {name!r}")

            return missing
        args = [self(a) for a in e.args]
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


# -- statements -> instructions -----------------------------------------------------------


class _CodeGen:
    def __init__(self, registry: Registry, fail: _Failure):
        self.expr = _ExprCompiler(registry, fail)
        self.code: list[Instr] = []
        self.loops: list[tuple[ast.Stmt, int, list[Instr]]] = []  # (loop, continue pc, breaks)
        self.slots = 0

    def emit(self, op, a=None, b=None, c=None, node=None) -> Instr:
        ins = Instr(op, a, b, c, node, self.loops[-1][0] if self.loops else None)
        self.code.append(ins)
        return ins

    def block(self, body) -> None:
        for s in body:
            self.stmt(s)

    def slot(self) -> str:
        self.slots += 1
        return f"%loop{self.slots}"

    def stmt(self, s) -> None:
        x = self.expr
        if isinstance(s, ast.Assign):
            self.emit(ASSIGN, x(s.value), s.target.id, node=s)
        elif isinstance(s, ast.Sample):
            self.emit(SAMPLE, x(s.dist), s.target.id, x(s.where) if s.where is not None else None, node=s)
        elif isinstance(s, ast.Observe):
            self.emit(OBSERVE, x(s.dist), x(s.value), node=s)
        elif isinstance(s, ast.Condition):
            self.emit(CONDITION, x(s.test), node=s)
        elif isinstance(s, ast.Factor):
            self.emit(FACTOR, x(s.value), node=s)
        elif isinstance(s, ast.Twist):
            self.emit(TWIST, x(s.value), node=s)
        elif isinstance(s, ast.Finish):
            self.emit(FINISH, node=s)
        elif isinstance(s, ast.Return):
            self.emit(RETURN, x(s.value), node=s)
        elif isinstance(s, ast.Pass):
            pass
        elif isinstance(s, ast.Break):
            self.loops[-1][2].append(self.emit(JUMP, None, node=s))
        elif isinstance(s, ast.Continue):
            self.emit(LOOP_BACK, self.loops[-1][1], node=s)
        elif isinstance(s, ast.If):
            ends = []
            for test, body in s.branches:
                jump = self.emit(JUMP_IF_FALSE, x(test), None, node=s)
                self.block(body)
                ends.append(self.emit(JUMP, None, node=s))
                jump.b = len(self.code)
            if s.orelse:
                self.block(s.orelse)
            for j in ends:
                j.a = len(self.code)
        elif isinstance(s, ast.For):
            slot = self.slot()
            self.emit(FOR_INIT, x(s.iter), slot, node=s)
            self.loop(s, FOR_NEXT, slot, s.target.id)
        elif isinstance(s, ast.Repeat):
            slot = self.slot()
            self.emit(REPEAT_INIT, x(s.count), slot, node=s)
            self.loop(s, REPEAT_NEXT, slot, None)
        elif isinstance(s, ast.While):
            top = len(self.code)
            breaks: list[Instr] = []
            self.loops.append((s, top, breaks))
            test = self.emit(JUMP_IF_FALSE, x(s.test), None, node=s)
            self.block(s.body)
            self.emit(LOOP_BACK, top, node=s)
            self.loops.pop()
            test.b = len(self.code)
            for j in breaks:
                j.a = len(self.code)
        else:  # pragma: no cover - the grammar has no other statement
            raise TypeError(f"unknown statement {s!r}")

    def loop(self, s, next_op: int, slot: str, target: str | None) -> None:
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


# -- the compiled program and its particles --------------------------------------------------


@dataclass
class CompiledProgram:
    """A checked program's code, shared by all its particles."""

    name: str
    filename: str
    source: str
    ast: ast.Program
    params: tuple[Param, ...]
    code: list[Instr]
    fail: _Failure
    doc: str = ""


def _copy_value(v, memo: dict):
    if isinstance(v, LMContext):
        new = memo.get(id(v))
        if new is None:
            new = memo[id(v)] = copy.copy(v)
        return new
    if isinstance(v, tuple) and v and any(isinstance(x, (LMContext, tuple)) for x in v):
        return tuple(_copy_value(x, memo) for x in v)
    return v


def _contexts_in(v, out: list) -> None:
    if isinstance(v, LMContext):
        out.append(v)
    elif isinstance(v, tuple):
        for x in v:
            _contexts_in(x, out)


class SteerModel(Model):
    """A particle running a compiled ``.steer`` program (see the module
    docstring). ``value`` is what it returned (or, after ``finish``, the text
    of the context it last drew a token from)."""

    def __init__(self, program: CompiledProgram, env: dict, *, max_steps: int = DEFAULT_MAX_STEPS,
                 max_iterations: int = DEFAULT_MAX_ITERATIONS):
        super().__init__()
        self._program = program
        self._env = env
        self._pc = 0
        self._token_in_step = False
        self._last_ctx: LMContext | None = None
        self.program_name = program.name
        self.value: Any = None
        self.max_steps = max_steps
        self.max_iterations = max_iterations

    # -- cloning: copy the small explicit state ------------------------------------------
    def clone(self) -> "SteerModel":
        new = object.__new__(type(self))
        state = self.__dict__.copy()
        memo: dict = {}
        state["_env"] = {k: _copy_value(v, memo) for k, v in self._env.items()}
        if self._last_ctx is not None:
            state["_last_ctx"] = _copy_value(self._last_ctx, memo)
        new.__dict__.update(state)
        return new

    def contexts(self) -> list[LMContext]:
        out: list = []
        for v in self._env.values():
            _contexts_in(v, out)
        return list({id(c): c for c in out}.values())

    # -- results --------------------------------------------------------------------------
    def result_key(self):
        return self.value

    def __str__(self) -> str:
        if self.done:
            from .builtins import to_text

            return to_text(self.value) if self.value is not None else ""
        return f"<{self.program_name} running>"

    def __repr__(self) -> str:
        state = f"value={self.value!r}" if self.done else f"at line {self._line()}"
        return f"<{self.program_name} particle, {state}, log_weight={self.log_weight:.4g}>"

    def _line(self) -> int:
        code = self._program.code
        return code[self._pc].node.line if self._pc < len(code) else 0

    # -- the interpreter -----------------------------------------------------------------------
    def _fail(self, node, message: str, cause=None):
        self._program.fail(node, message, cause=cause)

    def _finish_with_text(self) -> None:
        ctx = self._last_ctx
        if ctx is None:
            found = self.contexts()
            ctx = found[0] if len(found) == 1 else None
        self.value = ctx.text if ctx is not None else None
        self.finish()

    async def step(self) -> None:
        code = self._program.code
        env = self._env
        pc = self._pc
        if self._steps > self.max_steps:
            ins = code[pc] if pc < len(code) else None
            where = ins.loop if ins is not None and ins.loop is not None else (ins.node if ins else None)
            what = f"the loop at line {where.line} keeps going" if ins is not None and ins.loop is not None else "it keeps going"
            self._fail(where, f"the program ran {self.max_steps} steps without finishing ({what}); "
                       "if that is intended, raise the limit (max_steps, ppl run --max-steps)")
        self._token_in_step = False
        iterations = 0
        n = len(code)
        while True:
            if pc >= n:
                self._pc = pc
                self._finish_with_text()
                return
            ins = code[pc]
            op = ins.op
            if op == ASSIGN:
                value = ins.a(env)
                if isinstance(value, NextToken):
                    self._fail(ins.node, "a next-token distribution cannot be stored in a variable: "
                               "sample or observe it where it is made (x ~ ctx.next_token())")
                env[ins.b] = value
                pc += 1
            elif op == JUMP_IF_FALSE:
                pc = pc + 1 if truth(ins.a(env)) else ins.b
            elif op == JUMP:
                pc = ins.a
            elif op == LOOP_BACK:
                iterations += 1
                if iterations > self.max_iterations:
                    loop = ins.loop
                    self._fail(loop, f"the loop at line {loop.line} turned {self.max_iterations} times without "
                               "sampling or observing a language-model token; is its exit condition ever met? "
                               "(limit: max_iterations)")
                pc = ins.a
            elif op == SAMPLE:
                try:
                    dist = ins.a(env)
                    if ins.c is not None:
                        dist = self._where(dist, ins.c(env), ins.node)
                except DSLRuntimeError:
                    if self._token_in_step:  # report it in the step that runs this line
                        self._pc = pc
                        return
                    raise
                if not isinstance(dist, Distribution):
                    self._fail(ins.node, "the right of '~' must be a distribution, such as ctx.next_token() "
                               f"or bernoulli(0.5); got {show(dist)}")
                if isinstance(dist, NextToken):
                    if self._token_in_step:
                        self._pc = pc
                        return  # the step ends before its second token
                    self._token_in_step = True
                    self._last_ctx = dist.context
                self._pc = pc
                try:
                    value = await self.sample(dist)
                except ModelError as exc:
                    self._fail(ins.node, str(exc), cause=exc)
                env[ins.b] = freeze(value)
                pc += 1
            elif op == OBSERVE:
                try:
                    dist, value = ins.a(env), ins.b(env)
                except DSLRuntimeError:
                    if self._token_in_step:  # report it in the step that runs this line
                        self._pc = pc
                        return
                    raise
                if await self._observe(ins, dist, value, pc) is False:
                    self._pc = pc
                    return
                pc += 1
            elif op == FOR_INIT:
                seq = ins.a(env)
                if isinstance(seq, Token):
                    seq = seq.text
                if not isinstance(seq, (str, tuple)):
                    self._fail(ins.node.iter, f"a for loop needs a list or a string; got {show(seq)}")
                env[ins.b] = (seq, 0)
                pc += 1
            elif op == FOR_NEXT:
                seq, i = env[ins.a]
                if i < len(seq):
                    env[ins.b] = seq[i]
                    env[ins.a] = (seq, i + 1)
                    pc += 1
                else:
                    del env[ins.a]
                    pc = ins.c
            elif op == REPEAT_INIT:
                count = ins.a(env)
                if isinstance(count, bool) or not isinstance(count, int):
                    self._fail(ins.node.count, f"repeat needs an int count; got {show(count)}")
                if count < 0:
                    self._fail(ins.node.count, f"repeat needs a count >= 0; got {count}")
                env[ins.b] = count
                pc += 1
            elif op == REPEAT_NEXT:
                left = env[ins.a]
                if left > 0:
                    env[ins.a] = left - 1
                    pc += 1
                else:
                    del env[ins.a]
                    pc = ins.c
            elif op == CONDITION:
                ok = truth(ins.a(env))
                self._pc = pc
                self.condition(ok)
                pc += 1
            elif op == FACTOR or op == TWIST:
                value = ins.a(env)
                if not is_number(value):
                    word = "factor" if op == FACTOR else "twist"
                    self._fail(ins.node, f"{word} needs a number (a log weight); got {show(value)}")
                self._pc = pc
                try:
                    (self.factor if op == FACTOR else self.twist)(float(value))
                except ModelError as exc:
                    self._fail(ins.node, str(exc), cause=exc)
                pc += 1
            elif op == RETURN:
                value = ins.a(env)
                if isinstance(value, LMContext):
                    value = value.text
                self._pc = pc
                self.value = value
                self.finish()
                return
            elif op == FINISH:
                self._pc = pc
                self._finish_with_text()
                return
            else:  # pragma: no cover
                raise AssertionError(f"bad opcode {op}")

    def _where(self, dist, constraint, node):
        if type(constraint).__name__ == "SequenceConstraint":
            self._fail(node.where, f"{constraint!r} constrains a whole text, not one token: attach it "
                       "to the context, ctx = lm(prompt, constraint)")
        if not isinstance(dist, NextToken):
            self._fail(node.dist, "'where' applies only to a next-token distribution (ctx.next_token()); "
                       f"got {show(dist)}")
        try:
            return dist.where(constraint if isinstance(constraint, TokenConstraint) else as_token_constraint(constraint))
        except (ValueError, ModelError) as exc:
            self._fail(node.where, f"'where' needs a token constraint such as lacks(\"e\"); {exc}", cause=exc)

    async def _observe(self, ins: Instr, dist, value, pc: int):
        """Run an observe; False if the step must end before it."""
        node = ins.node
        if isinstance(dist, LMContext):
            if self._token_in_step:
                return False
            if not isinstance(value, str):
                self._fail(node.value, "observing a context needs the text it continues with, a str; "
                           f"got {show(value)}")
            self._token_in_step = True
            self._last_ctx = dist
            self._pc = pc
            try:
                await self._observe_text(dist, value)
            except (ModelError, ValueError) as exc:
                self._fail(node, f"observe {dist!r} = {value!r}: {exc}", cause=exc)
            return True
        if isinstance(dist, NextToken):
            if self._token_in_step:
                return False
            token_id = self._token_id(dist, value, node)
            self._token_in_step = True
            self._last_ctx = dist.context
            self._pc = pc
            try:
                await self.observe(dist, token_id)
            except ModelError as exc:
                self._fail(node, str(exc), cause=exc)
            return True
        if not isinstance(dist, Distribution):
            self._fail(node.dist, "observe needs a distribution (e.g. ctx.next_token(), bernoulli(0.7)) "
                       f"or a context (observe ctx = \"text\"); got {show(dist)}")
        self._pc = pc
        try:
            await self.observe(dist, value)
        except ModelError as exc:
            self._fail(node, str(exc), cause=exc)
        return True

    def _token_id(self, dist: NextToken, value, node) -> int:
        lm = dist.context.lm
        if isinstance(value, Token):
            return value.id
        if value is EOS:
            return lm.eos_token_id
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                ids = [int(t) for t in lm.encode(value)]
            except Exception as exc:
                self._fail(node.value, f"cannot tokenise {value!r}: {exc}", cause=exc)
            if len(ids) != 1:
                self._fail(node.value, f"{value!r} is {len(ids)} tokens, not one; to observe a whole string, "
                           "observe the context: observe ctx = \"...\"")
            return ids[0]
        self._fail(node.value, f"a next token is observed as a token, its text, its id or EOS; got {show(value)}")


# -- factories --------------------------------------------------------------------------------

_PY_TYPE = {"str": str, "int": int, "float": float, "bool": bool, "list": list}


class ProgramFactory:
    """A compiled ``.steer`` program, called like a ``@ppl.program``
    function: ``factory(lm, **params)`` returns a particle (a
    :class:`SteerModel`) that every inference routine accepts.

    ``name``, ``params`` (:class:`Param` s, in order), ``filename``,
    ``source``; ``convert_arg(name, text)`` turns a command-line string into
    the value of a declared parameter."""

    __ppl_program__ = True

    def __init__(self, program: CompiledProgram, *, max_steps: int = DEFAULT_MAX_STEPS,
                 max_iterations: int = DEFAULT_MAX_ITERATIONS):
        self._program = program
        self.name = self.__name__ = self.__qualname__ = program.name
        self.params = program.params
        self.filename = program.filename
        self.source = program.source
        self.__doc__ = program.doc
        self.max_steps = max_steps
        self.max_iterations = max_iterations

    @property
    def __signature__(self) -> inspect.Signature:
        P = inspect.Parameter
        params = [P("lm", P.POSITIONAL_OR_KEYWORD)]
        for p in self.params:
            params.append(P(p.name, P.POSITIONAL_OR_KEYWORD,
                            default=p.default if p.has_default else P.empty,
                            annotation=_PY_TYPE.get(p.type, P.empty)))
        return inspect.Signature(params)

    def __repr__(self) -> str:
        params = ", ".join(
            p.name + (f": {p.type}" if p.type else "") + (f" = {p.default!r}" if p.has_default else "")
            for p in self.params
        )
        return f"<steer program {self.name}({params}) from {self.filename}>"

    def with_limits(self, *, max_steps: int | None = None, max_iterations: int | None = None) -> "ProgramFactory":
        """The same program with other run limits."""
        return ProgramFactory(
            self._program,
            max_steps=self.max_steps if max_steps is None else _positive(max_steps, "max_steps"),
            max_iterations=self.max_iterations if max_iterations is None else _positive(max_iterations, "max_iterations"),
        )

    def __call__(self, lm=None, *args, **kwargs) -> SteerModel:
        params = self.params
        if len(args) > len(params):
            raise DSLArgumentError(
                f"{self.name} takes {len(params)} parameter{'s' * (len(params) != 1)} after lm, got {len(args)}"
            )
        values: dict[str, Any] = {}
        for p, v in zip(params, args):
            values[p.name] = v
        by_name = {p.name: p for p in params}
        for k, v in kwargs.items():
            if k not in by_name:
                raise DSLArgumentError(
                    f"{self.name} has no parameter {k!r}; its parameters are: "
                    + (", ".join(by_name) or "(none)")
                )
            if k in values:
                raise DSLArgumentError(f"{self.name}: parameter {k!r} given twice")
            values[k] = v
        env: dict[str, Any] = {LM_KEY: lm}
        for p in params:
            if p.name in values:
                env[p.name] = self._coerce(p, values[p.name])
            elif p.has_default:
                env[p.name] = p.default
            else:
                raise DSLArgumentError(
                    f"{self.name} needs a value for parameter {p.name!r}"
                    + (f" ({p.type})" if p.type else "")
                )
        return SteerModel(self._program, env, max_steps=self.max_steps, max_iterations=self.max_iterations)

    def _coerce(self, p: Param, value: Any) -> Any:
        where = f"{self.filename}:{p.line}:{p.column}"
        if p.type == "list" and isinstance(value, str):
            return self.convert_arg(p.name, value)
        value = freeze(value)
        if p.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if p.type is not None and not fits(value, p.type):
            raise DSLArgumentError(
                f"{self.name}: parameter {p.name!r} must be {p.type}, got {show(value)} "
                f"(declared at {where})"
            )
        if not _plain(value):
            raise DSLArgumentError(
                f"{self.name}: parameter {p.name!r} got {show(value)}; parameters take str, int, "
                "float, bool and lists of them"
            )
        return value

    def convert_arg(self, name: str, text: str) -> Any:
        """The value of parameter ``name`` written as ``text`` on a command
        line: ints, floats, bools (true/false/yes/no/1/0), lists written as
        steer list literals (``[1, "a"]``), strings as they are."""
        by_name = {p.name: p for p in self.params}
        if name not in by_name:
            raise DSLArgumentError(
                f"{self.name} has no parameter {name!r}; its parameters are: " + (", ".join(by_name) or "(none)")
            )
        p = by_name[name]
        kind = p.type
        try:
            if kind == "int":
                return int(text)
            if kind == "float":
                return float(text)
            if kind == "bool":
                lowered = text.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError("expected true or false")
            if kind == "list":
                return _parse_literal_list(text)
        except ValueError as exc:
            raise DSLArgumentError(f"{self.name}: parameter {name}={text!r} is not a valid {kind} ({exc})") from None
        return text


def _plain(value) -> bool:
    if isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    return False


def _parse_literal_list(text: str) -> tuple:
    """A list literal such as ``[1, "a", [2.5]]`` (constants only)."""
    source = f"program p(x: list = {text.strip()}):\n    pass\n"
    program, diags, _ = parse(source)
    if diags or program is None or not program.params or program.params[0].default is None:
        raise ValueError("write a list literal such as [1, 2] or [\"a\", \"b\"]")
    from .checker import Checker

    checker = Checker(program, BUILTINS, "<arg>", source.split("\n"))
    t, value = checker.expr(program.params[0].default)
    if not isinstance(value, tuple):
        raise ValueError("write a list literal such as [1, 2] or [\"a\", \"b\"]")
    return value


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


# -- the public entry points -------------------------------------------------------------------


def _header_doc(source: str) -> str:
    lines = []
    for line in source.split("\n"):
        s = line.strip()
        if s.startswith("#"):
            lines.append(s[1:].strip())
        elif s:
            break
    return "\n".join(lines).strip()


def _analyse(source: str, filename: str, registry: Registry):
    lines = source.split("\n")
    try:
        program, diagnostics, broken = parse(source, filename)
        if program is not None:
            diagnostics = diagnostics + check_program(program, registry, filename, lines, broken)
    except RecursionError:
        program = None
        diagnostics = [Diagnostic(filename, 1, 1, "the program is nested too deeply to be read")]
    diagnostics = sorted(set(diagnostics), key=lambda d: (d.line, d.column, d.message))
    return program, diagnostics


def check_source(source: str, filename: str = "<string>", *, builtins: Registry | None = None) -> list[Diagnostic]:
    """Every syntax and semantic problem of a ``.steer`` program, in source
    order (an empty list: the program is fine)."""
    if not isinstance(source, str):
        raise TypeError(f"check_source() needs the program's text as a str, got {type(source).__name__}")
    return _analyse(source, filename, builtins if builtins is not None else BUILTINS)[1]


def _read(path) -> tuple[str, str]:
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), str(path)
    except UnicodeDecodeError as exc:
        raise DSLError(Diagnostic(str(path), 1, 1, f"the file is not valid UTF-8 text ({exc.reason} at byte {exc.start})")) from None


def check_file(path, *, builtins: Registry | None = None) -> list[Diagnostic]:
    """:func:`check_source` of a file (``FileNotFoundError`` if it is missing)."""
    try:
        source, name = _read(path)
    except DSLError as exc:
        return exc.diagnostics
    return check_source(source, name, builtins=builtins)


def compile(source: str, filename: str = "<string>", *, builtins: Registry | None = None,
            max_steps: int = DEFAULT_MAX_STEPS, max_iterations: int = DEFAULT_MAX_ITERATIONS) -> ProgramFactory:
    """Check and compile ``.steer`` source text into a program factory;
    raises :class:`DSLError` listing every problem if there are any."""
    if not isinstance(source, str):
        raise TypeError(f"compile() needs the program's text as a str, got {type(source).__name__}")
    registry = builtins if builtins is not None else BUILTINS
    program, diagnostics = _analyse(source, filename, registry)
    if diagnostics:
        n = len(diagnostics)
        raise DSLError(diagnostics, summary=f"{n} error{'s' * (n != 1)} in {filename}")
    lines = source.split("\n")
    fail = _Failure(filename, lines)
    gen = _CodeGen(registry, fail)
    gen.block(program.body)
    params = tuple(_param(p, registry, filename, lines) for p in program.params)
    compiled = CompiledProgram(program.name, filename, source, program, params, gen.code, fail,
                               _header_doc(source))
    return ProgramFactory(compiled, max_steps=_positive(max_steps, "max_steps"),
                          max_iterations=_positive(max_iterations, "max_iterations"))


def _param(p: ast.Param, registry: Registry, filename: str, lines: list[str]) -> Param:
    from .checker import Checker, value_type

    default, has_default = None, p.default is not None
    if has_default:
        checker = Checker(ast.Program("p", (), ()), registry, filename, lines)
        _, default = checker.expr(p.default)
    kind = p.type if p.type is not None else (PARAM_TYPES.get(value_type(default)) if has_default else None)
    if kind == "float" and isinstance(default, int) and not isinstance(default, bool):
        default = float(default)
    return Param(p.name, kind, default, has_default, p.line, p.column)


def load(path, *, builtins: Registry | None = None, max_steps: int = DEFAULT_MAX_STEPS,
         max_iterations: int = DEFAULT_MAX_ITERATIONS) -> ProgramFactory:
    """Check and compile a ``.steer`` file (see :func:`compile`)."""
    source, name = _read(path)
    return compile(source, name, builtins=builtins, max_steps=max_steps, max_iterations=max_iterations)
