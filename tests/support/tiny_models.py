"""Tiny randomly initialised language models for tests: no download, seeded.

- :func:`tiny_tokenizer`: a byte-level BPE tokenizer (GPT-2 style, 256 byte
  tokens + a few merges + ``<|endoftext|>``), built in code.
- :func:`tiny_sentencepiece_tokenizer`: a SentencePiece-style BPE (``▁`` for
  spaces, ``<0xNN>`` byte fallback), built in code.
- :func:`tiny_llama` / :func:`tiny_gpt2`: ``(model, tokenizer)``; the llama has
  grouped-query attention (4 heads, 2 KV heads); both have logits wider than
  the tokenizer's vocabulary, as padded real models do.
- :func:`tiny_cached`: a ready :class:`CachedTransformer` on one of them.
- :func:`tiny_family`: a fresh tiny model of any family of :data:`FAMILY_CONFIGS`
  (GPT-2, Llama, Qwen2, Qwen3, Mistral, Phi-3, Gemma 2, OPT, GPT-NeoX), with
  config overrides (``sliding_window=16``, ``layer_types=...``).
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


_GQA = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 6,
        "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": False}
FAMILY_CONFIGS = {
    "gpt2": ("GPT2Config", {"n_embd": 48, "n_layer": 2, "n_head": 4, "n_positions": 256}),
    "llama": ("LlamaConfig", _GQA),
    "qwen2": ("Qwen2Config", _GQA),
    "qwen3": ("Qwen3Config", {**_GQA, "head_dim": 8}),
    "mistral": ("MistralConfig", {**_GQA, "sliding_window": None}),
    "phi3": ("Phi3Config", {**_GQA, "pad_token_id": 0, "sliding_window": None}),
    "gemma2": ("Gemma2Config", {**_GQA, "head_dim": 8}),
    "opt": ("OPTConfig", {"hidden_size": 48, "ffn_dim": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
                          "max_position_embeddings": 256, "word_embed_proj_dim": 48}),
    "gpt_neox": ("GPTNeoXConfig", {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
                                   "num_attention_heads": 4, "max_position_embeddings": 256,
                                   "tie_word_embeddings": False}),
}
"""Family -> (transformers config class, the tiny sizes): 2 layers, hidden 48;
grouped-query attention (6 heads over 2 KV heads) where the family has it.
Gemma 2's configs default to alternating sliding-window layers; Mistral's and
Phi-3's windows are off here (pass ``sliding_window=`` to set one)."""


def tiny_family(kind: str, seed: int = 0, vocab_size: int = 320, attn: str | None = None, **overrides):
    """A fresh tiny random ``kind`` model (float32, eval mode), output head
    sharpened as in :func:`tiny_llama`; ``overrides`` go into its config."""
    import transformers

    cls_name, sizes = FAMILY_CONFIGS[kind]
    config = getattr(transformers, cls_name)(vocab_size=vocab_size, bos_token_id=0, eos_token_id=0,
                                             **{**sizes, **overrides})
    torch.manual_seed(seed)
    extra = {"attn_implementation": attn} if attn else {}
    model = transformers.AutoModelForCausalLM.from_config(config, **extra)
    _spread(model, seed)
    return model.eval()


# -- tiny decoder models for the KV-cache tests (tests/backends/test_long_prefix.py, test_many_prefixes.py)

TINY_VOCAB = 300  # the tokenizer's ids; the models' vocabularies are larger (padding rows)


def _gqa_config(kind: str, **extra):
    from transformers import GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    if kind == "gpt2":
        return GPT2Config(vocab_size=320, n_embd=64, n_layer=2, n_head=4, n_positions=1024, **extra)
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}[kind]
    return cls(vocab_size=320, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
               num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=1024,
               tie_word_embeddings=False, **extra)


def gqa_model(kind: str = "llama", seed: int = 0, attn: str = "sdpa", **extra):
    """A fresh tiny model of ``kind`` (GQA: 6 heads over 2 KV heads; GPT-2:
    4 heads), its output head sharpened so that prefixes differ clearly."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_gqa_config(kind, **extra), attn_implementation=attn).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.2)
    return model


def cached_lm(model, **kwargs):
    """``model`` behind a CachedTransformer on the CPU in float32, with the tiny tokenizer."""
    from ppl.runtime.backends.hf.cached_transformer import CachedTransformer

    return CachedTransformer(model, tiny_tokenizer(), device="cpu", dtype=torch.float32, **kwargs)


@torch.no_grad()
def full_logprobs(model, prefix):
    """Next-token log-probs after ``prefix`` from one plain forward pass (the reference)."""
    logits = model(input_ids=torch.tensor([prefix])).logits[0, -1, :TINY_VOCAB]
    return torch.log_softmax(logits.float(), dim=-1).numpy()
