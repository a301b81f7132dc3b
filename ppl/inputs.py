"""Input files of data-set runs (``ppl run PROGRAM --inputs FILE.jsonl``).

One JSON object per line holds the program's arguments by name, plus an
optional ``"id"`` (a string or an integer; default: the line's number in the
file, counting from 1). Blank lines are skipped. :func:`read_inputs` checks
every line against the program before anything runs: JSON that does not
parse, a line that is not an object, an id that is not a string or an
integer or that appears twice, an unknown argument, a missing required one
and a value of the wrong kind are all reported, each as ``FILE:LINE:
message``, in one :class:`InputFileError` (a ``UsageError``: exit status 2).

A value's kind comes from the parameter's annotation, else from its
default's type: ``int`` takes a JSON integer, ``float`` a number (an integer
becomes a float), ``bool`` ``true``/``false``, ``str`` a string, ``list``
(or ``tuple``) an array, ``dict`` an object; ``X | None`` also takes
``null``; any other annotation takes any value. A ``.steer`` program's
parameters are checked by their declared types, and take only strings,
numbers, booleans and arrays of them.
"""

from __future__ import annotations

import difflib
import inspect
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .program_files import program_parameters

__all__ = ["InputFileError", "InputLine", "MAX_ERRORS", "check_arguments", "read_inputs"]

#: at most this many bad lines are reported
MAX_ERRORS = 20

_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "an object", type(None): "null"}


@dataclass(frozen=True)
class InputLine:
    """One input: its ``line`` in the file (from 1), its ``id`` and the program's ``args``."""

    line: int
    id: Any
    args: dict


class InputFileError(UsageError):
    """Bad lines in an input file; ``errors`` are the ``FILE:LINE: message`` lines."""

    def __init__(self, path, errors: list[str], bad_lines: int):
        self.errors, self.bad_lines = errors, bad_lines
        shown = errors[:MAX_ERRORS]
        more = f"\n... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        lines = "line" if bad_lines == 1 else "lines"
        super().__init__(f"{path}: {bad_lines} bad input {lines}; nothing was run:\n"
                         + "\n".join(shown) + more)


def _named(name: str, namespace: dict):
    """A postponed annotation (a string) as the object it names, or ``Any``."""
    try:
        return eval(name, dict(namespace))  # noqa: S307 - the program's own annotation
    except Exception:
        return typing.Any


def _kinds(annotation, namespace: dict) -> tuple[type, ...] | None:
    """The JSON kinds ``annotation`` allows, or ``None`` for any value."""
    if isinstance(annotation, str):
        annotation = _named(annotation, namespace)
    if annotation is None or annotation is type(None):
        return (type(None),)
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        parts = [_kinds(a, namespace) for a in typing.get_args(annotation)]
        return None if any(p is None for p in parts) else tuple(k for p in parts for k in p)
    annotation = origin or annotation
    if annotation is tuple:
        return (list,)
    return (annotation,) if annotation in _KIND_NAMES else None


def _fits(value, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _show(value, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


def _plain(value) -> bool:
    """What a ``.steer`` parameter can take: str, int, float, bool and lists of them."""
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return isinstance(value, (str, int, float, bool))


class _Signature:
    """A program's parameters and the JSON kinds each takes."""

    def __init__(self, program):
        self.name = getattr(program, "__name__", type(program).__name__)
        self.steer = callable(getattr(program, "convert_arg", None))
        _, params = program_parameters(program)
        self.var_keyword = any(p.kind is p.VAR_KEYWORD for p in params.values())
        self.params = {n: p for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        func = program.__init__ if inspect.isclass(program) else getattr(program, "__wrapped__", program)
        namespace = getattr(func, "__globals__", {})
        self.kinds = {n: self._param_kinds(p, namespace) for n, p in self.params.items()}

    @staticmethod
    def _param_kinds(p: inspect.Parameter, namespace: dict):
        if p.annotation is not p.empty:
            return _kinds(p.annotation, namespace)
        if p.default is not p.empty and p.default is not None:
            return _kinds(type(p.default), namespace)
        return None

    def problems(self, args: dict) -> list[str]:
        out = []
        for key in args:
            if key not in self.params and not self.var_keyword:
                close = difflib.get_close_matches(key, list(self.params), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                names = ", ".join(self.params) or "(none)"
                out.append(f"unknown argument {key!r}{hint} ({self.name}'s parameters: {names})")
        for key, p in self.params.items():
            if key not in args and p.default is p.empty:
                out.append(f"missing argument {key!r} ({self.name} has no default for it)")
        for key, value in args.items():
            kinds = self.kinds.get(key)
            if kinds is not None and not any(_fits(value, k) for k in kinds):
                wanted = " or ".join(_KIND_NAMES[k] for k in kinds)
                out.append(f"argument {key!r} must be {wanted}, got {_show(value)}")
            elif self.steer and key in self.params and not _plain(value):
                out.append(f"argument {key!r} got {_show(value)}; .steer parameters take strings, "
                           "numbers, true/false and lists of them")
        return out

    def convert(self, args: dict) -> dict:
        """Integers given for float parameters become floats."""
        def wants_float(k):
            kinds = self.kinds.get(k) or ()
            return float in kinds and int not in kinds

        return {k: float(v) if wants_float(k) and isinstance(v, int) and not isinstance(v, bool) else v
                for k, v in args.items()}


def check_arguments(program, args: dict) -> list[str]:
    """What is wrong with ``args`` as ``program``'s keyword arguments (empty if nothing)."""
    return _Signature(program).problems(args)


def _parse(text: str, number: int, sig: _Signature, defaults: dict) -> tuple[Any, dict, list[str]]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, {}, [f"not valid JSON: {exc.msg} (column {exc.colno})"]
    if not isinstance(obj, dict):
        kind = {list: "a list", str: "a string"}.get(type(obj), _show(obj))
        return None, {}, [f"expected a JSON object of {sig.name}'s arguments, got {kind}"]
    id_ = obj.pop("id", number)
    problems = []
    if isinstance(id_, bool) or not isinstance(id_, (str, int)):
        problems.append(f"\"id\" must be a string or an integer, got {_show(id_)}")
        id_ = None
    args = {**defaults, **obj}
    return id_, args, problems + sig.problems(args)


def read_inputs(path: str | Path, program, defaults: dict | None = None) -> list[InputLine]:
    """The inputs in the JSONL file ``path``, each checked against
    ``program``'s parameters (``defaults``, such as ``--arg`` values, fill in
    arguments a line leaves out). Raises :class:`InputFileError` listing up
    to :data:`MAX_ERRORS` bad lines, or ``UsageError`` if the file cannot be
    read or holds no input."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of line 1
    except FileNotFoundError:
        raise UsageError(f"--inputs {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--inputs {path}: cannot be read ({exc})") from None
    sig, defaults = _Signature(program), dict(defaults or {})
    inputs, errors, first_line, bad_lines = [], [], {}, 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        id_, args, problems = _parse(line, number, sig, defaults)
        if id_ is not None and id_ in first_line:
            problems.insert(0, f"duplicate id {json.dumps(id_)} (first on line {first_line[id_]})")
        elif id_ is not None:
            first_line[id_] = number
        errors += [f"{path}:{number}: {p}" for p in problems]
        bad_lines += bool(problems)
        if not problems:
            inputs.append(InputLine(number, id_, sig.convert(args)))
    if errors:
        raise InputFileError(path, errors, bad_lines)
    if not inputs:
        raise UsageError(f"--inputs {path}: no inputs (the file has no JSON lines)")
    return inputs
