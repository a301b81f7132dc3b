"""What the steer language's values are.

Values are immutable: ``int``, ``float``, ``bool``, ``str``, lists (held as
Python tuples, so a returned list is a hashable result key), tokens
(:class:`ppl.Token`), ``EOS``, and the opaque objects builtins return
(language-model contexts, distributions, token constraints). The only
mutable thing a program touches is a context handle, which the primitives
extend and which cloning copies.

What the operators do with them is :mod:`ppl.dsl.operators`.
"""

from __future__ import annotations

import reprlib
from numbers import Integral, Real
from typing import Any

import numpy as np

from ..constraints import TokenConstraint
from ..context import LMContext
from ..distributions import Distribution, NextToken, Token


class _EOSType:
    """The end-of-sequence marker: ``tok == EOS`` is true when the token is
    the language model's EOS, and ``observe ctx.next_token() = EOS`` observes it."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "EOS"

    def __reduce__(self):
        return (_EOSType, ())


EOS = _EOSType()


def type_name(value: Any) -> str:
    """The steer name of a value's type, for messages."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return "bool"
    if isinstance(value, Integral):
        return "int"
    if isinstance(value, Real):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, tuple):
        return "list"
    if isinstance(value, Token):
        return "token"
    if value is EOS:
        return "EOS"
    if isinstance(value, LMContext):
        return "context"
    if isinstance(value, NextToken):
        return "next-token distribution"
    if isinstance(value, Distribution):
        return "distribution"
    if value is None:
        return "none"
    if isinstance(value, TokenConstraint):
        return "constraint"
    return type(value).__name__


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxtuple, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxother = 3, 8, 8, 60, 60


def show(value: Any, width: int = 40) -> str:
    """A short description of a value for messages: ``str 'abc'`` (however
    big the value: only its start is ever turned into text)."""
    if is_int(value) and value.bit_length() > 200:
        return f"int of {value.bit_length()} bits"
    text = _SHORT.repr(value) if not isinstance(value, Token) else f"token {_SHORT.repr(value.text)}"
    if len(text) > width:
        text = text[: width - 3] + "..."
    return text if isinstance(value, Token) else f"{type_name(value)} {text}"


def short(value: Any) -> str:
    """``repr(value)`` cut short (only its start is ever made)."""
    if is_int(value) and value.bit_length() > 200:
        return f"<int of {value.bit_length()} bits>"
    return _SHORT.repr(value)


def brief(text: str, limit: int = 160) -> str:
    """``text`` if it has at most ``limit`` characters, else its head and
    tail around the number of characters left out."""
    if len(text) <= limit:
        return text
    keep = max((limit - 24) // 2, 8)
    return f"{text[:keep]}... [{len(text) - 2 * keep} more characters] ...{text[-keep:]}"


def freeze(value: Any) -> Any:
    """A value as the language holds it: lists become tuples, numpy scalars
    Python scalars."""
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    if isinstance(value, tuple):
        if any(isinstance(v, (list, tuple, np.generic)) for v in value):
            return tuple(freeze(v) for v in value)
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def depth(value: Any, memo: dict | None = None) -> int:
    """How deep lists nest in ``value`` (0 for a non-list; each list is
    visited once, however often it is shared)."""
    if not isinstance(value, tuple):
        return 0
    memo = {} if memo is None else memo
    d = memo.get(id(value))
    if d is None:
        d = memo[id(value)] = 1 + max((depth(v, memo) for v in value if isinstance(v, tuple)), default=0)
    return d


def is_number(value: Any) -> bool:
    return isinstance(value, (Integral, Real)) and not isinstance(value, (str, Token))


def is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))
