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
``step:`` block counts as one token primitive: the step ends before it when
the step already had one, and never inside it, so every primitive in the
block (and in blocks nested in it) belongs to one step, as in ``async with
ppl.step():``. A step that reaches ``finish``, ``return`` or the end of the
program finishes the particle. A call of another program is a block too,
its body inlined (its three opcodes: :class:`~ppl.dsl.inline.CallOps`).

**Limits** (:class:`~ppl.dsl.limits.Limits`). A particle may take at most
``max_steps`` steps (default 4096); between two language-model tokens the
loops may turn at most ``max_iterations`` times (default 100000), and one
step (``step:`` block) may take at most ``max_steps`` tokens; one step
may do at most ``max_operations`` units of work, and a run (counted from
its first step; clones share the clock) may last ``time_limit`` seconds.
Each step runs under a :class:`~ppl.dsl.limits.Budget`, which the operators
and builtins charge and which bounds what they build. Going past a limit
raises :class:`~ppl.dsl.errors.DSLRuntimeError` at the line running. Every
runtime error of a program (an index out of range, a division by zero, a
wrong argument type, Python running out of stack) is a ``DSLRuntimeError``
naming ``FILE:LINE:COL``.
"""

from __future__ import annotations

from typing import Any

from ..context import LMContext
from ..distributions import Distribution, NextToken, TextContinuation, Token
from ..errors import BackendError, ModelError
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
    STEP,
    TWIST,
    CompiledProgram,
    Instr,
)
from .env_copy import contexts_in as _contexts_in
from .env_copy import copy_value as _copy_value
from .errors import DSLError, DSLRuntimeError
from .inline import CallOps
from .limits import (
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MAX_STEPS,
    Budget,
    LimitError,
    Limits,
    OpError,
    RunClock,
    budget,
    using,
)
from .operators import truth
from .sampling import TOKEN_DISTS
from .stdlib import to_text
from .token_values import token_id as token_id_of
from .values import brief, freeze, is_number, short, show

__all__ = ["DEFAULT_MAX_ITERATIONS", "DEFAULT_MAX_STEPS", "SteerModel"]


class SteerModel(CallOps, Model):
    """A particle running a compiled ``.steer`` program (see the module
    docstring). ``value`` is what it returned (or, after ``finish``, the text
    of the context it last drew a token from)."""

    def __init__(self, program: CompiledProgram, env: dict, *, limits: Limits | None = None):
        super().__init__()
        self._program = program
        self._env = env
        self._pc = 0
        self._token_in_step = False
        self._turns = 0  # loop turns in this step
        self._block_tokens = 0  # tokens taken in step: blocks in this step
        self._last_ctx: LMContext | None = None
        self._tokens = 0  # token primitives taken (a call's value: did it draw one?)
        self.program_name = program.name
        self.value: Any = None
        self.limits = limits if limits is not None else Limits()
        self._clock: RunClock | None = None  # the run's wall clock, shared by clones

    @property
    def max_steps(self) -> int:
        return self.limits.max_steps

    @property
    def max_iterations(self) -> int:
        return self.limits.max_iterations

    def clone(self) -> "SteerModel":
        clock = self._clock
        if clock is None or (clock.started and self._steps == 0):  # a root that starts a new run
            self._clock = RunClock(self.limits.time_limit)
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
        state = f"value={short(self.value)}" if self.done else f"at line {self._line()}"
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
        if self._clock is None:
            self._clock = RunClock(self.limits.time_limit)
        self._token_in_step = False
        self._turns = 0
        self._block_tokens = 0
        with using(Budget(self.limits, deadline=self._clock.start())) as budget:
            self._check(budget.check_clock, code[self._pc] if self._pc < len(code) else None)
            await self._run(code, self._pc)

    async def _run(self, code: list[Instr], pc: int | None) -> None:
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
                pc = self._check(run[ins.op], ins, self, ins, pc)

    def _check(self, fn, ins: Instr | None, *args):
        """``fn(*args)``, its failures located at ``ins``: a limit reached, or
        anything else a program statement ran into (never a bare Python error)."""
        try:
            return fn(*args)
        except DSLError:
            raise
        except LimitError as exc:
            self._fail(ins.node if ins is not None else None, str(exc), cause=exc)
        except (RecursionError, MemoryError, ArithmeticError, ValueError, TypeError, LookupError) as exc:
            self._fail(ins.node if ins is not None else None,
                       f"{type(exc).__name__} while running this statement: {brief(str(exc))}", cause=exc)

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
        budget().charge(1)
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
            dist, proposal = ins.a(env)
        except DSLRuntimeError:
            if self._ends_before(ins):  # report it in the step that runs this line
                return self._stop(pc)
            raise
        if not isinstance(dist, Distribution):
            self._fail(ins.node, "the right of '~' must be a distribution, such as ctx.next_token() "
                       f"or bernoulli(0.5); got {show(dist)}")
        if isinstance(dist, TOKEN_DISTS):
            if self._ends_before(ins):
                return self._stop(pc)  # the step ends before its second token
            self._took_token(ins, dist.context)
        self._pc = pc
        try:
            value = await self.sample(dist, proposal)
        except (ModelError, OpError) as exc:  # OpError: a predicate builtin failed
            self._fail(ins.node, brief(str(exc)), cause=exc)
        except _VALUE_ERRORS as exc:
            if isinstance(dist, TOKEN_DISTS) or isinstance(exc, BackendError):
                raise  # the language model failed, not the program
            self._fail(ins.node, f"{type(exc).__name__} drawing from {show(dist)}: {brief(str(exc))}", cause=exc)
        env[ins.b] = freeze(value)
        return pc + 1

    async def _op_observe(self, ins: Instr, pc: int) -> int | None:
        env = self._env
        try:
            dist, value = ins.a(env), ins.b(env)
        except DSLRuntimeError:
            if self._ends_before(ins):  # report it in the step that runs this line
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
        except OverflowError:
            self._fail(ins.node, f"{'factor' if op == FACTOR else 'twist'} of {show(value)}: "
                       "the number is too large for a log weight")
        except ModelError as exc:
            self._fail(ins.node, brief(str(exc)), cause=exc)
        return pc + 1

    def _op_step(self, ins: Instr, pc: int) -> int | None:
        """Enter an outermost ``step:`` block: the step ends here if it had a
        token primitive; else the block is its token primitive."""
        if self._token_in_step:
            return self._stop(pc)
        self._token_in_step = True
        return pc + 1

    def _ends_before(self, ins: Instr) -> bool:
        """Whether the step ends before this token primitive: it had one
        already, and ``ins`` is not in a ``step:`` block."""
        return self._token_in_step and ins.group is None

    def _took_token(self, ins: Instr, ctx: LMContext) -> None:
        """Record a token primitive on ``ctx``; in a block, the loops'
        turns count from it and the block's tokens are bounded by max_steps."""
        self._token_in_step = True
        self._last_ctx = ctx
        self._tokens += 1
        if ins.group is not None:
            self._turns = 0
            self._block_tokens += 1
            if self._block_tokens > self.max_steps:
                self._fail(ins.group, f"the step block at line {ins.group.line} took more than "
                           f"{self.max_steps} language-model tokens in one step; if that is intended, "
                           "raise the limit (max_steps, ppl run --max-steps)")

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
        STEP: _op_step, **CallOps.CALL_OPS,
    }

    async def _observe(self, ins: Instr, dist, value, pc: int):
        """Run an observe; False if the step must end before it."""
        node = ins.node
        if isinstance(dist, LMContext):
            return await self._observe_context(ins, dist, value, pc)
        if isinstance(dist, NextToken):
            if self._ends_before(ins):
                return False
            token_id = token_id_of(dist, value, node, self._fail)
            self._took_token(ins, dist.context)
            self._pc = pc
            try:
                await self.observe(dist, token_id)
            except ModelError as exc:
                self._fail(node, brief(str(exc)), cause=exc)
            return True
        if not isinstance(dist, Distribution):
            self._fail(node.dist, "observe needs a distribution (e.g. ctx.next_token(), bernoulli(0.7)) "
                       f"or a context (observe ctx = \"text\"); got {show(dist)}")
        self._pc = pc
        try:
            await self.observe(dist, value)
        except ModelError as exc:
            self._fail(node, brief(str(exc)), cause=exc)
        except _VALUE_ERRORS as exc:  # a simple distribution, no language model involved
            if isinstance(exc, BackendError):
                raise
            self._fail(node, f"{type(exc).__name__} observing {short(value)}: {brief(str(exc))}", cause=exc)
        return True

    async def _observe_context(self, ins: Instr, ctx: LMContext, text, pc: int):
        """``observe ctx = "text"``: the context continues with ``text``."""
        node = ins.node
        if self._ends_before(ins):
            return False
        if not isinstance(text, str):
            self._fail(node.value, "observing a context needs the text it continues with, a str; "
                       f"got {show(text)}")
        self._took_token(ins, ctx)
        self._pc = pc
        try:
            await self.observe(TextContinuation(ctx), text)
        except (ModelError, ValueError) as exc:
            self._fail(node, f"observe {ctx!r} = {short(text)}: {brief(str(exc))}", cause=exc)
        return True


_AWAITED = frozenset({SAMPLE, OBSERVE})
_VALUE_ERRORS = (ArithmeticError, ValueError, TypeError, LookupError)
