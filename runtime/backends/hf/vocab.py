"""Byte and text tables of a tokenizer's vocabulary.

:func:`vocab_tables` gives, for every token id, the raw bytes the token adds to
the output and a display text. It understands

- byte-level BPE (GPT-2, SmolLM2, Llama 3, Qwen): token strings are bytes
  written through GPT-2's byte-to-unicode map (``Ġ`` is a space);
- SentencePiece-style tokens (Llama 2, Mistral): ``▁`` is a space and
  ``<0xNN>`` is the single byte ``NN``;
- anything else, by decoding each token on its own (slow path).

Special tokens (BOS, EOS, pads, chat markers) contribute ``b""`` and ``""``.
Used by :class:`~ppl.runtime.backends.hf.cached_transformer.CachedTransformer`;
no torch, no model.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from ppl.errors import ArgumentError

__all__ = ["vocab_tables", "bytes_to_unicode"]


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


@lru_cache(maxsize=1)
def _byte_level_table() -> dict[int, str]:
    """``str.translate`` table: byte-level character -> latin-1 char of its byte."""
    return {ord(ch): chr(b) for b, ch in bytes_to_unicode().items()}


_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _decoder_types(tokenizer) -> set[str]:
    """Types named in the tokenizers-library decoder of ``tokenizer``."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return set()
    try:
        state = json.loads(decoder.__getstate__())
    except Exception:
        return {type(decoder).__name__}
    found: set[str] = set()

    def walk(x):
        if isinstance(x, dict):
            t = x.get("type")
            if isinstance(t, str):
                found.add(t)
                if t == "Replace" and "▁" in json.dumps(x.get("pattern", "")):
                    found.add("Metaspace")
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(state)
    return found


def _kind(tokenizer, tokens: list[str | None]) -> str:
    types = _decoder_types(tokenizer)
    if "ByteLevel" in types:
        return "byte_level"
    if types & {"Metaspace", "ByteFallback"}:
        return "sentencepiece"
    sample = [t for t in tokens[:5000] if t]
    if any(t.startswith("▁") for t in sample):
        return "sentencepiece"
    if any(("Ġ" in t or "Ċ" in t) for t in sample):
        return "byte_level"
    return "other"


def vocab_tables(tokenizer) -> tuple[list[str], list[bytes], int, frozenset[int]]:
    """``(texts, raw_bytes, eos_token_id, special_ids)`` of ``tokenizer``.

    ``raw_bytes[i]`` is what token ``i`` adds to the output (it need not be
    valid UTF-8 on its own); ``texts[i]`` is that decoded with
    ``errors="replace"``. Special tokens have ``b""`` and ``""``.
    """
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ArgumentError(
            f"tokenizer {type(tokenizer).__name__} has no eos_token_id; pass eos_token_id= explicitly"
        )
    n = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
    special = set(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
    added_plain: dict[int, str] = {}
    for i, at in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(at, "special", False):
            special.add(int(i))
        else:
            added_plain[int(i)] = str(getattr(at, "content", at))
    kind = _kind(tokenizer, tokens)

    raw: list[bytes] = [b""] * n
    if kind == "byte_level":
        table = _byte_level_table()
        for i, t in enumerate(tokens):
            if t is None:
                continue
            try:
                raw[i] = t.translate(table).encode("latin-1")
            except UnicodeEncodeError:  # a character outside the byte map
                raw[i] = t.encode("utf-8")
    elif kind == "sentencepiece":
        for i, t in enumerate(tokens):
            if t is None:
                continue
            m = _BYTE_TOKEN.match(t) if t.startswith("<0x") else None
            raw[i] = bytes([int(m.group(1), 16)]) if m else t.replace("▁", " ").encode("utf-8")
    else:
        for i in range(n):
            raw[i] = tokenizer.decode([i]).encode("utf-8")
    for i, content in added_plain.items():
        raw[i] = content.encode("utf-8")
    for i in special:
        if 0 <= i < n:
            raw[i] = b""
    texts = [b.decode("utf-8", errors="replace") for b in raw]
    return texts, raw, int(eos), frozenset(i for i in special if 0 <= i < n)
