"""Soft constraints: a function of the text as a log weight.

``pot = ppl.potential(fn)`` wraps ``fn(text) -> log weight`` (a float; ``True``
and ``False`` mean ``0`` and ``-inf``; ``fn`` may be ``async``). Use it with
``factor`` or ``twist``::

    short = ppl.potential(lambda text: -0.1 * len(text))
    polite = ppl.potential(lambda text: 0.0 if "please" in text else -2.0)
    score = short * polite                   # product: log weights add
    ...
    self.twist(await score(self.ctx))        # a context or a string

``batched=True`` says ``fn`` takes a list of texts and returns a list of log
weights; ``await pot.many(texts)`` then makes one call (otherwise one per text).
Every potential carries an executable contract, :meth:`Potential.check`.

**Prefix and complete scores.** A soft preference on the finished text,
``factor(log phi(x))`` only at the end, makes SMC steering favour the
particles that have *not* finished yet (they have not paid their score):
the finished ones lose every resampling and a run can end with the
unfinished, unpenalised particles only. ``ppl.potential(fn, prefix=g)``
gives a potential a second score for unfinished texts, ``log g(x_{1:t})``, an
estimate of what the finished text will score, and ``ppl.apply_potential(pot, ctx,
finished=...)`` (or ``Model.apply_potential``) applies it the right way: while the text
grows, ``twist(log g(x_{1:t}))`` (taken back at the next twist and at the
end, so the intermediate targets change and the final one does not); when
the particle finishes, ``factor(log phi(x))``. The target is
``p(x) phi(x)`` whatever ``g`` is; a good ``g`` only lowers the variance.
``prefix=True`` uses ``fn`` itself on prefixes (right when the score of a
prefix predicts the score of its completions, e.g. a length penalty). A
prefix score of ``-inf`` kills the particle, so use it only where no
completion can score above ``-inf``.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Sequence

from ..errors import ArgumentTypeError, WeightError

__all__ = ["Potential", "potential"]


def _as_log_weight(value: Any, where: str) -> float:
    if isinstance(value, bool):
        return 0.0 if value else -math.inf
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise WeightError(f"{where} returned {value!r}; a potential returns a log weight (a float) or a bool") from None
    if math.isnan(x) or x == math.inf:
        raise WeightError(f"{where} returned {x!r}; log weights must be finite or -inf")
    return x


def _text_of(x) -> str:
    if isinstance(x, str):
        return x
    text = getattr(x, "text", None)  # an LMContext
    if isinstance(text, str):
        return text
    raise ArgumentTypeError(f"a potential scores a string or an LM context, got {x!r}")


async def _resolve(value):
    return await value if inspect.isawaitable(value) else value


class Potential:
    """``log phi(text)``; ``a * b`` is the product ``phi_a phi_b``."""

    def __init__(self, fn: Callable | None, name: str | None = None, *, batched: bool = False, parts=(),
                 prefix: "Callable | bool | None" = None):
        if fn is not None and not callable(fn):
            raise ArgumentTypeError(f"potential() needs a function of the text, got {fn!r}")
        if prefix is not None and not isinstance(prefix, bool) and not callable(prefix):
            raise ArgumentTypeError(f"prefix= is a function of the text, True or None, not {prefix!r}")
        self.fn = fn
        self._prefix = prefix
        self.batched = bool(batched)
        self.parts: tuple[Potential, ...] = tuple(parts)
        self.name = name or (getattr(fn, "__name__", "fn") if fn is not None else " * ".join(p.name for p in parts))

    async def many(self, texts: Sequence) -> list[float]:
        """Log weights of several texts (or contexts): one call of ``fn`` when
        ``batched``, else one per text."""
        texts = [_text_of(t) for t in texts]
        if self.parts:
            total = [0.0] * len(texts)
            for p in self.parts:
                for i, v in enumerate(await p.many(texts)):
                    total[i] = -math.inf if v == -math.inf or total[i] == -math.inf else total[i] + v
            return total
        if self.batched:
            values = list(await _resolve(self.fn(texts)))
            if len(values) != len(texts):
                raise WeightError(f"potential {self.name} returned {len(values)} log weights for {len(texts)} texts")
        else:
            values = [await _resolve(self.fn(t)) for t in texts]
        return [_as_log_weight(v, f"potential {self.name}") for v in values]

    async def __call__(self, text) -> float:
        """``log phi(text)`` of a string or a context's text."""
        return (await self.many([text]))[0]

    @property
    def has_prefix(self) -> bool:
        """Whether this potential (or a factor of its product) scores prefixes."""
        return any(p.has_prefix for p in self.parts) if self.parts else self._prefix not in (None, False)

    async def prefix_score(self, text) -> float:
        """``log g(text)`` for an unfinished text (see the module docstring):
        the ``prefix=`` function, ``fn`` itself for ``prefix=True``, ``0``
        without one; a product adds its factors' prefix scores."""
        if self.parts:
            total = 0.0
            for p in self.parts:
                v = await p.prefix_score(text)
                total = -math.inf if v == -math.inf or total == -math.inf else total + v
            return total
        if self._prefix in (None, False):
            return 0.0
        if self._prefix is True:
            return await self(text)
        return _as_log_weight(await _resolve(self._prefix(_text_of(text))), f"the prefix score of {self.name}")

    # a value: shared by every particle, never copied when one is cloned
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    def __mul__(self, other: "Potential") -> "Potential":
        other = as_potential(other)
        parts = (self.parts or (self,)) + (other.parts or (other,))
        return Potential(None, parts=parts)

    __rmul__ = __mul__

    async def check(self, texts: Sequence[str]) -> list[float]:
        """The contract every potential meets, run on ``texts``: each value is a
        float that is finite or ``-inf``, a batch equals its items one at a
        time, and a product equals the sum of its factors' log weights.
        Returns the log weights; raises ``AssertionError`` on a breach."""
        batch = await self.many(texts)
        for t, v in zip(texts, batch):
            single = await self(t)
            assert isinstance(v, float) and not math.isnan(v) and v != math.inf, (self.name, t, v)
            assert single == v or (math.isinf(single) and math.isinf(v)), (
                f"potential {self.name}: batch value {v} != single value {single} for {t!r}"
            )
        if self.parts:
            sums = [0.0] * len(texts)
            for p in self.parts:
                for i, v in enumerate(await p.many(texts)):
                    sums[i] += v
            for v, s in zip(batch, sums):
                assert v == s or (v == -math.inf and s == -math.inf), (self.name, v, s)
        return batch

    def __repr__(self) -> str:
        return f"potential({self.name})"


def as_potential(x) -> Potential:
    if isinstance(x, Potential):
        return x
    if callable(x):
        return Potential(x)
    raise ArgumentTypeError(f"cannot combine a potential with {x!r}")


def potential(fn: Callable | None = None, *, name: str | None = None, batched: bool = False,
              prefix: "Callable | bool | None" = None):
    """Wrap ``fn(text) -> log weight`` (sync or async) as a :class:`Potential`;
    usable as a decorator, with or without arguments. ``prefix``: the score
    of unfinished texts (a function, or ``True`` for ``fn`` itself), applied
    as a twist by ``ppl.apply_potential`` (see the module docstring)."""
    if fn is None:
        return lambda f: Potential(f, name, batched=batched, prefix=prefix)
    return Potential(fn, name, batched=batched, prefix=prefix)
