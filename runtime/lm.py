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

from ppl.errors import ArgumentError

from .scheduler import current_scheduler

ROLES = ("system", "user", "assistant")


def chat_messages(messages, system: str | None = None) -> list[dict]:
    """``messages`` as a checked list of ``{"role", "content"}`` dicts: a
    string is one user message; ``system`` is put first as the system
    message. ``ArgumentError`` naming the bad message otherwise."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, (list, tuple)):
        raise ArgumentError(f"chat messages must be a string or a list of {{'role', 'content'}} dicts, "
                            f"got {type(messages).__name__}")
    out = [] if system is None else [{"role": "system", "content": system}]
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ArgumentError(
                f"chat message #{i + 1} must be a dict with 'role' (one of {', '.join(ROLES)}) and "
                f"'content' (a string), got {m!r}"
            )
        out.append({"role": m["role"], "content": m["content"]})
    if system is not None and any(m["role"] == "system" for m in out[1:]):
        raise ArgumentError("system= was given and the messages have a system message too: give one")
    if not out:
        raise ArgumentError("chat messages are empty: give at least one message")
    return out


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
    - :meth:`prompt_ids` and :meth:`stats` (defaults: ``encode``, ``{}``);
    - :meth:`apply_chat_template`: chat messages as the model's prompt text
      (default: the Hugging Face tokenizer's chat template; a model without
      one raises :class:`~ppl.errors.ArgumentError` naming the model) and
      :meth:`chat_prompt_ids`, that text's token ids (default: ``encode``,
      no BOS added: the template writes its own special tokens).
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
        prefix = tuple(map(int, token_ids))
        scheduler = current_scheduler()
        if scheduler is None:
            return self.batch_next_token_logprobs([prefix])[0]
        return await scheduler.request(self, prefix)

    async def next_token_logprobs_many(
        self, prefixes: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """``log p(. | prefix)`` for several prefixes, sent in one batch."""
        rows = [tuple(map(int, p)) for p in prefixes]
        scheduler = current_scheduler()
        if scheduler is None:
            return self.batch_next_token_logprobs(rows)
        return await scheduler.request_many(self, rows)

    #: set by :meth:`use_chat`: ``{"system": ...}`` while plain prompts become chat prompts
    chat_defaults: dict | None = None

    def context(self, prompt: str = "", **kwargs):
        """A fresh :class:`ppl.LMContext` on this model, starting from ``prompt``
        (after :meth:`use_chat`, a non-empty ``prompt`` is a user message under
        the chat template, as :meth:`chat` builds it)."""
        from ppl.context import LMContext  # the language layer builds contexts

        if self.chat_defaults is not None and prompt and "prompt_ids" not in kwargs:
            return self.chat(prompt, **self.chat_defaults, **kwargs)
        return LMContext(self, prompt, **kwargs)

    def use_chat(self, enabled: bool = True, system: str | None = None) -> None:
        """Make every later ``lm.context(prompt)`` with a non-empty prompt a
        chat prompt: ``lm.chat(prompt, system=system)`` (what ``ppl run --chat``
        is for: gallery programs written with plain prompts then talk to an
        instruction-tuned model as it expects). ``enabled=False`` turns it off.
        Checks at once that the model has a chat template."""
        if not enabled:
            self.chat_defaults = None
            return
        self.apply_chat_template(chat_messages("", system))  # a model without one fails here
        self.chat_defaults = {"system": system}

    def apply_chat_template(self, messages: list[dict], *, add_generation_prompt: bool = True) -> str:
        """The prompt text of chat ``messages`` (checked ``{"role", "content"}``
        dicts) under this model's chat template, ending with the assistant
        turn's opening when ``add_generation_prompt``. Default: the Hugging
        Face tokenizer's ``apply_chat_template``."""
        tok = self.tokenizer
        if tok is None or not getattr(tok, "chat_template", None):
            raise ArgumentError(
                f"{self.name} has no chat template, so lm.chat() cannot build a prompt: use an "
                "instruction-tuned (chat) model, or lm.context(prompt) with a plain-text prompt"
            )
        return tok.apply_chat_template(list(messages), tokenize=False,
                                       add_generation_prompt=add_generation_prompt)

    def chat_prompt_ids(self, text: str) -> list[int]:
        """Token ids of a templated chat prompt (``encode``: the template
        already holds its special tokens, BOS included where it has one)."""
        return self.encode(text)

    def chat(self, messages, system: str | None = None, add_generation_prompt: bool = True, **kwargs):
        """A fresh :class:`ppl.LMContext` whose prompt is chat ``messages`` (a
        string: one user message; or a list of ``{"role", "content"}`` dicts)
        under the model's chat template, after a ``system`` message if given;
        with ``add_generation_prompt`` the prompt ends where the assistant's
        reply begins, so what the context generates is that reply. ``kwargs``
        go to the context (``constraint=``)."""
        text = self.apply_chat_template(chat_messages(messages, system),
                                        add_generation_prompt=add_generation_prompt)
        from ppl.context import LMContext

        return LMContext(self, text, prompt_ids=self.chat_prompt_ids(text), **kwargs)

    def stats(self) -> dict:
        """Counters of work done (backends with caches report more)."""
        return {}

    # A language model is shared by every particle: cloning a particle must
    # never copy it.
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self
