"""Every model family is exact through the KV cache, or refused at load time.

For each family of :data:`ppl.runtime.backends.hf.families.FAMILIES`, a tiny
random model built from its config (no download; seeded; 2 layers, vocab
320 of which the tokenizer uses 300) answers SMC-like batches through the
CachedTransformer: shared prefixes, mixed lengths (rows extend by 1-3
tokens), resampling (random ancestors, duplicates, reordering), rows asking
for shorter cached prefixes and an unrelated prompt in the same batch. Each
answer must equal a plain full forward pass of that prefix alone (no cache,
batch of one) within ``TOL = 1e-4`` in float32 (log-probs of order 10; the
differences seen are about 2e-6), on the cascade path where the family has
it and on the plain path (``cascade=False``). Configurations that are not
exact (sliding-window layers) and untested families are refused with a
message naming the family and the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ppl.runtime.backends.hf.cached_transformer import CachedTransformer
from ppl.runtime.backends.hf.cascade_attention import SUPPORTED_MODEL_TYPES
from ppl.runtime.backends.hf.families import FAMILIES, UnsupportedFamilyError, refusal
from support.tiny_models import FAMILY_CONFIGS, tiny_family, tiny_tokenizer

from ppl.errors import ModelLoadError

V = 300
TOL = 1e-4
DOCS = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"

CASES = [(k, None) for k in FAMILY_CONFIGS] + [(k, False) for k in sorted(SUPPORTED_MODEL_TYPES & set(FAMILY_CONFIGS))]
EXACT_OVERRIDES = {"gemma2": {"layer_types": ["full_attention"] * 2}}  # soft-capping kept on


def cached(model, **kwargs) -> CachedTransformer:
    return CachedTransformer(model, tiny_tokenizer(), device="cpu", dtype=torch.float32, **kwargs)


@torch.no_grad()
def plain_logprobs(model, prefix) -> np.ndarray:
    logits = model(input_ids=torch.tensor([prefix])).logits[0, -1, :V]
    return torch.log_softmax(logits.float(), dim=-1).numpy()


def _tokens(rng, n: int) -> tuple[int, ...]:
    return tuple(int(t) for t in rng.integers(V, size=n))


def smc_batches(rng, n_rows: int = 5, steps: int = 6):
    """Batches as an SMC run asks for them (see the module docstring)."""
    prompt, other = _tokens(rng, int(rng.integers(8, 30))), _tokens(rng, 7)
    rows = [prompt + _tokens(rng, int(rng.integers(1, 4))) for _ in range(n_rows)]
    for step in range(steps):
        extra = [rows[0][:-1]] if step % 2 else [other + _tokens(rng, step)]
        yield rows + extra
        ancestors = rng.permutation(rng.integers(len(rows), size=n_rows))
        rows = [rows[a] + _tokens(rng, int(rng.integers(1, 4))) for a in ancestors]


@pytest.mark.parametrize("kind,cascade", CASES)
def test_cached_logprobs_equal_a_plain_forward(kind, cascade):
    model = tiny_family(kind, seed=1, **EXACT_OVERRIDES.get(kind, {}))
    lm = cached(model, cascade=cascade)
    assert lm.uses_cascade == (cascade is None and kind in SUPPORTED_MODEL_TYPES)
    rng = np.random.default_rng(sorted(FAMILY_CONFIGS).index(kind))
    worst, spread = 0.0, 0.0
    for batch in smc_batches(rng):
        got = lm.batch_next_token_logprobs(batch)
        lm.check_integrity()
        for prefix, lp in zip(batch, got):
            expected = plain_logprobs(model, prefix)
            worst = max(worst, float(np.abs(lp - expected).max()))
            spread = max(spread, float(np.abs(expected - plain_logprobs(model, batch[0])).max()))
    assert worst < TOL, (kind, cascade, worst)
    assert spread > 0.1  # the prefixes' distributions differ: a wrong position would show
    assert lm.stats()["tokens_reused"] > 0
    assert (lm.stats()["cascade_passes"] > 0) == lm.uses_cascade


@pytest.mark.parametrize("kind,overrides,words", [
    ("gemma2", {}, ["Gemma 2", "sliding_attention", "1 of 2 layers", "sliding_window=4096"]),
    ("mistral", {"sliding_window": 16}, ["Mistral", "sliding_window=16", "last 16 tokens"]),
    ("phi3", {"sliding_window": 2047}, ["Phi-3", "sliding_window=2047"]),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 1},
     ["Qwen2", "sliding_attention"]),
])
def test_sliding_window_configurations_are_refused_at_load_time(kind, overrides, words):
    model = tiny_family(kind, **overrides)
    with pytest.raises(UnsupportedFamilyError) as info:
        cached(model)
    message = str(info.value)
    assert "cannot serve" in message and "full-attention caches only" in message
    for word in words:
        assert word in message
    assert isinstance(info.value, ModelLoadError) and isinstance(info.value, NotImplementedError)


def test_an_untested_family_is_refused_naming_it():
    from transformers import BloomConfig, BloomForCausalLM  # ALiBi positions

    model = BloomForCausalLM(BloomConfig(vocab_size=320, hidden_size=32, n_layer=1, n_head=2)).eval()
    with pytest.raises(UnsupportedFamilyError, match="model type 'bloom' has not been tested.*register_family"):
        cached(model)


def test_the_exact_configurations_pass_the_check():
    for kind in FAMILY_CONFIGS:
        assert refusal(tiny_family(kind, **EXACT_OVERRIDES.get(kind, {}))) is None, kind
    assert set(FAMILY_CONFIGS) == set(FAMILIES)  # every registered family is tested above


def test_the_docs_table_lists_every_family():
    text = DOCS.read_text()
    assert "## Model families" in text
    section = text.split("## Model families", 1)[1].split("\n## ", 1)[0]
    for fam in FAMILIES.values():
        assert f"| {fam.title} |" in section, fam.title
