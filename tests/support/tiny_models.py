"""Tiny randomly initialised language models for tests: no download, seeded.

- :func:`tiny_tokenizer`: a byte-level BPE tokenizer (GPT-2 style, 256 byte
  tokens + a few merges + ``<|endoftext|>``), built in code.
- :func:`tiny_sentencepiece_tokenizer`: a SentencePiece-style BPE (``▁`` for
  spaces, ``<0xNN>`` byte fallback), built in code.
- :func:`tiny_llama` / :func:`tiny_gpt2`: ``(model, tokenizer)``; the llama has
  grouped-query attention (4 heads, 2 KV heads); both have logits wider than
  the tokenizer's vocabulary, as padded real models do.
- :func:`tiny_cached`: a ready :class:`CachedTransformer` on one of them.
"""

from __future__ import annotations

from functools import lru_cache

import torch

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "then the other one said that there is nothing in the thing",
    "hello world, hello there; a steering program draws tokens",
    "sequential monte carlo with particles and weights and resampling",
] * 4

EOS = "<|endoftext|>"


@lru_cache(maxsize=None)
def _byte_level_backend(vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[EOS],
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok.to_str()


def tiny_tokenizer(vocab_size: int = 300):
    """A GPT-2-style byte-level BPE tokenizer with ``vocab_size`` tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_byte_level_backend(vocab_size))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, bos_token=EOS)


def tiny_sentencepiece_tokenizer():
    """A Llama-2-style tokenizer: ``▁`` marks spaces, bytes fall back to
    ``<0xNN>``; specials ``<unk>``, ``<s>``, ``</s>``; adds ``<s>`` in front."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in ["▁"] + list("abcdefghijklmnopqrstuvwxyz") + ["▁t", "he", "▁the", "▁a"]:
        vocab[piece] = len(vocab)
    merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "a")]
    model = models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_llama(seed: int = 0, vocab_size: int = 320, layers: int = 2):
    """``(model, tokenizer)``: a 2-layer Llama, hidden 64, 4 heads, 2 KV heads."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    _spread(model, seed)
    return model.eval(), tokenizer


def tiny_gpt2(seed: int = 0, vocab_size: int = 320, layers: int = 2):
    """``(model, tokenizer)``: a 2-layer GPT-2, hidden 64, 4 heads."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny_tokenizer()
    config = GPT2Config(
        vocab_size=vocab_size,
        n_embd=64,
        n_layer=layers,
        n_head=4,
        n_positions=256,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    _spread(model, seed)
    return model.eval(), tokenizer


def _spread(model, seed: int) -> None:
    """Scale the output head up so that next-token distributions are far from
    uniform: differences between positions then show in the log-probs."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.2)


def tiny_cached(kind: str = "llama", seed: int = 0, **kwargs):
    """A :class:`CachedTransformer` on CPU float32 over a tiny model."""
    from ppl.runtime.backends.hf.cached_transformer import CachedTransformer

    build = {"llama": tiny_llama, "gpt2": tiny_gpt2}[kind]
    model, tokenizer = build(seed)
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("dtype", torch.float32)
    return CachedTransformer(model, tokenizer, name=f"tiny-{kind}", **kwargs)
