"""A particle's environment, copied for a clone.

Values are immutable, so a clone shares them, except language-model contexts:
each is copied as a handle (``copy.copy(ctx)``) that shares its immutable
token sequence, once per clone (``memo``), so two variables naming one
context still name one context in the clone; tuples holding contexts are
rebuilt around the copies.
"""

from __future__ import annotations

import copy

from ..context import LMContext


def copy_value(v, memo: dict):
    """``v`` for a clone: contexts copied once each (``memo``), the rest shared."""
    if isinstance(v, LMContext):
        new = memo.get(id(v))
        if new is None:
            new = memo[id(v)] = copy.copy(v)
        return new
    if isinstance(v, tuple) and v and any(isinstance(x, (LMContext, tuple)) for x in v):
        return tuple(copy_value(x, memo) for x in v)
    return v


def contexts_in(v, out: list) -> None:
    """Append the contexts in ``v`` (a value, maybe a nested tuple) to ``out``."""
    if isinstance(v, LMContext):
        out.append(v)
    elif isinstance(v, tuple):
        for x in v:
            contexts_in(x, out)
