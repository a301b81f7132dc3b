"""The steer language's types, by name.

``int``, ``float`` (also accepts ints), ``number`` (int or float), ``bool``,
``str``, ``list``, ``token``, ``context``, ``dist`` (any distribution),
``nextdist`` (a next-token distribution), ``constraint`` (a token
constraint), ``EOS``, ``none`` and ``any``; ``a|b`` is a union. Builtins'
signatures are written in them; the run checks values against them
(:func:`fits`), the checker checks the types it inferred
(:func:`static_fits`, :func:`binop_type`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ..constraints import TokenConstraint
from ..context import LMContext
from ..distributions import Distribution, NextToken, Token
from .values import EOS, is_int, is_number, type_name

TYPES = ("int", "float", "number", "bool", "str", "list", "token", "context", "dist", "nextdist",
         "constraint", "EOS", "none", "any")

#: the types a parameter may be declared with
PARAM_TYPES = {"str": "str", "int": "int", "float": "float", "bool": "bool", "list": "list"}

#: ... and those of a program called by another (``x = call f(ctx)``: ppl.dsl.calls)
CALL_PARAM_TYPES = {**PARAM_TYPES, "context": "context", "token": "token"}

#: the types arithmetic takes
NUM = frozenset({"int", "float", "number", "bool"})

_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": is_int,
    "float": lambda v: is_number(v) and not isinstance(v, bool),
    "number": lambda v: is_number(v) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, tuple),
    "token": lambda v: isinstance(v, Token),
    "context": lambda v: isinstance(v, LMContext),
    "dist": lambda v: isinstance(v, Distribution),
    "nextdist": lambda v: isinstance(v, NextToken),
    "constraint": lambda v: isinstance(v, TokenConstraint),
    "EOS": lambda v: v is EOS,
    "none": lambda v: v is None,
    "any": lambda v: True,
}


def fits(value: Any, spec: str) -> bool:
    """Whether ``value`` has the type ``spec`` (e.g. ``"str|list"``)."""
    return any(_CHECKS[t](value) for t in spec.split("|"))


_NICE = {"dist": "a distribution", "nextdist": "a next-token distribution",
         "constraint": "a token constraint", "context": "a context", "token": "a token",
         "none": "nothing", "number": "a number"}


def describe_type(spec: str) -> str:
    """``"str|list"`` -> ``"str or list"``; ``"dist"`` -> ``"a distribution"``."""
    parts = [_NICE.get(p, p) for p in spec.split("|")]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


_TYPE_NAMES = {"distribution": "dist", "next-token distribution": "nextdist"}


def value_type(value: Any) -> str:
    """The static type (one of :data:`TYPES`) of a value."""
    t = type_name(value)
    t = _TYPE_NAMES.get(t, t)
    return t if t in TYPES else "any"


_PY_TYPES = {str: "str", int: "int", float: "float", bool: "bool", list: "list", tuple: "list",
             Token: "token", LMContext: "context"}


def annotation_type(ann) -> str:
    """The type a Python annotation names (``any`` if none)."""
    if ann is inspect.Parameter.empty:
        return "any"
    if isinstance(ann, str):
        ann = ann.strip()
        if ann in TYPES:
            return ann
        return {"tuple": "list", "Token": "token", "LMContext": "context"}.get(ann, "any")
    return _PY_TYPES.get(ann, "any")


def join(a: str, b: str) -> str:
    """The type of a variable that is assigned an ``a`` and a ``b``."""
    if a == b:
        return a
    if {a, b} <= {"int", "float", "number"}:
        return "number"
    return "any"


def static_fits(t: str, spec: str) -> bool:
    """Whether a value of static type ``t`` may fit ``spec`` (``any`` fits)."""
    if t == "any" or spec == "any":
        return True
    parts = spec.split("|")
    if "any" in parts or t in parts:
        return True
    if t == "int" and ("float" in parts or "number" in parts):
        return True
    if t == "number" and ("float" in parts or "int" in parts):
        return True
    if t == "float" and "number" in parts:
        return True
    if t == "nextdist" and "dist" in parts:
        return True
    return False


def binop_type(op: str, l: str, r: str) -> str | None:
    """The type of ``l op r`` for ``+ - * / // % **``; None if the operator
    does not take these types."""
    if l == "any" or r == "any":
        return "any"
    if l in NUM and r in NUM:
        if op == "/":
            return "float"
        if "float" in (l, r):
            return "float"
        if l in ("int", "bool") and r in ("int", "bool"):
            return "number" if op == "**" else "int"
        return "number"
    textual = ("str", "token")
    if op == "+":
        if l in textual and r in textual:
            return "str"
        if l == r == "list":
            return "list"
    if op == "*":
        for seq, n in ((l, r), (r, l)):
            if seq in ("str", "list") and n in ("int", "number"):
                return seq
    return None
