"""A language model given by a Python function, for exactly solvable tests.

``ToyLM(vocab, next_probs, eos)`` has the tokens ``vocab`` (strings) and the
next-token distribution ``p(. | prefix) = next_probs(prefix)``, a probability
vector over ``vocab`` for a tuple of token ids. With a few tokens and short
programs every string can be enumerated, so ``Z`` and the posterior of a
steering program can be computed exactly and compared with SMC.

A ToyLM can carry a chat template (``chat_template=``, a function of the
messages and ``add_generation_prompt``; :func:`simple_chat_template` makes
one from two format strings) so that ``lm.chat(...)`` can be tested without
a real tokenizer.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ppl.errors import ArgumentError

from ..lm import LanguageModel
from .registry import register_backend


def simple_chat_template(turn: str = "<{role}>{content}", generation: str = "<assistant>"):
    """A chat template: each message written as ``turn.format(role=, content=)``,
    then ``generation`` when a generation prompt is asked for."""

    def template(messages: list[dict], add_generation_prompt: bool = True) -> str:
        text = "".join(turn.format(role=m["role"], content=m["content"]) for m in messages)
        return text + (generation if add_generation_prompt else "")

    return template


class ToyLM(LanguageModel):
    """A language model from ``next_probs(prefix_ids) -> probabilities``.

    ``eos`` names the end-of-sequence token, by its text or its id. Text is
    tokenised greedily, longest token first; EOS never appears in text.
    ``chat_template`` (optional) is what :meth:`apply_chat_template` uses.
    """

    def __init__(
        self,
        vocab: Sequence[str],
        next_probs: Callable[[tuple[int, ...]], Sequence[float]],
        eos: str | int = "<eos>",
        chat_template: Callable[[list[dict], bool], str] | None = None,
    ):
        vocab = list(vocab)
        if len(vocab) < 2:
            raise ArgumentError(f"ToyLM needs at least two tokens (one is EOS), got {vocab!r}")
        if len(set(vocab)) != len(vocab):
            raise ArgumentError(f"ToyLM vocabulary has repeated tokens: {vocab!r}")
        if isinstance(eos, str):
            if eos not in vocab:
                raise ArgumentError(f"EOS token {eos!r} is not in the vocabulary {vocab!r}")
            eos_id = vocab.index(eos)
        else:
            eos_id = int(eos)
            if not 0 <= eos_id < len(vocab):
                raise ArgumentError(f"EOS id {eos_id} is outside the vocabulary of {len(vocab)}")
        if not callable(next_probs):
            raise ArgumentError("next_probs must be a function from a tuple of token ids to probabilities")
        for i, t in enumerate(vocab):
            if i != eos_id and t == "":
                raise ArgumentError(f"token {i} has empty text; only EOS may be empty")
        self.vocab = vocab
        self.eos_token_id = eos_id
        self.vocab_bytes = [b"" if i == eos_id else t.encode("utf-8") for i, t in enumerate(vocab)]
        self.next_probs = next_probs
        self._by_length = sorted(
            (i for i in range(len(vocab)) if i != eos_id), key=lambda i: -len(vocab[i])
        )
        if chat_template is not None and not callable(chat_template):
            raise ArgumentError("chat_template must be a function (messages, add_generation_prompt) -> str")
        self.chat_template = chat_template
        self.calls = 0
        self.rows = 0

    def apply_chat_template(self, messages, *, add_generation_prompt: bool = True) -> str:
        if self.chat_template is None:
            return super().apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        return self.chat_template(list(messages), add_generation_prompt)

    def batch_next_token_logprobs(self, prefixes):
        self.calls += 1
        self.rows += len(prefixes)
        return [self._logprobs(tuple(p)) for p in prefixes]

    def _logprobs(self, prefix: tuple[int, ...]) -> np.ndarray:
        p = np.asarray(self.next_probs(prefix), dtype=np.float64)
        if p.shape != (self.vocab_size,):
            raise ArgumentError(
                f"next_probs{prefix} returned shape {p.shape}, expected ({self.vocab_size},)"
            )
        if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-6:
            raise ArgumentError(
                f"next_probs{prefix} must return non-negative probabilities summing to 1, got {p}"
            )
        with np.errstate(divide="ignore"):
            return np.log(p / p.sum())

    def encode(self, text: str) -> list[int]:
        ids, pos = [], 0
        while pos < len(text):
            for i in self._by_length:
                if text.startswith(self.vocab[i], pos):
                    ids.append(i)
                    pos += len(self.vocab[i])
                    break
            else:
                raise ArgumentError(
                    f"cannot tokenise {text!r} at position {pos} ({text[pos:]!r}) "
                    f"with the vocabulary {self.vocab!r}"
                )
        return ids

    def decode(self, token_ids) -> str:
        return "".join(self.vocab[t] for t in token_ids if t != self.eos_token_id)

    def stats(self) -> dict:
        return {"calls": self.calls, "rows": self.rows}

    def __repr__(self) -> str:
        return f"ToyLM({self.vocab!r}, eos={self.vocab[self.eos_token_id]!r})"


@register_backend("toy")
def load_toy(
    name_or_path=None,
    *,
    vocab: Sequence[str] = ("a", "b", "c", "<eos>"),
    next_probs: Callable[[tuple[int, ...]], Sequence[float]] | None = None,
    eos: str | int = "<eos>",
    chat_template: Callable[[list[dict], bool], str] | None = None,
) -> ToyLM:
    """A :class:`ToyLM` over ``vocab``; ``next_probs`` defaults to uniform.

    The toy backend builds its model from these options and takes no name or
    path (``name_or_path`` must be None)."""
    if name_or_path is not None:
        raise ArgumentError(
            f"the toy backend takes no model name or path (got {name_or_path!r}); "
            "pass vocab= and next_probs= instead"
        )
    vocab = list(vocab)
    if next_probs is None:
        uniform = [1.0 / max(len(vocab), 1)] * len(vocab)

        def next_probs(prefix):
            return uniform

    return ToyLM(vocab, next_probs, eos, chat_template)
