"""Long shared prefixes: the persistent shared-prefix buffer and cascade attention.

Every check compares the CachedTransformer's log-probs with a plain full
forward pass of the whole prefix (no cache), or the cascade path with the
plain path (``cascade=False``) on the same weights: float32 round-off only.
Tiny random models from configs; no download.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ppl.runtime.backends.hf.cascade_attention import CascadeBatch, cascade_support
from support.tiny_models import cached_lm, full_logprobs, gqa_model

V = 300
TOL = 2e-5  # float32 round-off of a 2-layer model (log-probs of order 10)


tiny = gqa_model
cached = cached_lm


def particle_walk(rng, prompt, n_rows: int, steps: int):
    """Batches of an SMC-like run: rows extend by one token, then are
    resampled (random ancestors, duplicates included) and reordered."""
    rows = [prompt + (int(rng.integers(V)),) for _ in range(n_rows)]
    for _ in range(steps):
        yield rows
        ancestors = rng.integers(len(rows), size=n_rows)
        rows = [rows[a] + (int(rng.integers(V)),) for a in ancestors]
        if rng.random() < 0.3:  # a row that asks for a shorter, already-cached prefix
            rows.append(rows[0][:-2])


def _prompt(rng, n: int) -> tuple[int, ...]:
    return tuple(int(t) for t in rng.integers(V, size=n))


@pytest.mark.parametrize("budget_slots", [None, 320])
def test_long_shared_prefix_matches_full_forward(budget_slots):
    model = tiny("llama")
    lm = cached(model)
    if budget_slots is not None:  # the prompt fits; old branches are evicted
        lm.memory_budget_bytes = budget_slots * lm._bytes_per_slot
    assert lm.uses_cascade
    rng = np.random.default_rng(0)
    prompt = _prompt(rng, 300)
    for rows in particle_walk(rng, prompt, n_rows=6, steps=8):
        got = lm.batch_next_token_logprobs(rows)
        lm.check_integrity()
        for r, lp in zip(rows, got):
            np.testing.assert_allclose(lp, full_logprobs(model, r), atol=TOL)
    st = lm.stats()
    assert st["cascade_passes"] >= 6
    if budget_slots is not None:
        assert st["evictions"] > 0


def test_divergent_prompts_and_a_second_prompt_rebuild_the_shared_part():
    model = tiny("llama", seed=3)
    lm = cached(model)
    rng = np.random.default_rng(1)
    base = _prompt(rng, 200)
    rows = [base + _prompt(rng, k) for k in (1, 5, 40, 90)]  # long divergent suffixes
    for _ in range(3):
        for r, lp in zip(rows, lm.batch_next_token_logprobs(rows)):
            np.testing.assert_allclose(lp, full_logprobs(model, r), atol=TOL)
        rows = [r + (int(rng.integers(V)),) for r in rows]
    other = _prompt(rng, 150)  # a different prompt: the shared part moves
    rows = [other + (5,), other + (6, 7)]
    lm.batch_next_token_logprobs([other])
    for r, lp in zip(rows, lm.batch_next_token_logprobs(rows)):
        np.testing.assert_allclose(lp, full_logprobs(model, r), atol=TOL)
    assert lm._shared.node is lm._trie.find(other)
    assert lm.stats()["cascade_passes"] >= 2


def test_shared_buffer_is_kept_across_steps_and_dropped_on_eviction():
    model = tiny("llama")
    lm = cached(model)
    rng = np.random.default_rng(2)
    prompt = _prompt(rng, 120)
    lm.batch_next_token_logprobs([prompt])
    rows = [prompt + (t,) for t in range(8)]
    for _ in range(5):
        lm.batch_next_token_logprobs(rows)
        rows = [r + (3,) for r in rows]
    assert lm._shared.builds == 1 and lm.stats()["shared_prefix_tokens"] == 120
    # bytes copied per step: the rows' own suffixes, not 8 copies of the prompt
    st = lm.stats()
    assert st["kv_bytes_copied"] < 8 * 120 * lm._bytes_per_slot
    lm.memory_budget_bytes = 0
    lm._maybe_evict()
    assert lm._shared.node is None and lm._shared.nbytes == 0
    lm.check_integrity()


@pytest.mark.parametrize("kind,attn", [("llama", "sdpa"), ("llama", "eager"), ("qwen2", "sdpa")])
def test_cascade_and_plain_paths_agree(kind, attn):
    extra = {"use_sliding_window": False} if kind == "qwen2" else {}
    a, b = tiny(kind, attn=attn, **extra), tiny(kind, attn=attn, **extra)
    lm_c, lm_p = cached(a), cached(b, cascade=False)
    assert lm_c.uses_cascade and not lm_p.uses_cascade
    rng = np.random.default_rng(4)
    for rows in particle_walk(rng, _prompt(rng, 64), n_rows=5, steps=6):
        for x, y in zip(lm_c.batch_next_token_logprobs(rows), lm_p.batch_next_token_logprobs(rows)):
            np.testing.assert_allclose(x, y, atol=TOL)
    assert lm_c.stats()["cascade_passes"] > 0 and lm_p.stats()["cascade_passes"] == 0
    assert lm_c.stats()["kv_bytes_copied"] < lm_p.stats()["kv_bytes_copied"]


def test_the_switched_model_is_unchanged_without_a_cascade_batch():
    a, b = tiny("llama"), tiny("llama")
    cached(a)  # switches a's attention implementation
    assert a.config._attn_implementation.startswith("ppl_cascade_")
    ids = torch.tensor([[5, 9, 200, 17, 4], [8, 8, 1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(a(input_ids=ids).logits, b(input_ids=ids).logits, atol=1e-5, rtol=0)
    assert cached(a).uses_cascade  # a second backend on the same model


def test_cascade_support_names_what_it_does_not_support():
    assert cascade_support(tiny("llama")) is None
    assert cascade_support(tiny("llama", attn="eager")) is None
    assert "sliding-window" in cascade_support(tiny("mistral", sliding_window=16))
    assert "model type 'gpt2'" in cascade_support(tiny("gpt2"))
    assert cascade_support(tiny("mistral", sliding_window=None)) is None


def test_an_unsupported_family_falls_back_to_the_plain_path():
    model, reason = tiny("gpt2"), "model type 'gpt2'"
    assert reason in cascade_support(model)
    lm = cached(model)
    assert not lm.uses_cascade and reason in lm.cascade_reason
    assert "ppl_cascade" not in str(model.config._attn_implementation)
    rng = np.random.default_rng(5)
    for rows in particle_walk(rng, _prompt(rng, 40), n_rows=4, steps=3):
        for r, lp in zip(rows, lm.batch_next_token_logprobs(rows)):
            np.testing.assert_allclose(lp, full_logprobs(model, r), atol=TOL)
    assert lm.stats()["cascade_passes"] == 0
    with pytest.raises(NotImplementedError, match=reason):
        cached(model, cascade=True)


def test_cascade_batch_equals_softmax_attention_over_the_concatenation():
    """Shared part + left-padded own part + causal new part, merged by
    log-sum-exp, against softmax attention with the same keys concatenated."""
    g = torch.Generator().manual_seed(0)
    R, Hk, groups, N, D, C0, U = 3, 2, 3, 4, 8, 11, 5
    own = torch.tensor([5, 0, 2])
    q = torch.randn(R, Hk * groups, N, D, generator=g)
    k = torch.randn(R, Hk, U + N, D, generator=g)
    v = torch.randn(R, Hk, U + N, D, generator=g)
    ks, vs = torch.randn(Hk, C0, D, generator=g), torch.randn(Hk, C0, D, generator=g)

    class Layer:
        layer_idx = 0

    out = CascadeBatch([(ks, vs)], own, U, N).attend(Layer(), q, k, v, 0.3)  # [R, N, H, D]
    for r in range(R):
        keys = torch.cat([ks, k[r, :, U - int(own[r]):]], dim=1).repeat_interleave(groups, 0)
        vals = torch.cat([vs, v[r, :, U - int(own[r]):]], dim=1).repeat_interleave(groups, 0)
        L = keys.shape[1]
        allowed = torch.arange(L)[None, :] <= torch.arange(N)[:, None] + (L - N)
        scores = (q[r] @ keys.transpose(-1, -2) * 0.3).masked_fill(~allowed, float("-inf"))
        ref = torch.softmax(scores, dim=-1) @ vals  # [H, N, D]
        torch.testing.assert_close(out[r].transpose(0, 1), ref, atol=1e-5, rtol=1e-5)


def test_smc_runs_through_the_cascade_path():
    import asyncio

    import ppl

    lm = cached(tiny("llama"))

    class Walk(ppl.Model):
        def __init__(self):
            super().__init__()
            self.ctx = lm.context(prompt_ids=list(range(1, 200)))
            self.left = 4

        async def step(self):
            await self.sample(self.ctx.next_token())
            self.left -= 1
            if self.left == 0:
                self.finish()

    result = asyncio.run(ppl.smc_steer(Walk(), 6, 2, seed=0))
    assert np.isfinite(result.log_Z)
    assert lm.stats()["cascade_passes"] >= 3
    lm.check_integrity()
