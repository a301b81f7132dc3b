"""The front door of the steer language: :func:`compile` and :func:`load`
check a program (every syntax and semantic error, each at ``FILE:LINE:COL``,
raised together as one :class:`~ppl.dsl.errors.DSLError`) and return a
:class:`~ppl.dsl.factory.ProgramFactory`; :func:`check_source` and
:func:`check_file` only report the diagnostics.

The pipeline: :mod:`~ppl.dsl.parser` (text -> AST, every syntax error),
:mod:`~ppl.dsl.checker` (semantic errors), :mod:`~ppl.dsl.codegen`
(instructions), :mod:`~ppl.dsl.factory` (parameters, particles of
:mod:`~ppl.dsl.machine`).
"""

from __future__ import annotations

from pathlib import Path

from . import stdlib  # noqa: F401 - the standard builtins register themselves in BUILTINS
from .builtins import BUILTINS, Registry
from .checker import check_program
from .codegen import CompiledProgram, generate
from .errors import Diagnostic, DSLError, Failure
from .factory import ProgramFactory, declared_param
from .limits import Limits, check_budget, using
from .parser import parse


def _header_doc(source: str) -> str:
    lines = []
    for line in source.split("\n"):
        s = line.strip()
        if s.startswith("#"):
            lines.append(s[1:].strip())
        elif s:
            break
    return "\n".join(lines).strip()


def _analyse(source: str, filename: str, registry: Registry, limits: Limits | None = None):
    lines = source.split("\n")
    try:
        program, diagnostics, broken = parse(source, filename)
        if program is not None:
            with using(check_budget(limits)):  # constant folding: the run's size bounds, a bounded amount of work
                diagnostics = diagnostics + check_program(program, registry, filename, lines, broken)
    except RecursionError:
        program = None
        diagnostics = [Diagnostic(filename, 1, 1, "the program is nested too deeply to be read")]
    diagnostics = sorted(set(diagnostics), key=lambda d: (d.line, d.column, d.message))
    return program, diagnostics


def check_source(source: str, filename: str = "<string>", *, builtins: Registry | None = None,
                 limits: Limits | None = None) -> list[Diagnostic]:
    """Every syntax and semantic problem of a ``.steer`` program, in source
    order (an empty list: the program is fine); constant expressions are
    held to ``limits`` (default: ``Limits()``) as a run would hold them."""
    if not isinstance(source, str):
        raise TypeError(f"check_source() needs the program's text as a str, got {type(source).__name__}")
    return _analyse(source, filename, builtins if builtins is not None else BUILTINS, limits)[1]


def _read(path) -> tuple[str, str]:
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), str(path)
    except UnicodeDecodeError as exc:
        raise DSLError(Diagnostic(str(path), 1, 1, f"the file is not valid UTF-8 text ({exc.reason} at byte {exc.start})")) from None


def check_file(path, *, builtins: Registry | None = None, limits: Limits | None = None) -> list[Diagnostic]:
    """:func:`check_source` of a file (``FileNotFoundError`` if it is missing)."""
    try:
        source, name = _read(path)
    except DSLError as exc:
        return exc.diagnostics
    return check_source(source, name, builtins=builtins, limits=limits)


def _limits(limits: Limits | None, changes: dict) -> Limits:
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits= needs a ppl.dsl.Limits, got {type(limits).__name__}")
    return (limits or Limits()).updated(**changes)


def compile(source: str, filename: str = "<string>", *, builtins: Registry | None = None,
            limits: Limits | None = None, **limit_values) -> ProgramFactory:
    """Check and compile ``.steer`` source text into a program factory;
    raises :class:`DSLError` listing every problem if there are any.

    ``limits=Limits(...)``, or the limits by name (``max_steps=``,
    ``max_iterations=``, ``max_operations=``, ``max_length=``,
    ``max_int_bits=``, ``time_limit=`` seconds), bound its runs (see
    :mod:`ppl.dsl.limits`)."""
    if not isinstance(source, str):
        raise TypeError(f"compile() needs the program's text as a str, got {type(source).__name__}")
    limits = _limits(limits, limit_values)
    registry = builtins if builtins is not None else BUILTINS
    program, diagnostics = _analyse(source, filename, registry, limits)
    if diagnostics:
        n = len(diagnostics)
        raise DSLError(diagnostics, summary=f"{n} error{'s' * (n != 1)} in {filename}")
    fail = Failure(filename, source.split("\n"))
    params = tuple(declared_param(p, registry) for p in program.params)
    compiled = CompiledProgram(program.name, filename, source, program, params,
                               generate(program, registry, fail), fail, _header_doc(source))
    return ProgramFactory(compiled, limits=limits)


def load(path, *, builtins: Registry | None = None, limits: Limits | None = None,
         **limit_values) -> ProgramFactory:
    """Check and compile a ``.steer`` file (see :func:`compile`)."""
    source, name = _read(path)
    return compile(source, name, builtins=builtins, limits=limits, **limit_values)
