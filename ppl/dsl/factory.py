"""Program factories: a compiled ``.steer`` program called like a
``@ppl.program`` function, ``factory(lm, **params)`` -> a particle.

Its declared parameters (:class:`Param`) come from the program's header;
arguments are bound to them by position or name, checked against their
declared types (an int for a float parameter becomes a float) and frozen as
the language holds values; :meth:`ProgramFactory.convert_arg` reads a
command-line string as a parameter's value.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from . import ast
from .builtins import BUILTINS, Registry
from .checker import constant
from .codegen import LM_KEY, CompiledProgram
from .errors import DSLArgumentError
from .limits import MAX_DEPTH, Limits
from .machine import SteerModel
from .parser import parse
from .types import PARAM_TYPES, fits, value_type
from .values import depth, freeze, short, show


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


def declared_param(p: ast.Param, registry: Registry) -> Param:
    """The :class:`Param` a checked program's header declares: its type (or
    that of its default) and its default's value."""
    default, has_default = None, p.default is not None
    if has_default:
        _, default = constant(p.default, registry)
    kind = p.type if p.type is not None else (PARAM_TYPES.get(value_type(default)) if has_default else None)
    if kind == "float" and isinstance(default, int) and not isinstance(default, bool):
        default = float(default)
    return Param(p.name, kind, default, has_default, p.line, p.column)


_PY_TYPE = {"str": str, "int": int, "float": float, "bool": bool, "list": list}


class ProgramFactory:
    """A compiled ``.steer`` program, called like a ``@ppl.program``
    function: ``factory(lm, **params)`` returns a particle (a
    :class:`SteerModel`) that every inference routine accepts.

    ``name``, ``params`` (:class:`Param` s, in order), ``filename``,
    ``source``, ``limits`` (:class:`~ppl.dsl.limits.Limits`, also read as
    ``max_steps`` ...); ``convert_arg(name, text)`` turns a command-line
    string into the value of a declared parameter."""

    __ppl_program__ = True

    def __init__(self, program: CompiledProgram, *, limits: Limits | None = None):
        self._program = program
        self.name = self.__name__ = self.__qualname__ = program.name
        self.params = program.params
        self.filename = program.filename
        self.source = program.source
        self.__doc__ = program.doc
        self.limits = limits if limits is not None else Limits()

    @property
    def max_steps(self) -> int:
        return self.limits.max_steps

    @property
    def max_iterations(self) -> int:
        return self.limits.max_iterations

    @property
    def time_limit(self) -> float | None:
        return self.limits.time_limit

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
            p.name + (f": {p.type}" if p.type else "") + (f" = {short(p.default)}" if p.has_default else "")
            for p in self.params
        )
        return f"<steer program {self.name}({params}) from {self.filename}>"

    def with_limits(self, limits: Limits | None = None, **changes) -> "ProgramFactory":
        """The same program with other run limits: a whole ``Limits``, or
        some of them by name (``max_steps=``, ``time_limit=`` ...)."""
        base = limits if limits is not None else self.limits
        return ProgramFactory(self._program, limits=base.updated(**changes))

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
        return SteerModel(self._program, env, limits=self.limits)

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
        if isinstance(value, (str, tuple)) and len(value) > self.limits.max_length:
            raise DSLArgumentError(f"{self.name}: parameter {p.name!r} has {len(value)} elements, more than "
                                   f"the limit of {self.limits.max_length} (max_length)")
        if isinstance(value, tuple) and depth(value) > MAX_DEPTH:
            raise DSLArgumentError(f"{self.name}: parameter {p.name!r} holds lists nested more than {MAX_DEPTH} deep")
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
    t, value = constant(program.params[0].default, BUILTINS)
    if not isinstance(value, tuple):
        raise ValueError("write a list literal such as [1, 2] or [\"a\", \"b\"]")
    return value

