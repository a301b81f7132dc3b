"""Programs that call programs: ``x = call f(args)`` (and ``call f(args)``).

A ``.steer`` file holds one or more programs. One of them runs (the
*entry*); the others are called, as submodels: ``call f(a, key=b)`` runs the
body of ``f`` on the calling particle, its parameters bound to the
arguments, and gives back what ``f`` returns. It is ``await ppl.call(sub)``
of the Python forms (:mod:`ppl.submodel`): ``f``'s primitives act on the
caller's particle, so the call is the inlining of ``f``'s body at the call
site, and the Feynman-Kac model (kernels, potentials, ``Z``, the posterior)
is that of the program with the body written in place. A call is one step
block (``step:``, ``async with ppl.step()``): the step boundary comes before
it when the step already had a token primitive, never inside it. How a
call is compiled and run: :mod:`ppl.dsl.inline`.

This module holds what the checker needs across programs:

- :class:`Programs`: the file's programs by name (duplicates reported);
- :func:`bind`: a call's arguments matched to the callee's parameters
  (by position, then by name; defaults for the rest), or what is wrong;
- :func:`recursive_calls`: the call sites on a cycle of the call graph
  (recursion is not supported: a call is inlined);
- :func:`choose_entry`: the program that runs: the one named
  (``load(path, program=NAME)``), else the only program no other program
  calls;
- :func:`inlined_size`: the number of statements of a program once its
  calls are inlined, bounded by :data:`MAX_INLINED`.
"""

from __future__ import annotations

import difflib

from . import ast
from .errors import Diagnostic

#: statements a program may have once every call in it is inlined (calls copy bodies)
MAX_INLINED = 20_000

#: parameter types only a called program can have (the entry's arguments come from outside)
CALL_ONLY_TYPES = ("context", "token")

#: the name the parser gives a program whose header could not be read
PLACEHOLDER = "_"


def call_sites(body) -> list[ast.CallProgram]:
    """The ``call`` statements of a block and the blocks inside it, in source order."""
    return [s for s in statements(body) if isinstance(s, ast.CallProgram)]


def statements(body):
    """Every statement in ``body`` and the blocks inside it, in source order."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            for _, block in stmt.branches:
                yield from statements(block)
            if stmt.orelse:
                yield from statements(stmt.orelse)
        elif isinstance(stmt, (ast.For, ast.Repeat, ast.While, ast.Step)):
            yield from statements(stmt.body)


class Programs:
    """The programs of one file by name (the first of a name wins);
    ``duplicates`` are the later ones."""

    def __init__(self, programs: tuple[ast.Program, ...]):
        self.order = tuple(programs)
        self.by_name: dict[str, ast.Program] = {}
        self.duplicates: list[ast.Program] = []
        for p in programs:
            if p.name in self.by_name and p.name != PLACEHOLDER:
                self.duplicates.append(p)
            else:
                self.by_name.setdefault(p.name, p)
        self.calls = {p.name: call_sites(p.body) for p in self.by_name.values()}

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def get(self, name: str) -> ast.Program | None:
        return self.by_name.get(name)

    def names(self) -> list[str]:
        return [n for n in self.by_name if n != PLACEHOLDER]

    def called(self) -> set[str]:
        """The names of the programs some other program calls."""
        return {c.program.id for caller, sites in self.calls.items() for c in sites
                if c.program.id != caller}


def bind(call: ast.CallProgram, callee: ast.Program) -> tuple[list, ast.Node | None, str | None]:
    """``call``'s arguments matched to ``callee``'s parameters: a list of
    ``(param, expression or None)`` in the parameters' order (None: the
    default), then the node and message of what does not fit (None, None if
    everything does)."""
    params = callee.params
    names = [p.name for p in params]
    what = f"program {callee.name!r}"
    if len(call.args) > len(params):
        n = len(params)
        listed = f" ({', '.join(names)})" if names else ""
        return [], call.args[n], f"{what} takes {n} argument{'s' * (n != 1)}{listed}, got {len(call.args)}"
    slots: dict[int, ast.Expr] = dict(enumerate(call.args))
    for k in call.keywords:
        if k.name not in names:
            close = difflib.get_close_matches(k.name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (
                f"; its parameters are {', '.join(names)}" if names else "; it has no parameters")
            return [], k, f"{what} has no parameter named {k.name!r}{hint}"
        i = names.index(k.name)
        if i in slots:
            how = "by position and by name" if i < len(call.args) else "twice"
            return [], k, f"{what} got the argument {k.name!r} {how}"
        slots[i] = k.value
    missing = [p.name for i, p in enumerate(params) if i not in slots and p.default is None]
    if missing:
        return [], call.program, f"{what} needs a value for its parameter{'s' * (len(missing) > 1)} " + \
            ", ".join(repr(m) for m in missing)
    return [(p, slots.get(i)) for i, p in enumerate(params)], None, None


def _components(programs: Programs) -> dict[str, int]:
    """Strongly connected components of the call graph (Tarjan), by program name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    comp: dict[str, int] = {}
    stack: list[str] = []
    for root in programs.by_name:
        if root in index:
            continue
        work = [(root, iter(c.program.id for c in programs.calls[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, edges = work[-1]
            nxt = next((m for m in edges if m in programs), None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    work.append((nxt, iter(c.program.id for c in programs.calls[nxt])))
                elif nxt not in comp:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    comp[member] = index[node]
                    if member == node:
                        break
    return comp


def _path(programs: Programs, start: str, goal: str) -> list[str]:
    """The names on a shortest chain of calls from ``start`` to ``goal``."""
    previous = {start: None}
    queue = [start]
    for name in queue:
        if name == goal:
            break
        for c in programs.calls.get(name, ()):
            if c.program.id in programs and c.program.id not in previous:
                previous[c.program.id] = name
                queue.append(c.program.id)
    chain, name = [], goal
    while name is not None:
        chain.append(name)
        name = previous.get(name)
    return chain[::-1]


def recursive_calls(programs: Programs) -> dict[int, str]:
    """``id(call) -> message`` for every call site on a cycle of calls."""
    comp = _components(programs)
    out = {}
    for caller, sites in programs.calls.items():
        for c in sites:
            callee = c.program.id
            if callee in programs and comp[callee] == comp[caller]:
                chain = [caller] + _path(programs, callee, caller)
                how = "itself" if callee == caller else "itself through " + " -> ".join(chain)
                out[id(c)] = (f"program {caller!r} calls {how}: a program cannot be recursive (a call "
                              "runs the called body in place); write the repetition as a loop")
    return out


def inlined_size(programs: Programs, name: str, memo: dict | None = None) -> int:
    """Statements of program ``name`` with every call inlined (recursive
    calls, reported elsewhere, count once); at most ``MAX_INLINED + 1``."""
    memo = {} if memo is None else memo
    if name in memo:
        return memo[name]
    memo[name] = 1  # a cycle counts once
    total = sum(1 for _ in statements(programs.by_name[name].body))
    for c in programs.calls[name]:
        if c.program.id in programs:
            total += inlined_size(programs, c.program.id, memo)
        if total > MAX_INLINED:
            break
    memo[name] = min(total, MAX_INLINED + 1)
    return memo[name]


def choose_entry(programs: Programs, filename: str, lines: list[str], name: str | None = None
                 ) -> tuple[ast.Program | None, list[Diagnostic]]:
    """The program that runs and what is wrong with it: the one named
    ``name``, else the only one that no other program calls (the first, if
    every program is called, which only a cycle allows)."""
    def diag(node: ast.Node, column: int, message: str, end: int | None = None) -> Diagnostic:
        src = lines[node.line - 1] if 1 <= node.line <= len(lines) else ""
        return Diagnostic(filename, node.line, column, message, src, end)

    if name is not None:
        entry = programs.get(name)
        if entry is None or name == PLACEHOLDER:
            close = difflib.get_close_matches(name, programs.names(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            first = programs.order[0]
            return None, [diag(first, first.name_column, f"no program named {name!r} in {filename}; its "
                               f"programs are {', '.join(programs.names())}{hint}")]
    else:
        called = programs.called()
        roots = [p for p in programs.by_name.values() if p.name not in called and p.name != PLACEHOLDER]
        if len(roots) > 1:
            names = ", ".join(p.name for p in roots)
            second = roots[1]
            return None, [diag(second, second.name_column,
                               f"{filename} has several programs that no other program calls ({names}), "
                               "so which one runs is not clear: call the others from the one that runs, or "
                               "name it: ppl run FILE.steer:NAME, or ppl.dsl.load(path, program=NAME)",
                               second.name_column + len(second.name))]
        entry = roots[0] if roots else programs.order[0]
    return entry, entry_problems(programs, entry, diag)


def entry_problems(programs: Programs, entry: ast.Program, diag) -> list[Diagnostic]:
    """Parameters the entry cannot take, and a body too large once inlined."""
    out = []
    for p in entry.params:
        if p.type in CALL_ONLY_TYPES:
            out.append(diag(p, p.type_column, f"the program that runs ({entry.name}) cannot take a {p.type}: "
                            f"its arguments come from the command line or Python; only a program called "
                            f"by another can have the parameter '{p.name}: {p.type}'", p.type_column + len(p.type)))
    size = inlined_size(programs, entry.name)
    if size > MAX_INLINED:
        out.append(diag(entry, entry.name_column, f"program {entry.name!r} has more than {MAX_INLINED} "
                        "statements once its calls are inlined (each call copies the called program's "
                        "body): call the large programs from fewer places", entry.name_column + len(entry.name)))
    return out
