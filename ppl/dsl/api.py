"""The front door of the steer language: :func:`compile` and :func:`load`
check a file's programs (every syntax and semantic error, each at
``FILE:LINE:COL``, raised together as one :class:`~ppl.dsl.errors.DSLError`)
and return a :class:`~ppl.dsl.factory.ProgramFactory` of the program that
runs; :func:`check_source` and :func:`check_file` only report the
diagnostics.

A file may hold several programs, which call one another
(``x = call f(args)``, :mod:`~ppl.dsl.calls`); the one that runs is
``program=NAME`` when given, else the only program that no other program
calls.

The pipeline: :mod:`~ppl.dsl.parser` (text -> AST, every syntax error),
:mod:`~ppl.dsl.checker` (semantic errors), :mod:`~ppl.dsl.codegen` and
:mod:`~ppl.dsl.inline` (instructions, calls inlined),
:mod:`~ppl.dsl.factory` (parameters, particles of :mod:`~ppl.dsl.machine`).
"""

from __future__ import annotations

from pathlib import Path

from . import stdlib  # noqa: F401 - the standard builtins register themselves in BUILTINS
from .builtins import BUILTINS, Registry
from .calls import Programs, choose_entry
from .checker import check_programs
from .codegen import CompiledProgram
from .errors import Diagnostic, DSLError, Failure
from .factory import ProgramFactory, declared_param
from .inline import generate
from .limits import Limits, check_budget, using
from .parser import parse_programs


def _header_doc(source: str) -> str:
    lines = []
    for line in source.split("\n"):
        s = line.strip()
        if s.startswith("#"):
            lines.append(s[1:].strip())
        elif s:
            break
    return "\n".join(lines).strip()


def _analyse(source: str, filename: str, registry: Registry, limits: Limits | None = None,
             name: str | None = None):
    """(the program that runs or None, the file's programs, every diagnostic)."""
    lines = source.split("\n")
    entry, table = None, None
    try:
        programs, diagnostics, broken = parse_programs(source, filename)
        if programs is not None:
            with using(check_budget(limits)):  # constant folding: the run's size bounds, a bounded amount of work
                diagnostics = diagnostics + check_programs(programs, registry, filename, lines, broken)
            table = Programs(programs)
            entry, problems = choose_entry(table, filename, lines, name)
            if name is not None or not diagnostics:  # which program runs matters once the rest is right
                diagnostics = diagnostics + problems
    except RecursionError:
        entry, diagnostics = None, [Diagnostic(filename, 1, 1, "the program is nested too deeply to be read")]
    diagnostics = sorted(set(diagnostics), key=lambda d: (d.line, d.column, d.message))
    return entry, table, diagnostics


def check_source(source: str, filename: str = "<string>", *, builtins: Registry | None = None,
                 limits: Limits | None = None, program: str | None = None) -> list[Diagnostic]:
    """Every syntax and semantic problem of a ``.steer`` file's programs, in
    source order (an empty list: the file is fine), the choice of the program
    that runs included (``program``: its name; default: the only program no
    other calls); constant expressions are held to ``limits`` (default:
    ``Limits()``) as a run would hold them."""
    if not isinstance(source, str):
        raise TypeError(f"check_source() needs the program's text as a str, got {type(source).__name__}")
    return _analyse(source, filename, builtins if builtins is not None else BUILTINS, limits, program)[2]


def _read(path) -> tuple[str, str]:
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), str(path)
    except UnicodeDecodeError as exc:
        raise DSLError(Diagnostic(str(path), 1, 1, f"the file is not valid UTF-8 text ({exc.reason} at byte {exc.start})")) from None


def check_file(path, *, builtins: Registry | None = None, limits: Limits | None = None,
               program: str | None = None) -> list[Diagnostic]:
    """:func:`check_source` of a file (``FileNotFoundError`` if it is missing)."""
    try:
        source, name = _read(path)
    except DSLError as exc:
        return exc.diagnostics
    return check_source(source, name, builtins=builtins, limits=limits, program=program)


def _limits(limits: Limits | None, changes: dict) -> Limits:
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits= needs a ppl.dsl.Limits, got {type(limits).__name__}")
    return (limits or Limits()).updated(**changes)


def compile(source: str, filename: str = "<string>", *, builtins: Registry | None = None,
            limits: Limits | None = None, program: str | None = None, **limit_values) -> ProgramFactory:
    """Check and compile ``.steer`` source text into the factory of the
    program that runs (``program``: its name; default: the only program of
    the text that no other program calls); raises :class:`DSLError`
    listing every problem if there are any.

    ``limits=Limits(...)``, or the limits by name (``max_steps=``,
    ``max_iterations=``, ``max_operations=``, ``max_length=``,
    ``max_int_bits=``, ``time_limit=`` seconds), bound its runs (see
    :mod:`ppl.dsl.limits`)."""
    if not isinstance(source, str):
        raise TypeError(f"compile() needs the program's text as a str, got {type(source).__name__}")
    limits = _limits(limits, limit_values)
    registry = builtins if builtins is not None else BUILTINS
    entry, table, diagnostics = _analyse(source, filename, registry, limits, program)
    if diagnostics:
        n = len(diagnostics)
        raise DSLError(diagnostics, summary=f"{n} error{'s' * (n != 1)} in {filename}")
    fail = Failure(filename, source.split("\n"))
    params = tuple(declared_param(p, registry) for p in entry.params)
    compiled = CompiledProgram(entry.name, filename, source, entry, params,
                               generate(entry, table, registry, fail), fail, _header_doc(source))
    return ProgramFactory(compiled, limits=limits)


def load(path, *, builtins: Registry | None = None, limits: Limits | None = None,
         program: str | None = None, **limit_values) -> ProgramFactory:
    """Check and compile a ``.steer`` file (see :func:`compile`); ``program``
    names the program that runs."""
    source, name = _read(path)
    return compile(source, name, builtins=builtins, limits=limits, program=program, **limit_values)
