"""The language-model protocol every backend implements.

A language model here is a pure function from a token prefix to the
log-probabilities of the next token, ``log p(. | prefix)``, over a fixed
vocabulary ``V`` that contains an end-of-sequence token ``EOS``.

Backends subclass :class:`LanguageModel` and implement one synchronous method,
:meth:`LanguageModel.batch_next_token_logprobs`, that answers many prefixes at
once. Programs never call it directly: they ``await``
:meth:`LanguageModel.next_token_logprobs`, which hands the request to the
running :class:`~ppl.runtime.scheduler.Scheduler` so that all particles waiting
at the same moment are answered by one batched call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from .scheduler import current_scheduler


class LanguageModel(ABC):
    """Base class of language-model backends.

    Subclasses set, in ``__init__``:

    - ``vocab``: list of ``str``, the text of each token id (``""`` is fine for
      special tokens);
    - ``vocab_bytes``: list of ``bytes``, the raw bytes each token contributes
      to the output (byte-level tokenisers may have tokens that are not valid
      UTF-8 on their own);
    - ``eos_token_id``: ``int``.

    and implement :meth:`batch_next_token_logprobs`, :meth:`encode` and
    :meth:`decode`.

    Optional capabilities have defaults here, so callers use them directly
    (never ``getattr(lm, ..., default)``); a backend that has one overrides it:

    - :attr:`name`: shown in reports and stats (default: the class name);
    - :attr:`special_ids`: token ids that are not text (BOS, chat markers;
      EOS may be among them), default ``frozenset()``;
    - :attr:`tokenizer`: the Hugging Face tokenizer behind the vocabulary, or
      ``None`` (constraints then build their tokenizer from ``vocab_bytes``);
    - :attr:`load_info`: what the loader reports (source, device, timings), or
      ``None``;
    - :meth:`pin`: keep a prefix cached while a context uses it (default: no
      cache, returns ``None``);
    - :meth:`prompt_ids` and :meth:`stats` (defaults: ``encode``, ``{}``).
    """

    vocab: list[str]
    vocab_bytes: list[bytes]
    eos_token_id: int

    special_ids: frozenset[int] = frozenset()
    tokenizer: Any = None
    load_info: dict | None = None

    @property
    def name(self) -> str:
        """The model's name (default: the class name)."""
        return self.__dict__.get("_name") or type(self).__name__

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = value

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @abstractmethod
    def batch_next_token_logprobs(
        self, prefixes: Sequence[tuple[int, ...]]
    ) -> list[np.ndarray]:
        """Return ``log p(. | prefix)`` for every prefix, as 1-D float arrays of
        length ``vocab_size``, in the order given. One call is one batch."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (the model's canonical tokenisation)."""

    @abstractmethod
    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of a sequence of token ids (EOS contributes nothing)."""

    def pin(self, prefix: Sequence[int]) -> Any:
        """Keep the cached state of ``prefix`` alive while the returned handle
        is referenced (a context holds it; its clones share it). Backends
        without a cache return ``None``."""
        return None

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids that start a context for ``prompt``; backends that need a
        beginning-of-sequence token add it here."""
        return self.encode(prompt)

    async def next_token_logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        """``log p(. | token_ids)``.

        Inside a running inference the request waits until every particle is
        blocked on the model, and is then answered in one batch with all the
        others; outside one it is answered at once.
        """
        prefix = tuple(int(t) for t in token_ids)
        scheduler = current_scheduler()
        if scheduler is None:
            return self.batch_next_token_logprobs([prefix])[0]
        return await scheduler.request(self, prefix)

    async def next_token_logprobs_many(
        self, prefixes: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """``log p(. | prefix)`` for several prefixes, sent in one batch."""
        rows = [tuple(int(t) for t in p) for p in prefixes]
        scheduler = current_scheduler()
        if scheduler is None:
            return self.batch_next_token_logprobs(rows)
        return await scheduler.request_many(self, rows)

    def context(self, prompt: str = "", **kwargs):
        """A fresh :class:`ppl.LMContext` on this model, starting from ``prompt``."""
        from ppl.context import LMContext  # the language layer builds contexts

        return LMContext(self, prompt, **kwargs)

    def stats(self) -> dict:
        """Counters of work done (backends with caches report more)."""
        return {}

    # A language model is shared by every particle: cloning a particle must
    # never copy it.
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self
