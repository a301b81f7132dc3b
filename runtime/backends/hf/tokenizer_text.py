"""Text in and out of a Hugging Face tokenizer, for any backend that has one.

:class:`TokenizerText` gives a :class:`~ppl.runtime.lm.LanguageModel` its
vocabulary tables (:func:`~.vocab.vocab_tables`: the bytes and text of every
token, EOS, the special ids) and the protocol's text methods, the same for
every backend built on a transformers tokenizer (the vLLM backend uses it, so
that its tokens, their bytes and therefore every constraint are exactly the
HF backend's):

- ``encode(text)``: the tokenizer's ids, without special tokens;
- ``prompt_ids(prompt)``: those, with BOS in front where the tokenizer adds
  one; an empty prompt is ``[BOS]`` (or ``[EOS]`` for models without a BOS,
  as GPT-2), so that there is a position to predict from;
- ``decode(ids)``: the text, EOS and special tokens dropped.

No torch, no model.
"""

from __future__ import annotations

from typing import Sequence

from ppl.errors import ArgumentError

from .vocab import vocab_tables

__all__ = ["TokenizerText"]


class TokenizerText:
    """Mixin: ``vocab``, ``vocab_bytes``, ``eos_token_id``, ``special_ids``
    and ``encode``/``prompt_ids``/``decode`` from ``self.tokenizer``."""

    tokenizer = None

    def _set_tokenizer_vocab(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab, self.vocab_bytes, self.eos_token_id, self.special_ids = vocab_tables(tokenizer)

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise ArgumentError(f"{self!r} has no tokenizer: encode() is unavailable")
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of ``prompt``, with the BOS token in front when the
        tokenizer adds one (see the module docstring)."""
        ids = self.encode(prompt) if prompt else []
        tok = self.tokenizer
        bos = getattr(tok, "bos_token_id", None) if tok is not None else None
        if bos is not None and (not ids or ids[0] != bos):
            with_special = tok.encode(prompt or "", add_special_tokens=True)
            if with_special[:1] == [bos]:
                ids = [bos] + ids
        if not ids:
            ids = [bos if bos is not None else self.eos_token_id]
        return ids

    def decode(self, token_ids: Sequence[int]) -> str:
        special = self.special_ids
        eos = self.eos_token_id
        ids = [int(t) for t in token_ids if int(t) != eos and int(t) not in special]
        if self.tokenizer is not None:
            return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return b"".join(self.vocab_bytes[i] for i in ids).decode("utf-8", errors="replace")
