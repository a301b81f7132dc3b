"""The interpreter: a particle running a compiled ``.steer`` program.

A particle (:class:`SteerModel`, a :class:`ppl.Model`) is only

- ``_pc``: the index of its next instruction (:mod:`ppl.dsl.codegen`),
- ``_env``: its variables, a dict of immutable values (loop counters
  included, under names a program cannot write),

plus the weights the :class:`~ppl.Model` base keeps. Cloning copies that
small record; language-model contexts in it are copied as handles that share
their immutable token sequence (``copy.copy(ctx)``). Nothing is replayed and no
Python generator or coroutine outlives a step. Each opcode has one method,
``_op_<name>(ins, pc)``, which returns the next instruction's index, or None
when the step ends there.

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
from typing import Any

from ..constraints import SequenceConstraint, TokenConstraint, as_token_constraint
from ..context import LMContext
from ..distributions import Distribution, NextToken, TextContinuation, Token
from ..errors import ModelError
from ..model import Model
from .codegen import (
    ASSIGN,
    CONDITION,
    FACTOR,
    FINISH,
    FOR_INIT,
    FOR_NEXT,
    JUMP,
    JUMP_IF_FALSE,
    LOOP_BACK,
    OBSERVE,
    REPEAT_INIT,
    REPEAT_NEXT,
    RETURN,
    SAMPLE,
    TWIST,
    CompiledProgram,
    Instr,
)
from .errors import DSLRuntimeError
from .operators import truth
from .stdlib import to_text
from .values import EOS, freeze, is_number, show

DEFAULT_MAX_STEPS = 4096
DEFAULT_MAX_ITERATIONS = 100_000


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
        self._turns = 0  # loop turns in this step
        self._last_ctx: LMContext | None = None
        self.program_name = program.name
        self.value: Any = None
        self.max_steps = max_steps
        self.max_iterations = max_iterations

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

    def result_key(self):
        return self.value

    def __str__(self) -> str:
        if self.done:
            return to_text(self.value) if self.value is not None else ""
        return f"<{self.program_name} running>"

    def __repr__(self) -> str:
        state = f"value={self.value!r}" if self.done else f"at line {self._line()}"
        return f"<{self.program_name} particle, {state}, log_weight={self.log_weight:.4g}>"

    def _line(self) -> int:
        code = self._program.code
        return code[self._pc].node.line if self._pc < len(code) else 0

    def _fail(self, node, message: str, cause=None):
        self._program.fail(node, message, cause=cause)

    def _finish_with_text(self) -> None:
        ctx = self._last_ctx
        if ctx is None:
            found = self.contexts()
            ctx = found[0] if len(found) == 1 else None
        self.value = ctx.text if ctx is not None else None
        self.finish()

    def _stop(self, pc: int) -> None:
        """End the step before instruction ``pc``; the next step starts there."""
        self._pc = pc
        return None

    async def step(self) -> None:
        code = self._program.code
        if self._steps > self.max_steps:
            self._step_limit(code)
        self._token_in_step = False
        self._turns = 0
        pc = self._pc
        n = len(code)
        run = self._RUN
        while pc is not None:
            if pc >= n:
                self._pc = pc
                self._finish_with_text()
                return
            ins = code[pc]
            if ins.op in _AWAITED:
                pc = await run[ins.op](self, ins, pc)
            else:
                pc = run[ins.op](self, ins, pc)

    def _step_limit(self, code: list[Instr]) -> None:
        pc = self._pc
        ins = code[pc] if pc < len(code) else None
        where = ins.loop if ins is not None and ins.loop is not None else (ins.node if ins else None)
        what = f"the loop at line {where.line} keeps going" if ins is not None and ins.loop is not None else "it keeps going"
        self._fail(where, f"the program ran {self.max_steps} steps without finishing ({what}); "
                   "if that is intended, raise the limit (max_steps, ppl run --max-steps)")

    def _op_assign(self, ins: Instr, pc: int) -> int:
        value = ins.a(self._env)
        if isinstance(value, NextToken):
            self._fail(ins.node, "a next-token distribution cannot be stored in a variable: "
                       "sample or observe it where it is made (x ~ ctx.next_token())")
        self._env[ins.b] = value
        return pc + 1

    def _op_jump_if_false(self, ins: Instr, pc: int) -> int:
        return pc + 1 if truth(ins.a(self._env)) else ins.b

    def _op_jump(self, ins: Instr, pc: int) -> int:
        return ins.a

    def _op_loop_back(self, ins: Instr, pc: int) -> int:
        self._turns += 1
        if self._turns > self.max_iterations:
            loop = ins.loop
            self._fail(loop, f"the loop at line {loop.line} turned {self.max_iterations} times without "
                       "sampling or observing a language-model token; is its exit condition ever met? "
                       "(limit: max_iterations)")
        return ins.a

    async def _op_sample(self, ins: Instr, pc: int) -> int | None:
        env = self._env
        try:
            dist = ins.a(env)
            if ins.c is not None:
                dist = self._where(dist, ins.c(env), ins.node)
        except DSLRuntimeError:
            if self._token_in_step:  # report it in the step that runs this line
                return self._stop(pc)
            raise
        if not isinstance(dist, Distribution):
            self._fail(ins.node, "the right of '~' must be a distribution, such as ctx.next_token() "
                       f"or bernoulli(0.5); got {show(dist)}")
        if isinstance(dist, NextToken):
            if self._token_in_step:
                return self._stop(pc)  # the step ends before its second token
            self._token_in_step = True
            self._last_ctx = dist.context
        self._pc = pc
        try:
            value = await self.sample(dist)
        except ModelError as exc:
            self._fail(ins.node, str(exc), cause=exc)
        env[ins.b] = freeze(value)
        return pc + 1

    async def _op_observe(self, ins: Instr, pc: int) -> int | None:
        env = self._env
        try:
            dist, value = ins.a(env), ins.b(env)
        except DSLRuntimeError:
            if self._token_in_step:  # report it in the step that runs this line
                return self._stop(pc)
            raise
        if await self._observe(ins, dist, value, pc) is False:
            return self._stop(pc)
        return pc + 1

    def _op_for_init(self, ins: Instr, pc: int) -> int:
        seq = ins.a(self._env)
        if isinstance(seq, Token):
            seq = seq.text
        if not isinstance(seq, (str, tuple)):
            self._fail(ins.node.iter, f"a for loop needs a list or a string; got {show(seq)}")
        self._env[ins.b] = (seq, 0)
        return pc + 1

    def _op_for_next(self, ins: Instr, pc: int) -> int:
        env = self._env
        seq, i = env[ins.a]
        if i < len(seq):
            env[ins.b] = seq[i]
            env[ins.a] = (seq, i + 1)
            return pc + 1
        del env[ins.a]
        return ins.c

    def _op_repeat_init(self, ins: Instr, pc: int) -> int:
        count = ins.a(self._env)
        if isinstance(count, bool) or not isinstance(count, int):
            self._fail(ins.node.count, f"repeat needs an int count; got {show(count)}")
        if count < 0:
            self._fail(ins.node.count, f"repeat needs a count >= 0; got {count}")
        self._env[ins.b] = count
        return pc + 1

    def _op_repeat_next(self, ins: Instr, pc: int) -> int:
        env = self._env
        left = env[ins.a]
        if left > 0:
            env[ins.a] = left - 1
            return pc + 1
        del env[ins.a]
        return ins.c

    def _op_condition(self, ins: Instr, pc: int) -> int:
        ok = truth(ins.a(self._env))
        self._pc = pc
        self.condition(ok)
        return pc + 1

    def _op_factor(self, ins: Instr, pc: int) -> int:
        """``factor`` and ``twist``."""
        op = ins.op
        value = ins.a(self._env)
        if not is_number(value):
            word = "factor" if op == FACTOR else "twist"
            self._fail(ins.node, f"{word} needs a number (a log weight); got {show(value)}")
        self._pc = pc
        try:
            (self.factor if op == FACTOR else self.twist)(float(value))
        except ModelError as exc:
            self._fail(ins.node, str(exc), cause=exc)
        return pc + 1

    def _op_return(self, ins: Instr, pc: int) -> None:
        value = ins.a(self._env)
        if isinstance(value, LMContext):
            value = value.text
        self._pc = pc
        self.value = value
        self.finish()
        return None

    def _op_finish(self, ins: Instr, pc: int) -> None:
        self._pc = pc
        self._finish_with_text()
        return None

    _RUN = {
        ASSIGN: _op_assign, SAMPLE: _op_sample, OBSERVE: _op_observe, CONDITION: _op_condition,
        FACTOR: _op_factor, TWIST: _op_factor, JUMP: _op_jump, JUMP_IF_FALSE: _op_jump_if_false,
        FOR_INIT: _op_for_init, FOR_NEXT: _op_for_next, REPEAT_INIT: _op_repeat_init,
        REPEAT_NEXT: _op_repeat_next, LOOP_BACK: _op_loop_back, FINISH: _op_finish, RETURN: _op_return,
    }

    def _where(self, dist, constraint, node):
        if isinstance(constraint, SequenceConstraint):
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
            return await self._observe_context(node, dist, value, pc)
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

    async def _observe_context(self, node, ctx: LMContext, text, pc: int):
        """``observe ctx = "text"``: the context continues with ``text``."""
        if self._token_in_step:
            return False
        if not isinstance(text, str):
            self._fail(node.value, "observing a context needs the text it continues with, a str; "
                       f"got {show(text)}")
        self._token_in_step = True
        self._last_ctx = ctx
        self._pc = pc
        try:
            await self.observe(TextContinuation(ctx), text)
        except (ModelError, ValueError) as exc:
            self._fail(node, f"observe {ctx!r} = {text!r}: {exc}", cause=exc)
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


_AWAITED = frozenset({SAMPLE, OBSERVE})
