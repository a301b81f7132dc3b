"""The exact-answer SMC tests on a CachedTransformer-backed toy model.

A tiny randomly initialised Llama with a four-token vocabulary (``a b c
<eos>``) answers every request through the CachedTransformer (prefix trie,
batched forward passes). The exact answers are computed independently, from
plain full forward passes of each prefix (no cache), by enumeration.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
import torch
from support.stats import check_mean, check_posterior
from support.toy_programs import VOCAB, Latent, Scored, TwistedLipogram

import ppl

M = 60


@lru_cache(maxsize=None)
def tiny_four_token_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=4, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        eos_token_id=3, bos_token_id=3, tie_word_embeddings=False,
    )
    torch.manual_seed(7)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # sharpen the output layer so that the probabilities differ
        model.lm_head.weight.mul_(40.0)
    return model


def cached_lm():
    from ppl.runtime.backends.hf.cached_transformer import CachedTransformer

    return CachedTransformer(
        tiny_four_token_llama(), None, device="cpu", vocab=VOCAB,
        vocab_bytes=[b"a", b"b", b"c", b""], eos_token_id=3,
    )


class PlainForward:
    """The same model without any cache: one full forward per prefix."""

    vocab, eos_token_id = VOCAB, 3

    @lru_cache(maxsize=None)
    def next_probs(self, prefix):
        with torch.no_grad():
            logits = tiny_four_token_llama()(torch.tensor([prefix])).logits[0, -1]
        return torch.softmax(logits.double(), -1).numpy()

    def decode(self, ids):
        return "".join(VOCAB[t] for t in ids if t != 3)


def exact(program):
    """``program.exact`` on the plain model, strings starting after the
    prompt the CachedTransformer gives an empty prompt (EOS, as in GPT-2)."""
    assert cached_lm().prompt_ids("") == [3]
    return program.exact(PlainForward(), prompt_ids=(3,))


def test_cached_model_matches_plain_forward():
    lm = cached_lm()
    plain = PlainForward()
    rows = lm.batch_next_token_logprobs([(3,), (3, 0), (3, 0, 1), (3, 2, 2, 1)])
    for prefix, row in zip([(3,), (3, 0), (3, 0, 1), (3, 2, 2, 1)], rows):
        assert np.allclose(np.exp(row), plain.next_probs(prefix), atol=1e-5)
    # the exact targets are far from uniform, so the tests below can tell
    assert max(plain.next_probs((3,))) > 0.4


@pytest.mark.parametrize("program", [TwistedLipogram, Scored, Latent],
                         ids=lambda p: p.__name__)
@pytest.mark.parametrize("method,kw", [("steer", {"n_particles": 6, "expand": 3}),
                                       ("smc", {"n_particles": 6, "ess_threshold": 1.0})],
                         ids=["steer-6x3", "smc-always"])
def test_exact_answers_through_the_cache(program, method, kw):
    Z, post = exact(program)
    lm = cached_lm()
    runs = []
    for m in range(M):
        r = ppl.infer(program(lm), method=method, seed=20_000 + m, **kw)
        runs.append((math.exp(r.log_Z), r.posterior(key=lambda p: p.key())))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, post, kw["n_particles"])
    stats = lm.stats()
    assert stats["forward_passes"] > 0 and stats["tokens_computed"] <= stats["tokens_requested"]
