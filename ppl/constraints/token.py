"""Token-level constraints: boolean masks over a model's vocabulary.

A :class:`TokenConstraint` decides, for every token of a vocabulary, whether
that token is allowed. Its mask is computed once per language model (with
numpy over the vocabulary's texts) and cached. Constraints compose:
``a & b`` (both), ``a | b`` (either), ``~a`` (not).

Predicates look at the text a token adds to the output. The end-of-sequence
token adds no text, so ``lacks("e")`` allows it and ``contains("e")`` does not.
"""

from __future__ import annotations

import functools
import re
import weakref
from typing import Callable

import numpy as np

from ..errors import ArgumentError


def _vocab_array(lm) -> np.ndarray:
    """The vocabulary's output texts as a numpy string array (EOS -> "")."""
    texts = list(lm.vocab)
    texts[lm.eos_token_id] = ""
    return np.array(texts, dtype=str)


class TokenConstraint:
    """A set of allowed tokens, given by ``mask_fn(lm) -> bool[vocab_size]``."""

    def __init__(self, mask_fn: Callable[[object], np.ndarray], description: str):
        self._mask_fn = mask_fn
        self.description = description
        self._cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    # a value: shared by every particle, never copied when one is cloned
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    # pickled (to reach another process: a Ray worker) without its mask cache,
    # which is per model object and is rebuilt there on first use
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cache = weakref.WeakKeyDictionary()

    def mask(self, lm) -> np.ndarray:
        """Boolean mask over ``lm``'s vocabulary (cached per model)."""
        cached = self._cache.get(lm)
        if cached is None:
            cached = np.asarray(self._mask_fn(lm), dtype=bool)
            if cached.shape != (lm.vocab_size,):
                raise ArgumentError(
                    f"{self.description}: mask has shape {cached.shape}, "
                    f"expected ({lm.vocab_size},)"
                )
            cached.setflags(write=False)
            self._cache[lm] = cached
        return cached

    def __and__(self, other: "TokenConstraint") -> "TokenConstraint":
        other = as_token_constraint(other)
        return TokenConstraint(
            lambda lm: self.mask(lm) & other.mask(lm), f"({self.description} & {other.description})"
        )

    def __or__(self, other: "TokenConstraint") -> "TokenConstraint":
        other = as_token_constraint(other)
        return TokenConstraint(
            lambda lm: self.mask(lm) | other.mask(lm), f"({self.description} | {other.description})"
        )

    def __invert__(self) -> "TokenConstraint":
        return TokenConstraint(lambda lm: ~self.mask(lm), f"~{self.description}")

    def __repr__(self) -> str:
        return self.description


@functools.lru_cache(maxsize=256)
def lacks(chars: str) -> TokenConstraint:
    """Tokens whose text contains none of the characters in ``chars``.

    Calls with the same argument return the same object, so its masks are
    computed once even when a program calls ``lacks`` at every step."""
    if not isinstance(chars, str) or not chars:
        raise ArgumentError(f"lacks() needs a non-empty string of characters, got {chars!r}")

    def mask(lm):
        texts = _vocab_array(lm)
        ok = np.ones(len(texts), dtype=bool)
        for ch in set(chars):
            ok &= np.char.find(texts, ch) < 0
        return ok

    return TokenConstraint(mask, f"lacks({chars!r})")


@functools.lru_cache(maxsize=256)
def contains(text: str) -> TokenConstraint:
    """Tokens whose text contains ``text`` as a substring (cached like ``lacks``)."""
    if not isinstance(text, str) or not text:
        raise ArgumentError(f"contains() needs a non-empty string, got {text!r}")
    return TokenConstraint(
        lambda lm: np.char.find(_vocab_array(lm), text) >= 0, f"contains({text!r})"
    )


@functools.lru_cache(maxsize=256)
def matches_token(pattern: str) -> TokenConstraint:
    """Tokens whose whole text matches the regular expression ``pattern``
    (Python ``re.fullmatch``; EOS counts as the empty text). The regex runs
    once per token per model and the mask is cached (like ``lacks``)."""
    if not isinstance(pattern, str):
        raise ArgumentError(f"matches_token() needs a regular expression string, got {pattern!r}")
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ArgumentError(f"matches_token({pattern!r}): invalid regular expression: {e}") from None
    full = rx.fullmatch

    def mask(lm):
        texts = list(lm.vocab)
        texts[lm.eos_token_id] = ""
        return np.fromiter((full(t) is not None for t in texts), dtype=bool, count=len(texts))

    return TokenConstraint(mask, f"matches_token({pattern!r})")


@functools.lru_cache(maxsize=1)
def no_special() -> TokenConstraint:
    """Every token except the model's special tokens (``lm.special_ids``, e.g.
    chat-template markers); EOS stays allowed. Models without special tokens
    (``ppl.ToyLM``) allow everything."""

    def mask(lm):
        ok = np.ones(lm.vocab_size, dtype=bool)
        special = [t for t in lm.special_ids if t != lm.eos_token_id]
        ok[special] = False
        return ok

    return TokenConstraint(mask, "no_special()")


@functools.lru_cache(maxsize=1)
def not_eos() -> TokenConstraint:
    """Every token except EOS: the text may not end here."""

    def mask(lm):
        ok = np.ones(lm.vocab_size, dtype=bool)
        ok[lm.eos_token_id] = False
        return ok

    return TokenConstraint(mask, "not_eos()")


def token_predicate(fn: Callable[[str], bool], name: str | None = None) -> TokenConstraint:
    """Tokens whose text satisfies ``fn(text)``, evaluated once per token per
    model *for this object*: build it once (e.g. in ``__init__``), not at
    every step."""
    if not callable(fn):
        raise ArgumentError(f"token_predicate() needs a callable, got {fn!r}")
    label = name or getattr(fn, "__name__", "predicate")

    def mask(lm):
        texts = list(lm.vocab)
        texts[lm.eos_token_id] = ""
        return np.fromiter((bool(fn(t)) for t in texts), dtype=bool, count=len(texts))

    return TokenConstraint(mask, f"token_predicate({label})")


def as_token_constraint(value) -> TokenConstraint:
    """Coerce a constraint, a boolean mask or a predicate on token text."""
    if isinstance(value, TokenConstraint):
        return value
    if isinstance(value, np.ndarray) or (
        isinstance(value, (list, tuple)) and value and isinstance(value[0], (bool, np.bool_))
    ):
        arr = np.asarray(value, dtype=bool)
        return TokenConstraint(lambda lm: arr, f"mask[{int(arr.sum())} of {len(arr)} allowed]")
    if callable(value):
        return token_predicate(value)
    raise ArgumentError(
        "a token constraint must be a ppl.TokenConstraint (e.g. ppl.lacks('e')), "
        f"a boolean mask over the vocabulary, or a predicate on token text; got {value!r}"
    )


__all__ = [
    "no_special",
    "not_eos",
    "TokenConstraint",
    "lacks",
    "contains",
    "matches_token",
    "token_predicate",
    "as_token_constraint",
]
