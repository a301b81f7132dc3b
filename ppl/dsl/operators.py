"""What the steer language's operators do: ``==`` and ``in``, truth,
ordering, arithmetic, indexing and slicing, and the whitelisted attributes
and method of contexts and tokens (nothing else of Python is reachable).

These functions are shared by the running program and by the checker's
constant folding, so a constant ``1 / 0`` is reported before the run with the
same message the run would give. They raise :class:`OpError` with a message
for the user; the caller attaches the place.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from ..constraints import TokenConstraint
from ..context import LMContext
from ..distributions import Token
from .limits import MAX_DEPTH, OpError, budget
from .values import EOS, depth, is_int, is_number, show, type_name

__all__ = ["OpError"]  # with the operators below


def _textual(value: Any) -> str | None:
    """The text of a string or a token, else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, Token):
        return value.text
    return None


def eq(a: Any, b: Any) -> bool:
    """``a == b``: a token equals ``EOS`` when it is the EOS token, a string
    when its text is that string, an int when that is its id."""
    if a is EOS or b is EOS:
        other = b if a is EOS else a
        return other is EOS or (isinstance(other, Token) and other.is_eos)
    if isinstance(a, Token) and not isinstance(b, Token):
        a, b = b, a
    if isinstance(b, Token) and not isinstance(a, Token):
        if isinstance(a, str):
            return not b.is_eos and b.text == a
        if is_int(a):
            return b.id == a
        return False
    if isinstance(a, tuple) and isinstance(b, tuple):
        if len(a) != len(b):
            return False
        budget().charge(len(a))
        return all(eq(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # exotic builtin values
        return a is b


def truth(value: Any) -> bool:
    """Python's truth: empty strings and lists, zero and False are false."""
    if isinstance(value, (bool, int, float, str, tuple)):
        return bool(value)
    if isinstance(value, np.generic):
        return bool(value)
    return value is not None


def contains(container: Any, item: Any) -> bool:
    """``item in container`` for strings (substring, tokens by text) and lists."""
    text = _textual(container)
    if text is not None:
        sub = _textual(item)
        if sub is None:
            raise OpError(
                f"'in' on a {type_name(container)} needs a string on the left, got {show(item)}"
            )
        budget().bulk(len(text))
        return sub in text
    if isinstance(container, tuple):
        budget().charge(len(container))
        return any(eq(item, x) for x in container)
    raise OpError(f"'in' needs a string or a list on the right, got {show(container)}")


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return eq(a, b)
    if op == "!=":
        return not eq(a, b)
    if op == "in":
        return contains(b, a)
    if op == "not in":
        return not contains(b, a)
    fn = _ORDER[op]
    if is_number(a) and is_number(b):
        return bool(fn(a, b))
    ta, tb = _textual(a), _textual(b)
    if ta is not None and tb is not None:
        return bool(fn(ta, tb))
    if isinstance(a, tuple) and isinstance(b, tuple):
        budget().bulk(min(len(a), len(b)))
        try:
            return bool(fn(a, b))
        except TypeError:
            raise OpError(f"cannot order lists holding values of different types with {op}") from None
    raise OpError(f"cannot compare {type_name(a)} and {type_name(b)} with {op}")


def _arith(op: str, a, b):
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        if is_int(a) and is_int(b):  # checked before it is built
            budget().int_bits(abs(a).bit_length() + abs(b).bit_length(), f"{show(a)} * {show(b)}")
        return a * b
    if op == "/":
        return a / b
    if op == "//":
        return a // b
    if op == "%":
        return a % b
    return power(a, b)


def _numbers(op: str, a, b):
    try:
        result = _arith(op, a, b)
    except ZeroDivisionError:
        raise OpError("division by zero" if op == "/" else f"division by zero in {op}") from None
    except OverflowError:
        raise OpError(f"the result of {op} is too large") from None
    if op in ("+", "-") and is_int(result):  # these grow by a bit at a time: checked after
        b = budget()
        if result.bit_length() > b.limits.max_int_bits:
            b.int_bits(result.bit_length())
    return result


def _sequences(op: str, a, b):
    if op == "+":
        ta, tb = _textual(a), _textual(b)
        if ta is not None and tb is not None:
            budget().length(len(ta) + len(tb), "string")
            return ta + tb
        if isinstance(a, tuple) and isinstance(b, tuple):
            budget().length(len(a) + len(b), "list")
            return a + b
    if op == "*":
        seq, n = (a, b) if isinstance(a, (str, tuple)) else (b, a)
        if isinstance(seq, (str, tuple)) and is_int(n):
            budget().length(len(seq) * max(n, 0), "string" if isinstance(seq, str) else "list")
            return seq * n
    return None


def binop(op: str, a: Any, b: Any) -> Any:
    """``a op b`` for ``+ - * / // % **``; every result is checked against
    the running :class:`~ppl.dsl.limits.Limits` before it is built."""
    if is_number(a) and is_number(b):
        return _numbers(op, a, b)
    result = _sequences(op, a, b)
    if result is None:
        raise OpError(f"unsupported operand types for {op}: {type_name(a)} and {type_name(b)}")
    return result


def check_depth(value: tuple) -> tuple:
    """``value`` if its lists are nested at most :data:`MAX_DEPTH` deep."""
    if depth(value) > MAX_DEPTH:
        raise OpError(f"lists nested more than {MAX_DEPTH} deep cannot be built")
    return value


def power(a, b):
    if is_int(a) and is_int(b) and b > 0 and abs(a) > 1:
        bits = b * math.log2(abs(a)) if b < 1 << 64 else math.inf
        budget().int_bits(int(bits) + 1 if bits != math.inf else 1 << 64, f"{show(a)} ** {show(b)}")
    try:
        result = a ** b
    except ZeroDivisionError:
        raise OpError("0 cannot be raised to a negative power") from None
    if isinstance(result, complex):
        raise OpError(f"{show(a)} ** {show(b)} is not a real number")
    return result


def unary(op: str, a: Any) -> Any:
    if op == "not":
        if isinstance(a, TokenConstraint):
            return ~a
        return not truth(a)
    if is_number(a):
        return -a if op == "-" else +a
    raise OpError(f"unsupported operand type for unary {op}: {type_name(a)}")


def index(value: Any, i: Any) -> Any:
    if not isinstance(value, (str, tuple)):
        raise OpError(f"cannot index a {type_name(value)}; only strings and lists can be indexed")
    if not is_int(i) and not isinstance(i, (bool, np.bool_)):
        raise OpError(f"an index must be an int, got {show(i)}")
    n = len(value)
    if not -n <= i < n:
        raise OpError(f"index {i} is out of range for a {type_name(value)} of length {n}")
    return value[i]


def slice_(value: Any, lo: Any, hi: Any) -> Any:
    if not isinstance(value, (str, tuple)):
        raise OpError(f"cannot slice a {type_name(value)}; only strings and lists can be sliced")
    for bound in (lo, hi):
        if bound is not None and not is_int(bound):
            raise OpError(f"slice bounds must be ints, got {show(bound)}")
    result = value[lo:hi]
    budget().bulk(len(result))
    return result


CONTEXT_PROPERTIES = ("text", "tokens")
CONTEXT_METHODS = ("next_token",)
TOKEN_PROPERTIES = ("text", "id", "is_eos")
ATTRIBUTES = frozenset(CONTEXT_PROPERTIES + CONTEXT_METHODS + TOKEN_PROPERTIES)


def attribute(value: Any, name: str) -> Any:
    """The whitelisted properties: ``ctx.text``, ``ctx.tokens``, ``tok.text``,
    ``tok.id``, ``tok.is_eos``. Nothing else of Python is reachable."""
    if isinstance(value, LMContext):
        if name in CONTEXT_PROPERTIES:
            budget().bulk(len(value))
            return value.text if name == "text" else tuple(value.tokens)
        if name in CONTEXT_METHODS:
            raise OpError(f"{name} is a method: write .{name}()")
        raise OpError(
            f"a context has no attribute {name!r}; it has .next_token(), .text and .tokens"
        )
    if isinstance(value, Token):
        if name == "text":
            return value.text
        if name == "id":
            return value.id
        if name == "is_eos":
            return value.is_eos
        raise OpError(f"a token has no attribute {name!r}; it has .text, .id and .is_eos")
    raise OpError(
        f"a {type_name(value)} has no attributes (only contexts and tokens have: "
        "ctx.next_token(), ctx.text, ctx.tokens, tok.text, tok.id, tok.is_eos)"
    )


def method(value: Any, name: str, args: tuple) -> Any:
    if isinstance(value, LMContext) and name == "next_token":
        if args:
            raise OpError(f"next_token() takes no arguments, got {len(args)}")
        if value.finished:
            raise OpError(
                "this context already ended with EOS, so it has no next token; "
                "stop at EOS (e.g. if tok == EOS: finish)"
            )
        return value.next_token()
    if isinstance(value, (LMContext, Token)) and name in ATTRIBUTES:
        raise OpError(f"{name} is a property, not a method: write .{name} without ()")
    if isinstance(value, LMContext):
        raise OpError(f"a context has no method {name!r}; it has .next_token()")
    raise OpError(f"a {type_name(value)} has no methods (only a context has: ctx.next_token())")
