"""Budgets of a ``.steer`` program: how much it may build, do and take.

A program written by anyone (another language model included) must not be
able to exhaust the machine, so everything it does is bounded
(:class:`Limits`, passed as ``compile(..., limits=Limits(...))`` or as
keyword arguments of the same names):

- ``max_length``: no string or list longer than this many characters or
  elements is ever built; the size of the result is worked out *before* it is
  built (``"a" * n``, ``xs + ys``, ``str(xs)``, ``range(n)`` ...);
- ``max_int_bits``: no integer wider than this is built (``**`` and ``*``
  are checked before, ``+`` and ``-`` after: they grow a bit at a time);
- ``max_operations``: the work of one step, in units: one per loop turn,
  per builtin call and per list element an operation compares or scans one
  by one, and one per 16 characters or elements copied or searched in bulk
  (which is that much faster): about a second of work at most;
- ``max_iterations``: loop turns between two language-model tokens;
- ``max_steps``: steps of one particle;
- lists are never nested more than :data:`MAX_DEPTH` deep (a fixed bound:
  comparing and printing values recurses);
- ``time_limit``: seconds of wall-clock time of one run, counted from the
  first step of any of its particles (a :class:`RunClock` shared by every
  clone; ``None``: no limit).

Going past one is a located :class:`~ppl.dsl.errors.DSLRuntimeError` that
names the limit and how to raise it. The checker's constant folding uses the
same size bounds (so ``ppl check`` reports what the run would) and a budget
of its own, :data:`CHECK_OPERATIONS` for the whole check, past which it stops
folding instead of doing the work.

The running budget is found through a ``contextvars.ContextVar``, as the
running particle is: each particle's step runs in its own task.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from dataclasses import dataclass, fields, replace

from ..errors import ArgumentError

DEFAULT_MAX_STEPS = 4096
DEFAULT_MAX_ITERATIONS = 100_000
MAX_DEPTH = 100  # lists nested deeper than this are never built
CHECK_OPERATIONS = 2_000_000  # the checker's constant folding, for one whole check
_CLOCK_EVERY = 8192  # units of work between two looks at the clock


@dataclass(frozen=True)
class Limits:
    """The bounds of one program's runs (see the module docstring)."""

    max_steps: int = DEFAULT_MAX_STEPS
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    max_operations: int = 1_000_000
    max_length: int = 1_000_000
    max_int_bits: int = 100_000
    time_limit: float | None = None

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "time_limit":
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                          or not value > 0):
                    raise ArgumentError(f"time_limit must be a number of seconds > 0 or None, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"{f.name} must be an int >= 1, got {value!r}")

    def updated(self, **changes) -> "Limits":
        """These limits with some changed (``None`` values are ignored,
        except that ``time_limit=None`` cannot be told from "unchanged")."""
        known = {f.name for f in fields(self)}
        for k in changes:
            if k not in known:
                raise ArgumentError(f"unknown limit {k!r}; the limits are: {', '.join(sorted(known))}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


class OpError(Exception):
    """An operator or builtin failed; ``str()`` is the user's message (the
    caller attaches the place). Defined here, where the budgets are, and
    used by :mod:`ppl.dsl.operators` and the builtins."""


def _how(name: str) -> str:
    flag = {"max_steps": "; ppl run --max-steps", "time_limit": "; ppl run --time-limit"}.get(name, "")
    return f"raise it with limits=Limits({name}=...){flag}"


class LimitError(OpError):
    """A budget would be exceeded; ``limit`` names it."""

    def __init__(self, limit: str, message: str):
        super().__init__(f"{message} (limit: {limit}; {_how(limit)})")
        self.limit = limit


class Budget:
    """The work done under one set of :class:`Limits`: one step of a
    particle, or one check. ``deadline`` is a ``time.monotonic()`` value."""

    __slots__ = ("limits", "used", "cap", "deadline", "_next_clock", "cap_name")

    def __init__(self, limits: Limits, *, deadline: float | None = None, cap: int | None = None,
                 cap_name: str = "max_operations"):
        self.limits = limits
        self.used = 0
        self.cap = limits.max_operations if cap is None else cap
        self.cap_name = cap_name
        self.deadline = deadline
        self._next_clock = _CLOCK_EVERY

    def charge(self, units: int) -> None:
        """Count ``units`` of work; raise :class:`LimitError` past the budget."""
        used = self.used = self.used + units
        if used > self.cap:
            raise LimitError(self.cap_name, f"this step did more than {self.cap} units of work "
                             "(loop turns, calls, elements of strings and lists handled)")
        if used >= self._next_clock:
            self._next_clock = used + _CLOCK_EVERY
            self.check_clock()

    def check_clock(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise LimitError("time_limit", f"the run took longer than its time limit of "
                             f"{self.limits.time_limit:g} s")

    def length(self, n: int, what: str) -> None:
        """Check a string or list of ``n`` elements may be built, and charge
        its copy (in bulk)."""
        if n > self.limits.max_length:
            unit = "characters" if what == "string" else "elements"
            raise LimitError("max_length", f"the {what} would have {n} {unit}, more than {self.limits.max_length}")
        self.charge(1 + (n >> 4))

    def bulk(self, n: int) -> None:
        """Charge a bulk scan or copy of ``n`` characters or elements."""
        self.charge(1 + (n >> 4))

    def int_bits(self, bits: int, what: str = "the result") -> None:
        if bits > self.limits.max_int_bits:
            raise LimitError("max_int_bits", f"{what} would be an integer of about {bits} bits, "
                             f"more than {self.limits.max_int_bits}")
        self.charge(bits >> 6)


class CheckBudgetSpent(LimitError):
    """The checker's own folding budget is spent: it stops folding (quietly)."""


class _Unmetered(Budget):
    """Outside any step or check: the default size bounds, work not counted
    (nothing shared is changed)."""

    __slots__ = ()

    def charge(self, units: int) -> None:
        pass


_DEFAULT = _Unmetered(Limits())
_current: contextvars.ContextVar[Budget] = contextvars.ContextVar("ppl_dsl_budget", default=_DEFAULT)


def budget() -> Budget:
    """The budget of the program step or check this code runs in (outside
    one: the default size limits, no bound on work)."""
    return _current.get()


@contextlib.contextmanager
def using(b: Budget):
    """Run the body under budget ``b``."""
    token = _current.set(b)
    try:
        yield b
    finally:
        _current.reset(token)


class _CheckBudget(Budget):
    __slots__ = ()

    def charge(self, units: int) -> None:
        self.used += units
        if self.used > self.cap:
            raise CheckBudgetSpent("max_operations", "constant folding stopped")


def check_budget(limits: Limits | None = None) -> Budget:
    """A budget for one check: the size bounds of ``limits``, and
    :data:`CHECK_OPERATIONS` units of folding for the whole check."""
    return _CheckBudget(limits or Limits(), cap=CHECK_OPERATIONS)


class RunClock:
    """The wall clock of one run, shared by all its particles: started by
    the first step of any of them (``deadline`` is ``None`` until then, and
    without a time limit)."""

    __slots__ = ("time_limit", "deadline", "started")

    def __init__(self, time_limit: float | None):
        self.time_limit = time_limit
        self.deadline: float | None = None
        self.started = False

    def start(self) -> float | None:
        if not self.started:
            self.started = True
            if self.time_limit is not None:
                self.deadline = time.monotonic() + self.time_limit
        return self.deadline
