"""Semantic checks of a parsed ``.steer`` program, before anything runs.

Reported, all in one pass, each at its place:

- undefined names (with a "did you mean" when one is close; Python's own
  builtins such as ``open`` or ``eval`` are named as such), names starting
  with ``__``, assignment to a builtin or a parameter named like one;
- calls: unknown functions, variables called as functions, functions used
  as values, wrong number of arguments, argument types that are known and
  wrong (``lacks(3)``), and errors of pure builtins on constant arguments
  (``bernoulli(1.5)``);
- attributes: anything but ``ctx.next_token()``, ``ctx.text``,
  ``ctx.tokens``, ``tok.text``, ``tok.id``, ``tok.is_eos``;
- operators on operands of known, incompatible types (``"a" - 1``), and
  errors of constant expressions (``1 / 0``);
- statements: ``x ~ 3`` (not a distribution), ``where`` on something other
  than a next-token distribution, ``factor``/``twist`` of a non-number,
  ``repeat`` of a non-int, ``for`` over an int, ``break``/``continue``
  outside a loop, statements after ``finish``/``return``/``break`` that can
  never run, a next-token distribution stored in a variable (a ``step:``
  block has no errors of its own: ``finish``, ``return``, ``break`` and
  ``continue`` may leave it);
- conditional expressions whose branches differ in type; keyword
  arguments that are unknown, repeated or missing (``Builtin.bind``);
  ``token_predicate``/``where_checked`` given anything but a builtin
  ``str -> bool`` (or, for ``where_checked NAME: TEST``, a ``NAME`` that is
  not new and a ``TEST`` that is not a truth value); proposals that are not distributions, or not next-token
  ones for a next-token target, or beside ``where_checked``;
  ``grammar("x.lark")`` naming no file (:mod:`ppl.dsl.resolve`);
- the header: parameter types (``str int float bool list``, and ``context``
  ``token`` in a program another calls), defaults that are constants of the
  declared type, duplicate parameters;
- calls of other programs (``x = call f(args)``, :mod:`ppl.dsl.calls`):
  unknown programs (a builtin or a variable named instead, with a "did you
  mean"), arguments that do not bind to the parameters or whose known type
  is wrong, recursion, a program called as a builtin (``f(x)``), and
  programs defined twice.

Types (:mod:`ppl.dsl.types`) are inferred where they are certain (literals,
parameters, builtins' declared results, variables whose every assignment has
the same type); everything else is ``any`` and is checked when the program
runs. Visiting an expression gives its (static type, constant value or
``_NOCONST``); visiting a statement reports its problems.
"""

from __future__ import annotations

import difflib
from typing import Any

from . import ast
from .builtins import PREDICATE_TAKERS, Builtin, Registry
from .calls import Programs, bind, recursive_calls, statements
from .errors import Diagnostic
from .limits import CheckBudgetSpent
from .resolve import FILE_ARGUMENTS, is_lark_name, missing_message
from .operators import ATTRIBUTES, OpError, binop, compare, index, slice_, truth, unary
from .types import (
    CALL_PARAM_TYPES,
    NUM,
    binop_type,
    describe_type,
    fits,
    join,
    static_fits,
    value_type,
)
from .values import brief, short

PYTHON_BUILTINS = frozenset(
    "open eval exec compile print input getattr setattr delattr hasattr globals locals vars dir "
    "type object help breakpoint isinstance issubclass iter next map filter zip enumerate sorted "
    "reversed dict set tuple frozenset any all chr ord hex oct bin repr format id hash super "
    "property staticmethod classmethod memoryview bytearray bytes slice divmod pow callable exit "
    "quit None list bool os sys import exec".split()
)

_NOCONST = object()
HINT_WORK = 200_000  # name comparisons for "did you mean" hints, in one check

_ENDS = {"finish": "finish ends the program", "return": "return ends the program",
         "break": "break leaves the loop", "continue": "continue goes back to the loop"}


class Checker(ast.Visitor):
    """Walks a program once per type-inference round, then once reporting."""

    def __init__(self, program: ast.Program, registry: Registry, filename: str,
                 source_lines: list[str], suppressed: set[str] = frozenset(),
                 programs: Programs | None = None, recursive: dict[int, str] | None = None):
        self.program = program
        self.programs = programs if programs is not None else Programs((program,))
        self.recursive = recursive or {}  # id(call) -> why it is recursive
        self.registry = registry
        self.filename = filename
        self.lines = source_lines
        self.suppressed = set(suppressed)
        self.diagnostics: list[Diagnostic] = []
        self.report = False
        self.params: dict[str, str] = {}
        self.vars: dict[str, str] = {}
        self.loops = 0  # loops around the statement being checked
        self.folds: dict[int, tuple[str, Any, str | None]] = {}  # id(node) -> folded (type, value, error)
        self._binders: list[ast.Stmt] | None = None
        self.var_reads = 0  # variables' types read while inferring them
        self.hint_work = HINT_WORK  # comparisons left for "did you mean" hints

    def error(self, node_or_pos, message: str, column: int | None = None, end: int | None = None) -> None:
        if not self.report:
            return
        if isinstance(node_or_pos, ast.Node):
            line = node_or_pos.line
            col = column if column is not None else node_or_pos.column
            if end is None and node_or_pos.end_line == line and column is None:
                end = node_or_pos.end_column
        else:
            line, col = node_or_pos
        src = self.lines[line - 1] if 1 <= line <= len(self.lines) else ""
        self.diagnostics.append(Diagnostic(self.filename, line, col, message, src, end))

    def run(self) -> list[Diagnostic]:
        self.check_params()
        self.infer_variable_types()
        self.report = True
        self.check_block(self.program.body)
        return self.diagnostics

    def infer_variable_types(self) -> None:
        """Each variable's type, joined over its assignments (quietly, to a fixpoint)."""
        assigned = self.assigned_names()
        self.vars = {name: "any" for name in assigned if name not in self.params}
        for _ in range(3):
            self.var_reads = 0
            types = self.assignment_types()
            new = {}
            for name in self.vars:
                ts = types.get(name, [])
                t = ts[0] if ts else "any"
                for other in ts[1:]:
                    t = join(t, other)
                new[name] = t
            settled = new == self.vars or self.var_reads == 0  # no type read a variable's: final
            self.vars = new
            if settled:
                break

    def check_params(self) -> None:
        self.report = True
        prog = self.program
        if prog.name.startswith("__"):
            self.error((prog.line, prog.name_column), "names starting with '__' are not allowed")
        for p in prog.params:
            if p.name in self.params:
                self.error(p, f"duplicate parameter {p.name!r}", end=p.column + len(p.name))
                continue
            self.check_new_name(p.name, p, p.column, "parameter")
            self.params[p.name] = self.param_type(p) or "any"
        self.report = False

    def param_type(self, p: ast.Param) -> str | None:
        declared = None
        if p.type is not None:
            declared = CALL_PARAM_TYPES.get(p.type)
            if declared is None:
                close = difflib.get_close_matches(p.type, list(CALL_PARAM_TYPES), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.error((p.line, p.type_column),
                           f"unknown parameter type {p.type!r}: the types are str, int, float, bool and list{hint}",
                           end=p.type_column + len(p.type))
        if p.default is not None:
            t, value = self.visit(p.default)
            if value is _NOCONST:
                self.error(p.default, "a parameter's default must be a constant (a literal, or a list of literals)")
            elif declared is not None and not fits(value, declared):
                self.error(p.default, f"the default of {p.name!r} must be {declared}, got {value_type(value)} {short(value)}")
            if declared is None and p.type is None and value is not _NOCONST:
                declared = CALL_PARAM_TYPES.get(value_type(value))
        if p.type is None and p.default is None:
            self.error(p, f"parameter {p.name!r} needs a type: write {p.name}: str (or int, float, bool, list)",
                       end=p.column + len(p.name))
        return declared

    def check_new_name(self, name: str, node: ast.Node, column: int, what: str) -> None:
        end = column + len(name)
        if name.startswith("__"):
            self.error((node.line, column), "names starting with '__' are not allowed", end=end)
        elif name in self.registry:
            entry = self.registry[name]
            kind = "constant" if entry.is_constant else "function"
            self.error((node.line, column),
                       f"cannot use the builtin {kind} {name!r} as a {what} name; choose another name",
                       end=end)

    def binders(self) -> list[ast.Stmt]:
        """The statements that give variables values, in source order (found once)."""
        if self._binders is None:
            self._binders = [n for n in statements(self.program.body)
                             if isinstance(n, (ast.Assign, ast.Sample, ast.For, ast.CallProgram))
                             and n.target is not None]
        return self._binders

    def assigned_names(self) -> set[str]:
        return {node.target.id for node in self.binders()}

    def assignment_types(self) -> dict[str, list[str]]:
        types: dict[str, list[str]] = {}
        for node in self.binders():
            if isinstance(node, ast.Assign):
                t, _ = self.visit(node.value)
            elif isinstance(node, ast.Sample):
                t = self.sample_type(node)
            elif isinstance(node, ast.For):
                it, _ = self.visit(node.iter)
                t = "str" if it == "str" else "any"
            else:  # a call's value: whatever the program returns
                t = "any"
            types.setdefault(node.target.id, []).append(t)
        return types

    def sample_type(self, node: ast.Sample) -> str:
        t, _ = self.visit(node.dist)
        if t == "nextdist":
            return "token"
        if isinstance(node.dist, ast.Call):
            return {"bernoulli": "bool", "geometric": "int", "uniform_int": "int"}.get(node.dist.func.id, "any")
        return "any"

    def check_block(self, body: tuple) -> None:
        for i, stmt in enumerate(body):
            self.visit(stmt)
            if isinstance(stmt, (ast.Finish, ast.Return, ast.Break, ast.Continue)) and i + 1 < len(body):
                nxt = body[i + 1]
                word = type(stmt).__name__.lower()
                self.error((nxt.line, nxt.column),
                           f"unreachable statement: the {word} on line {stmt.line} comes first ({_ENDS[word]})")
                for rest in body[i + 1:]:  # still check them, for their own errors
                    self.visit(rest)
                return

    def loop_body(self, body: tuple) -> None:
        self.loops += 1
        self.check_block(body)
        self.loops -= 1

    def target(self, name: ast.Name) -> None:
        self.check_new_name(name.id, name, name.column, "variable")

    def visit_Assign(self, s: ast.Assign) -> None:
        self.target(s.target)
        t, _ = self.visit(s.value)
        if t == "nextdist":
            self.error(s.value, "a next-token distribution cannot be stored in a variable: "
                       "sample or observe it where it is made (x ~ ctx.next_token())")

    def visit_Sample(self, s: ast.Sample) -> None:
        self.target(s.target)
        t, _ = self.visit(s.dist)
        if not static_fits(t, "dist"):
            self.error(s.dist, f"the right of '~' must be a distribution, such as ctx.next_token() or "
                       f"bernoulli(0.5); got {describe_type(t)}")
        if s.where is not None:
            self.where(t, s.dist, s.where, "'where'")
        if s.checked is not None:
            self.where_checked(t, s)
        if s.proposal is not None:
            self.proposal(t, s)

    def where(self, t: str, dist: ast.Expr, where: ast.Expr, what: str) -> None:
        if t not in ("nextdist", "any"):
            self.error(dist, f"{what} applies only to a next-token distribution (ctx.next_token()); "
                       f"this is {describe_type(t)}")
        ct, _ = self.visit(where)
        if not static_fits(ct, "constraint"):
            self.error(where, f"'where' needs a token constraint such as lacks(\"e\"); got {describe_type(ct)}")

    def where_checked(self, t: str, s: ast.Sample) -> None:
        if t not in ("nextdist", "any"):
            self.error(s.dist, "'where_checked' applies only to a next-token distribution (ctx.next_token()); "
                       f"this is {describe_type(t)}")
        if isinstance(s.checked, ast.Predicate):
            self.predicate_test(s.checked)
            return
        entry = self.registry.get(s.checked.id) if isinstance(s.checked, ast.Name) else None
        if entry is None or entry.is_constant or s.checked.id in self.params or s.checked.id in self.vars:
            self.visit(s.checked)
            if self.unknown_name(s.checked):
                return  # reported as undefined
            self.error(s.checked, "where_checked takes the name of a builtin from str to bool (one registered "
                       "with @ppl.builtin), which is given the whole generated text with the candidate token")
            return
        self.check_predicate(s.checked, entry, "where_checked")

    def predicate_test(self, p: ast.Predicate) -> None:
        """``where_checked NAME: TEST``: ``NAME`` (a str, the text) is known in
        ``TEST`` alone, shadows nothing, and ``TEST`` is a truth value."""
        name = p.param.id
        self.check_new_name(name, p.param, p.param.column, "predicate's")
        if name in self.params or name in self.vars:
            what = "parameter" if name in self.params else "variable"
            self.error(p.param, f"{name!r} is already a {what} of the program: name the text "
                       "of 'where_checked NAME: TEST' with a new name")
            t, _ = self.visit(p.test)
        else:
            self.params[name] = "str"
            try:
                t, _ = self.visit(p.test)
            finally:
                del self.params[name]
        if not static_fits(t, "bool"):
            self.error(p.test, "the test of 'where_checked NAME: TEST' must be True or False; "
                       f"got {describe_type(t)}")

    def proposal(self, t: str, s: ast.Sample) -> None:
        qt, _ = self.visit(s.proposal)
        if not static_fits(qt, "dist"):
            self.error(s.proposal, f"a proposal must be a distribution; got {describe_type(qt)}")
        elif "any" not in (t, qt) and (t == "nextdist") != (qt == "nextdist"):
            self.error(s.proposal, "the proposal of a next-token distribution must be a next-token "
                       f"distribution of the same context, and only of one; got {describe_type(qt)}")
        if s.checked is not None:
            self.error(s.proposal, "a proposal cannot be combined with where_checked: AWRS draws its own tokens")
        if s.proposal_where is not None:
            self.where(qt, s.proposal, s.proposal_where, "'where' on a proposal")


    def visit_CallProgram(self, s: ast.CallProgram) -> None:
        """``[x =] call f(args)``: ``f`` a program of the file, the arguments
        binding to its parameters, no recursion (:mod:`ppl.dsl.calls`)."""
        if s.target is not None:
            self.target(s.target)
        name = s.program.id
        callee = self.programs.get(name)
        if callee is None:
            for a in list(s.args) + [k.value for k in s.keywords]:
                self.visit(a)
            self.unknown_program(s.program)
            return
        if id(s) in self.recursive:
            self.error(s.program, self.recursive[id(s)])
        bound, node, message = bind(s, callee)
        if message:
            for a in list(s.args) + [k.value for k in s.keywords]:
                self.visit(a)
            self.error(node, message)
            return
        for param, arg in bound:
            if arg is None:
                continue
            t, _ = self.visit(arg)
            declared = self.param_of(param)
            if t == "nextdist":
                self.error(arg, "a next-token distribution cannot be passed to a program; sample it first")
            elif not static_fits(t, declared):
                self.error(arg, f"argument {param.name!r} of program {name!r} must be "
                           f"{describe_type(declared)}, got {describe_type(t)}")

    def param_of(self, p: ast.Param) -> str:
        """The type of a parameter of another program (``any`` when unknown)."""
        if p.type is not None:
            return CALL_PARAM_TYPES.get(p.type, "any")
        if p.default is not None:
            t, value = constant(p.default, self.registry)
            return CALL_PARAM_TYPES.get(value_type(value), "any") if value is not _NOCONST else "any"
        return "any"

    def unknown_program(self, e: ast.Name) -> None:
        name, end = e.id, e.column + len(e.id)
        entry = self.registry.get(name)
        if entry is not None:
            kind = "constant" if entry.is_constant else "function"
            how = f", as in x = {name}(...)" if not entry.is_constant else ""
            self.error(e, f"{name!r} is a builtin {kind}, not a program of this file: use it without 'call'{how}",
                       end=end)
        elif name in self.params or name in self.vars:
            self.error(e, f"{name!r} is a variable, not a program of this file", end=end)
        elif name not in self.suppressed:
            known = self.programs.names()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else (
                f"; the programs of this file are {', '.join(known)}" if known else "")
            self.error(e, f"unknown program {name!r}{hint}", end=end)

    def visit_Observe(self, s: ast.Observe) -> None:
        t, _ = self.visit(s.dist)
        vt, _ = self.visit(s.value)
        if t == "context":
            if not static_fits(vt, "str"):
                self.error(s.value, f"observing a context needs the text it continues with, a str; got {describe_type(vt)}")
        elif t == "nextdist":
            if not static_fits(vt, "token|str|int|EOS"):
                self.error(s.value, f"a next token is observed as a token, its text, its id or EOS; got {describe_type(vt)}")
        elif not static_fits(t, "dist"):
            self.error(s.dist, "observe needs a distribution (e.g. ctx.next_token(), bernoulli(0.7)) "
                       f"or a context (observe ctx = \"text\"); got {describe_type(t)}")

    def visit_Condition(self, s: ast.Condition) -> None:
        self.visit(s.test)

    def visit_Factor(self, s: ast.Factor | ast.Twist) -> None:
        t, value = self.visit(s.value)
        word = "factor" if isinstance(s, ast.Factor) else "twist"
        if not static_fits(t, "number|bool"):
            self.error(s.value, f"{word} needs a number (a log weight); got {describe_type(t)}")
        elif value is not _NOCONST and isinstance(value, float) and value != value:
            self.error(s.value, f"{word} of NaN")

    visit_Twist = visit_Factor

    def visit_Return(self, s: ast.Return) -> None:
        t, _ = self.visit(s.value)
        if t == "context":
            self.error(s.value, "return the context's text (ctx.text), not the context itself")
        elif t in ("nextdist", "dist", "constraint"):
            self.error(s.value, f"a program cannot return a {describe_type(t)}")

    def visit_Break(self, s: ast.Break | ast.Continue) -> None:
        if self.loops == 0:
            word = "break" if isinstance(s, ast.Break) else "continue"
            self.error(s, f"{word} outside a loop")

    visit_Continue = visit_Break

    def visit_Finish(self, s: ast.Finish | ast.Pass) -> None:
        pass

    visit_Pass = visit_Finish

    def visit_If(self, s: ast.If) -> None:
        for test, body in s.branches:
            self.visit(test)
            self.check_block(body)
        if s.orelse:
            self.check_block(s.orelse)

    def visit_For(self, s: ast.For) -> None:
        self.target(s.target)
        t, _ = self.visit(s.iter)
        if t in ("int", "float", "number", "bool"):
            self.error(s.iter, f"cannot loop over {describe_type(t)}: use range(n), or repeat n")
        elif t == "context":
            self.error(s.iter, "loop over the context's tokens (ctx.tokens) or text (ctx.text)")
        elif not static_fits(t, "str|list|token"):
            self.error(s.iter, f"a for loop needs a list or a string; got {describe_type(t)}")
        self.loop_body(s.body)

    def visit_Repeat(self, s: ast.Repeat) -> None:
        t, value = self.visit(s.count)
        if not static_fits(t, "int"):
            self.error(s.count, f"repeat needs an int count; got {describe_type(t)}")
        elif value is not _NOCONST and isinstance(value, int) and value < 0:
            self.error(s.count, f"repeat needs a count >= 0; got {short(value)}")
        self.loop_body(s.body)

    def visit_While(self, s: ast.While) -> None:
        self.visit(s.test)
        self.loop_body(s.body)

    def visit_Step(self, s: ast.Step) -> None:
        self.check_block(s.body)

    def fold(self, node: ast.Node, fn, *args) -> tuple[str, Any]:
        """Constant folding: the type and value of ``fn(*args)``, or its error,
        worked out once per node and within the check's budget (the run's size
        bounds; past its work budget nothing more is folded: the run checks)."""
        hit = self.folds.get(id(node))
        if hit is None:
            hit = self.folds[id(node)] = _fold(fn, args)
        t, value, message = hit
        if message:
            self.error(node, message)
        return t, value

    def visit_Const(self, e: ast.Const):
        return value_type(e.value), e.value

    def visit_ListExpr(self, e: ast.ListExpr):
        results = [self.visit(item) for item in e.items]
        for item, (t, _) in zip(e.items, results):
            if t == "nextdist":
                self.error(item, "a next-token distribution cannot be put in a list")
        if all(v is not _NOCONST for _, v in results):
            return "list", tuple(v for _, v in results)
        return "list", _NOCONST

    def visit_Name(self, e: ast.Name):
        name = e.id
        if name in self.params:
            return self.params[name], _NOCONST
        if name in self.vars:
            self.var_reads += 1
            return self.vars[name], _NOCONST
        entry = self.registry.get(name)
        if entry is not None:
            if entry.is_constant:
                return value_type(entry.value), entry.value
            self.error(e, f"{name} is a function: call it, as in {name}(...)")
            return "any", _NOCONST
        self.undefined(e, name)
        return "any", _NOCONST

    def undefined(self, e: ast.Node, name: str, call: bool = False) -> None:
        if name in self.suppressed or not self.report:
            return
        end = e.column + len(name)
        if name.startswith("__"):
            self.error(e, f"names starting with '__' are not allowed ({name!r})", end=end)
            return
        if name in ("true", "false"):
            self.error(e, f"undefined name {name!r}; did you mean {name.capitalize()!r}?", end=end)
            return
        if name in self.programs and not call:
            self.error(e, f"{name!r} is a program, not a value: run it with x = call {name}(...)", end=end)
            return
        if name in PYTHON_BUILTINS:
            self.error(e, f"{name!r} is a Python builtin, which .steer programs cannot use; they can use "
                       "only the steer builtins (see docs/dsl.md) and those registered with @ppl.builtin", end=end)
            return
        close = []
        n_known = len(self.params) + len(self.vars) + len(self.registry.names())
        if self.hint_work >= n_known:  # a program with thousands of names gets hints for its first few only
            self.hint_work -= n_known
            known = list(self.params) + list(self.vars) + self.registry.names()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        what = "unknown function" if call else "undefined name"
        self.error(e, f"{what} {name!r}{hint}", end=end)

    def visit_BinOp(self, e: ast.BinOp):
        (lt, lv), (rt, rv) = self.visit(e.left), self.visit(e.right)
        if lv is not _NOCONST and rv is not _NOCONST:
            return self.fold(e, binop, e.op, lv, rv)
        t = binop_type(e.op, lt, rt)
        if t is None:
            self.error(e, f"unsupported operand types for {e.op}: {describe_type(lt)} and {describe_type(rt)}")
            return "any", _NOCONST
        return t, _NOCONST

    def visit_Compare(self, e: ast.Compare):
        (lt, lv), (rt, rv) = self.visit(e.left), self.visit(e.right)
        if lv is not _NOCONST and rv is not _NOCONST:
            return self.fold(e, compare, e.op, lv, rv)
        if lt != "any" and rt != "any":
            if e.op in ("<", "<=", ">", ">="):
                ok = (lt in NUM and rt in NUM) or (lt in ("str", "token") and rt in ("str", "token")) or lt == rt == "list"
                if not ok:
                    self.error(e, f"cannot compare {describe_type(lt)} and {describe_type(rt)} with {e.op}")
            elif e.op in ("in", "not in"):
                if rt not in ("str", "token", "list"):
                    self.error(e.right, f"'{e.op}' needs a string or a list on the right; got {describe_type(rt)}")
                elif rt in ("str", "token") and lt not in ("str", "token"):
                    self.error(e.left, f"'{e.op}' on a string needs a string on the left; got {describe_type(lt)}")
        elif rt not in ("any", "str", "token", "list") and e.op in ("in", "not in"):
            self.error(e.right, f"'{e.op}' needs a string or a list on the right; got {describe_type(rt)}")
        return "bool", _NOCONST

    def visit_BoolOp(self, e: ast.BoolOp):
        (lt, lv), (rt, rv) = self.visit(e.left), self.visit(e.right)
        if lt == "constraint" or rt == "constraint":
            other = rt if lt == "constraint" else lt
            if other not in ("constraint", "any"):
                self.error(e, f"'{e.op}' combines two token constraints; got a constraint and {describe_type(other)}")
            return "constraint", _NOCONST
        if lv is not _NOCONST and rv is not _NOCONST:
            if e.op == "and":
                return value_type(rv if truth(lv) else lv), (rv if truth(lv) else lv)
            return value_type(lv if truth(lv) else rv), (lv if truth(lv) else rv)
        if lt == rt:
            return lt, _NOCONST
        return "any", _NOCONST

    def visit_UnaryOp(self, e: ast.UnaryOp):
        t, v = self.visit(e.operand)
        if v is not _NOCONST:
            return self.fold(e, unary, e.op, v)
        if e.op == "not":
            return ("constraint" if t == "constraint" else "bool"), _NOCONST
        if t != "any" and t not in NUM:
            self.error(e, f"unsupported operand type for unary {e.op}: {describe_type(t)}")
            return "any", _NOCONST
        return ("int" if t == "bool" else t), _NOCONST

    def visit_Index(self, e: ast.Index):
        (vt, vv), (it, iv) = self.visit(e.value), self.visit(e.index)
        if vv is not _NOCONST and iv is not _NOCONST:
            return self.fold(e, index, vv, iv)
        if vt not in ("any", "str", "list"):
            self.error(e, f"cannot index {describe_type(vt)}; only strings and lists can be indexed"
                       + ("; use ctx.tokens or ctx.text" if vt == "context" else ""))
        if it not in ("any", "int", "bool", "number"):
            self.error(e.index, f"an index must be an int; got {describe_type(it)}")
        return ("str" if vt == "str" else "any"), _NOCONST

    def visit_Slice(self, e: ast.Slice):
        vt, vv = self.visit(e.value)
        bounds = []
        for b in (e.lower, e.upper):
            if b is None:
                bounds.append(None)
                continue
            bt, bv = self.visit(b)
            if bt not in ("any", "int", "number"):
                self.error(b, f"slice bounds must be ints; got {describe_type(bt)}")
            bounds.append(bv)
        if vv is not _NOCONST and all(b is not _NOCONST for b in bounds):
            return self.fold(e, slice_, vv, bounds[0], bounds[1])
        if vt not in ("any", "str", "list"):
            self.error(e, f"cannot slice {describe_type(vt)}; only strings and lists can be sliced")
            return "any", _NOCONST
        return vt, _NOCONST

    def visit_Attribute(self, e: ast.Attribute):
        vt, _ = self.visit(e.value)
        name, col = e.attr, e.attr_column
        end = col + len(name)
        if name.startswith("_"):
            self.error(e, f"attribute {name!r} is not accessible: a .steer program can use only ctx.text, "
                       "ctx.tokens, ctx.next_token(), tok.text, tok.id and tok.is_eos", column=col, end=end)
            return "any", _NOCONST
        if name == "next_token":
            self.error(e, "next_token is a method: write .next_token()", column=col, end=end)
            return "any", _NOCONST
        if vt == "context":
            if name not in ("text", "tokens"):
                self.error(e, self.unknown_attr("a context", name, "it has .next_token(), .text and .tokens"), column=col, end=end)
                return "any", _NOCONST
        elif vt == "token":
            if name not in ("text", "id", "is_eos"):
                self.error(e, self.unknown_attr("a token", name, "it has .text, .id and .is_eos"), column=col, end=end)
                return "any", _NOCONST
        elif vt != "any":
            self.error(e, f"{describe_type(vt)} has no attribute {name!r}: only contexts and tokens have attributes "
                       "(ctx.text, ctx.tokens, tok.text, tok.id, tok.is_eos)" + self.builtin_hint(name),
                       column=col, end=end)
            return "any", _NOCONST
        elif name not in ATTRIBUTES:
            self.error(e, self.unknown_attr("a value", name, "the attributes are ctx.text, ctx.tokens, "
                                            "tok.text, tok.id and tok.is_eos"), column=col, end=end)
            return "any", _NOCONST
        return {"text": "str", "tokens": "list", "id": "int", "is_eos": "bool"}[name], _NOCONST

    def builtin_hint(self, name: str) -> str:
        entry = self.registry.get(name)
        if entry is not None and not entry.is_constant and not entry.needs_lm and entry.arg_types \
                and set(entry.arg_types[0].split("|")) & {"str", "list"}:
            return f"; use the builtin {name}(x)"
        return ""

    def unknown_attr(self, what: str, name: str, has: str) -> str:
        return f"{what} has no attribute {name!r}; {has}{self.builtin_hint(name)}"

    def visit_MethodCall(self, e: ast.MethodCall):
        vt, _ = self.visit(e.value)
        for a in e.args:
            self.visit(a)
        name, col = e.method, e.attr_column
        end = col + len(name)
        if name.startswith("_"):
            self.error(e, f"attribute {name!r} is not accessible: the only method is ctx.next_token()",
                       column=col, end=end)
            return "any", _NOCONST
        if name in ("text", "tokens", "id", "is_eos"):
            self.error(e, f"{name} is a property, not a method: write .{name} without ()", column=col, end=end)
            return "any", _NOCONST
        if name != "next_token":
            self.error(e, f"unknown method {name!r}: the only method is ctx.next_token()" + self.builtin_hint(name),
                       column=col, end=end)
            return "any", _NOCONST
        if vt not in ("context", "any"):
            self.error(e, f"next_token() is a method of a context (ctx = lm(prompt)); this is {describe_type(vt)}",
                       column=col, end=end)
            return "any", _NOCONST
        if e.args:
            self.error(e, f"next_token() takes no arguments, got {len(e.args)}", column=col, end=end)
        return "nextdist", _NOCONST

    def visit_IfExp(self, e: ast.IfExp):
        tt, tv = self.visit(e.test)
        (bt, bv), (ot, ov) = self.visit(e.body), self.visit(e.orelse)
        t = join(bt, ot)
        if t == "any" and "any" not in (bt, ot):
            self.error(e, "the two branches of 'x if c else y' must have one type; "
                       f"got {describe_type(bt)} and {describe_type(ot)}")
        if tt == "constraint" or tt == "nextdist":
            self.error(e.test, f"the test of 'x if c else y' must be a truth value; got {describe_type(tt)}")
        if tv is not _NOCONST:
            return (bt, bv) if truth(tv) else (ot, ov)
        return t, _NOCONST

    def visit_Call(self, e: ast.Call):
        name = e.func.id
        entry = self.registry.get(name)
        arg = self.predicate_arg if name in PREDICATE_TAKERS and entry is not None else self.visit
        args = [(a, arg(a)) for a in e.args]
        keywords = [(k.name, (k.value, arg(k.value))) for k in e.keywords]
        if entry is None:
            if name in self.params or name in self.vars:
                self.error(e.func, f"{name!r} is a variable, not a function")
            elif name in self.programs and name not in self.suppressed:
                self.error(e.func, f"{name!r} is a program, not a builtin: run it in a statement of its own, "
                           f"x = call {name}(...)")
            else:
                self.undefined(e.func, name, call=True)
            return "any", _NOCONST
        if entry.is_constant:
            self.error(e.func, f"{name} is a constant, not a function")
            return "any", _NOCONST
        try:
            bound = entry.bind(args, keywords, default=lambda v: (None, (value_type(v), v)))
        except OpError as exc:
            self.error(e, str(exc))
            return (entry.returns if "|" not in entry.returns else "any"), _NOCONST
        if name in FILE_ARGUMENTS and bound and is_lark_name(bound[0][1][1]):
            message = missing_message(bound[0][1][1], self.filename)
            if message:
                self.error(bound[0][0] or e, message)
        return self.call(e, entry, bound)

    def predicate_arg(self, a: ast.Expr):
        """An argument that must name a builtin ``str -> bool`` (``token_predicate(NAME)``)."""
        entry = self.registry.get(a.id) if isinstance(a, ast.Name) else None
        if entry is None or entry.is_constant or a.id in self.params or a.id in self.vars:
            self.visit(a)
            if self.unknown_name(a):
                return "any", _NOCONST  # reported as undefined
            self.error(a, "token_predicate() takes the name of a builtin from str to bool (one registered "
                       "with @ppl.builtin, e.g. token_predicate(is_short)); use matches_token(\"regex\") for a pattern")
            return "any", _NOCONST
        self.check_predicate(a, entry, "token_predicate()")
        return "any", _NOCONST

    def unknown_name(self, e: ast.Expr) -> bool:
        """Whether ``e`` is a name that is nothing at all (reported as undefined)."""
        return isinstance(e, ast.Name) and e.id not in self.registry and e.id not in self.params \
            and e.id not in self.vars

    def check_predicate(self, node: ast.Node, entry: Builtin, what: str) -> None:
        """``entry`` must take one str and return a bool, to be ``what``'s predicate."""
        takes_one = entry.min_args <= 1 and (entry.max_args is None or entry.max_args >= 1)
        if entry.needs_lm or not takes_one or not static_fits("str", entry.arg_type(0)):
            self.error(node, f"{what} needs a builtin that takes one str; {entry.name}() takes "
                       f"{entry.arity_text()}" + (f" ({describe_type(entry.arg_type(0))} first)"
                                                    if entry.arg_types else ""))
        elif entry.returns not in ("bool", "any"):
            self.error(node, f"{what} needs a builtin that returns a bool; {entry.name}() returns "
                       f"{describe_type(entry.returns)}")

    def call(self, e: ast.Call, entry: Builtin, bound) -> tuple[str, Any]:
        n = len(bound)
        if n < entry.min_args or (entry.max_args is not None and n > entry.max_args):
            self.error(e, f"{entry.name}() takes {entry.arity_text()}, got {n}")
            return entry.returns if "|" not in entry.returns else "any", _NOCONST
        ok = True
        for i, (arg, (t, _)) in enumerate(bound):
            spec = entry.arg_type(i)
            if not static_fits(t, spec):
                self.error(arg or e, f"{entry.name}() argument {i + 1} must be {describe_type(spec)}, got {describe_type(t)}")
                ok = False
            if t == "nextdist":
                self.error(arg or e, "a next-token distribution cannot be passed to a function; sample it first")
                ok = False
        if entry.name == "lm" and entry.needs_lm and n == 2 and bound[1][1][0] == "constraint":
            self.error(bound[1][0] or e, "lm(prompt, c) takes a sequence constraint (regex, grammar, json_schema, "
                       "choice); a token constraint goes on each token: tok ~ ctx.next_token() where ...")
            ok = False
        if ok and entry.pure and all(v is not _NOCONST for _, (_, v) in bound):
            return self.fold(e, entry.call, tuple(v for _, (_, v) in bound))
        returns = entry.returns
        return (returns if "|" not in returns else "any"), _NOCONST


def _fold(fn, args) -> tuple[str, Any, str | None]:
    try:
        value = fn(*args)  # operators and builtins return values as the language holds them
    except CheckBudgetSpent:
        return "any", _NOCONST, None
    except OpError as exc:
        return "any", _NOCONST, str(exc)
    except RecursionError:
        return "any", _NOCONST, None
    except Exception as exc:  # pragma: no cover - a builtin misbehaving at check time
        return "any", _NOCONST, f"{type(exc).__name__}: {brief(str(exc))}"
    return value_type(value), value, None


def check_program(program: ast.Program, registry: Registry, filename: str, source_lines: list[str],
                  suppressed: set[str] = frozenset()) -> list[Diagnostic]:
    """The semantic diagnostics of a parsed program (alone in its file)."""
    return check_programs((program,), registry, filename, source_lines, suppressed)


def check_programs(programs: tuple[ast.Program, ...], registry: Registry, filename: str,
                   source_lines: list[str], suppressed: set[str] = frozenset()) -> list[Diagnostic]:
    """The semantic diagnostics of the parsed programs of one file: each
    program's, its calls of the others', and names defined twice."""
    table = Programs(programs)
    recursive = recursive_calls(table)
    out = []
    for p in table.duplicates:
        first = table.get(p.name)
        src = source_lines[p.line - 1] if 1 <= p.line <= len(source_lines) else ""
        out.append(Diagnostic(filename, p.line, p.name_column, f"a program named {p.name!r} is already "
                              f"defined at line {first.line}", src, p.name_column + len(p.name)))
    for p in programs:
        out += Checker(p, registry, filename, source_lines, suppressed, table, recursive).run()
    return out


def constant(e: ast.Expr, registry: Registry) -> tuple[str, Any]:
    """The static type and value of a constant expression (a literal, a list
    of them, a pure builtin of constants); the value is ``_NOCONST`` if
    ``e`` is not constant. Nothing is reported."""
    return Checker(ast.Program("p", (), ()), registry, "<constant>", []).visit(e)
