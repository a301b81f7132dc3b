"""Several shared prefixes in one batch: groups of rows, one buffer per group.

Batches mix rows of 2-5 different long prompts (as ``ppl.map`` over several
inputs, or a program with a context per prompt, sends them). Every check
compares the CachedTransformer's log-probs with a plain full forward pass of
each whole prefix (no cache), or the cascade path with the plain path
(``cascade=False``) on the same weights, and runs through the inference
layer run for run. Tiny random models from configs; no download.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from ppl.runtime.backends.hf import prefix_groups
from ppl.runtime.backends.hf.cascade_attention import CascadeBatch
from ppl.runtime.backends.hf.prefix_groups import Costs, partition
from support.tiny_models import cached_lm, full_logprobs, gqa_model

import ppl

V = 300
TOL = 2e-5  # float32 round-off of a 2-layer model (log-probs of order 10)


def tiny(kind: str = "llama", seed: int = 0):
    """A fresh tiny model (GQA: 6 heads over 2 KV heads), head sharpened."""
    return gqa_model(kind, seed, **({"use_sliding_window": False} if kind == "qwen2" else {}))


cached = cached_lm


def prompts_of(rng, lengths) -> list[tuple[int, ...]]:
    return [tuple(int(t) for t in rng.integers(V, size=n)) for n in lengths]


def mixed_walk(rng, prompts, rows_per: int, steps: int, away=None):
    """Batches of several SMC-like runs, one per prompt, flushed together:
    each run's rows extend by one token and are resampled within the run
    (duplicates included); the batch is shuffled and repeats a row. In the
    steps of ``away`` (``{step: prompt index}``) that prompt's rows are not
    sent (they come back the step after)."""
    runs = [[p + (int(rng.integers(V)),) for _ in range(rows_per)] for p in prompts]
    for step in range(steps):
        batch = [r for i, rows in enumerate(runs) if (away or {}).get(step) != i for r in rows]
        batch = [batch[i] for i in rng.permutation(len(batch))] + [batch[0]]
        yield batch
        for i, rows in enumerate(runs):
            if (away or {}).get(step) == i:
                continue
            ancestors = rng.integers(len(rows), size=len(rows))
            runs[i] = [rows[a] + (int(rng.integers(V)),) for a in ancestors]


def check_against_full(lm, model, batch):
    got = lm.batch_next_token_logprobs(batch)
    lm.check_integrity()
    for r, lp in zip(batch, got):
        np.testing.assert_allclose(lp, full_logprobs(model, r), atol=TOL)


def warm(lm, prompts):
    """The prompts' prefills (the plain path: more than 32 new positions);
    the counters start after them."""
    lm.batch_next_token_logprobs(prompts)
    assert lm.stats()["cascade_passes"] == 0
    lm.reset_stats()


@pytest.mark.parametrize("kind,lengths", [("llama", (120, 260)), ("qwen2", (100, 400, 180)),
                                          ("llama", (150, 310, 230, 100, 370))])
def test_mixed_prompts_match_full_forward(kind, lengths):
    model = tiny(kind)
    lm = cached(model)
    rng = np.random.default_rng(len(lengths))
    prompts = prompts_of(rng, lengths)
    warm(lm, prompts)
    for batch in mixed_walk(rng, prompts, rows_per=3, steps=5):
        check_against_full(lm, model, batch)
    st = lm.stats()
    assert st["cascade_passes"] == 5
    assert st["shared_groups"] >= 5 * len(prompts)  # at least a group per prompt in every pass
    assert st["shared_buffers"] >= len(prompts)
    assert st["shared_prefix_tokens"] >= sum(lengths)
    # per pass the rows' suffixes are copied, not every row's whole prompt
    assert st["kv_bytes_copied"] < 5 * sum(lengths) * lm._bytes_per_slot


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_cascade_and_plain_paths_agree_on_mixed_prompts(kind):
    a, b = tiny(kind, seed=2), tiny(kind, seed=2)
    lm_c, lm_p = cached(a), cached(b, cascade=False)
    rng = np.random.default_rng(7)
    prompts = prompts_of(rng, (140, 330, 210, 260))
    for lm in (lm_c, lm_p):
        warm(lm, prompts)
    for batch in mixed_walk(rng, prompts, rows_per=4, steps=6, away={2: 1}):
        for x, y in zip(lm_c.batch_next_token_logprobs(batch), lm_p.batch_next_token_logprobs(batch)):
            np.testing.assert_allclose(x, y, atol=TOL)
    c, p = lm_c.stats(), lm_p.stats()
    assert c["cascade_passes"] == 6 and p["cascade_passes"] == 0 and c["shared_groups"] >= 6 * 3
    assert c["kv_bytes_copied"] < p["kv_bytes_copied"] / 4


def test_rows_leave_and_rejoin_their_group_without_a_rebuild():
    model = tiny("llama", seed=4)
    lm = cached(model)
    rng = np.random.default_rng(3)
    prompts = prompts_of(rng, (200, 120, 300))
    warm(lm, prompts)
    walk = mixed_walk(rng, prompts, rows_per=3, steps=6, away={2: 0, 3: 2})
    check_against_full(lm, model, next(walk))
    nodes = [lm._trie.find(p) for p in prompts]
    assert set(lm._shared.buffers) == set(nodes) and lm.stats()["shared_builds"] == 3
    for batch in walk:  # prompt 0 leaves at step 2, prompt 2 at step 3; both come back
        check_against_full(lm, model, batch)
    st = lm.stats()
    assert st["shared_builds"] == 3 and set(lm._shared.buffers) == set(nodes)
    assert st["shared_groups"] == 3 + 2 + 2 + 3 + 3 + 3


def test_a_group_of_one_and_rows_that_share_nothing():
    model = tiny("llama", seed=5)
    lm = cached(model)
    rng = np.random.default_rng(4)
    long_a, long_b, short = prompts_of(rng, (260, 180, 3))
    warm(lm, [long_a, long_b, short])
    batch = [long_a + (t,) for t in (1, 2, 3, 4)] + [long_b + (9,)] + [short + (5,), short + (6,)]
    check_against_full(lm, model, batch)
    st = lm.stats()
    assert st["cascade_passes"] == 1 and st["shared_groups"] == 2  # the short prompt's rows: no group
    assert [n.depth for n in lm._shared._last] == [180, 260]  # sorted by prefix: b's first token is lower
    assert lm._shared.node is lm._trie.find(long_b)


def test_an_evicting_budget_keeps_every_answer_exact():
    model = tiny("llama", seed=6)
    lm = cached(model)
    rng = np.random.default_rng(5)
    prompts = prompts_of(rng, (160, 240, 110))
    lm.memory_budget_bytes = (sum(map(len, prompts)) + 40) * lm._bytes_per_slot  # old branches go
    for step, batch in enumerate(mixed_walk(rng, prompts, rows_per=4, steps=7, away={3: 1})):
        check_against_full(lm, model, batch)
        assert all(node.parent is not None for node in lm._shared.buffers)  # no evicted key
        if step == 4:  # evict down to nothing: every buffer goes with its node
            lm.memory_budget_bytes, budget = 0, lm.memory_budget_bytes
            lm._maybe_evict()
            assert not lm._shared.buffers and lm._shared.nbytes == 0
            lm.memory_budget_bytes = budget
    st = lm.stats()
    assert st["evictions"] > 0 and st["cascade_passes"] >= 5 and st["shared_builds"] > 3


def test_the_caps_bound_the_buffers_kept():
    model = tiny("llama", seed=8)
    lm = cached(model)
    rng = np.random.default_rng(6)
    prompts = prompts_of(rng, (150, 200, 250))
    warm(lm, prompts)
    lm.max_shared_bytes = 260 * lm._bytes_per_slot  # one prompt's buffer fits, not two
    for batch in mixed_walk(rng, prompts, rows_per=2, steps=3):
        check_against_full(lm, model, batch)
        assert lm._shared.nbytes <= lm.max_shared_bytes
    assert lm.stats()["cascade_passes"] == 3


# ------------------------------------------------------------- the algorithm
def _costs(R, **kw):
    base = {"rows": R, "floor": 0, "group": 256.0, "free_first": True, "max_groups": 16, "max_slots": 1 << 30}
    return Costs(**{**base, **kw})


def _rows(rng, prompts, per):
    """Sorted rows (prompt + one token) and their reused lengths."""
    rows = sorted(p + (int(rng.integers(V)),) for p in prompts for _ in range(per))
    return rows, [len(r) - 1 for r in rows]


def test_partition_groups_by_prompt_with_a_group_of_one_and_ungrouped_short_rows():
    rng = np.random.default_rng(0)
    a, b, lone, short = [(k,) + p for k, p in zip((10, 20, 30, 40), prompts_of(rng, (300, 200, 250, 2)))]
    rows, s = _rows(rng, [a, b], 4)
    rows += [lone + (1,), short + (1,), short + (2,)]
    s += [len(lone), len(short), len(short)]
    assert partition(rows, s, _costs(len(rows))) == [(0, 4, 301), (4, 8, 201), (8, 9, 251)]
    # at most one group: the one at the common ancestor of all rows (the root here) is none
    assert partition(rows, s, _costs(len(rows), max_groups=1)) == [(0, 4, 301)]


def test_partition_prefers_one_group_at_a_long_common_prefix_for_few_rows():
    rng = np.random.default_rng(1)
    (shots,) = prompts_of(rng, (1000,))
    questions = [shots + q for q in prompts_of(rng, (200, 210, 190, 205))]
    rows, s = _rows(rng, questions, 2)  # 8 rows: one buffer of the shared 1000 positions
    assert partition(rows, s, _costs(len(rows))) == [(0, 8, 1000)]
    rows, s = _rows(rng, questions, 16)  # 64 rows: one buffer per question
    assert [g[2] for g in partition(rows, s, _costs(len(rows)))] == [len(q) for q in sorted(questions)]


def test_partition_groups_are_common_prefixes_of_contiguous_rows():
    rng = np.random.default_rng(2)
    for trial in range(30):
        stems = prompts_of(rng, rng.integers(1, 60, size=4))
        rows = sorted({stems[rng.integers(4)][: rng.integers(1, 60)] + tuple(rng.integers(V, size=rng.integers(1, 30)))
                       for _ in range(int(rng.integers(1, 12)))})
        s = [max(len(r) - int(rng.integers(1, 3)), 0) for r in rows]
        groups = partition(rows, s, _costs(len(rows), group=float(rng.integers(0, 300))))
        end = 0
        for lb, rb, d in groups:
            assert end <= lb < rb and d >= 1
            assert all(s[i] >= d and rows[i][:d] == rows[lb][:d] for i in range(lb, rb))
            end = rb
        assert prefix_groups.common_length(rows[0], rows[-1], min(s[0], s[-1])) <= min(s)


def test_cascade_batch_with_groups_equals_softmax_attention_over_each_rows_keys():
    """Rows 0-1 share prefix A, row 2 prefix B, row 3 none (all its keys are
    its own), merged by log-sum-exp, against plain softmax attention."""
    g = torch.Generator().manual_seed(0)
    R, Hk, rep, N, D, U = 4, 2, 3, 2, 8, 6
    own = torch.tensor([2, 0, 4, 6])
    q = torch.randn(R, Hk * rep, N, D, generator=g)
    k, v = torch.randn(R, Hk, U + N, D, generator=g), torch.randn(R, Hk, U + N, D, generator=g)
    shared = [[(torch.randn(Hk, n, D, generator=g), torch.randn(Hk, n, D, generator=g))] for n in (7, 3)]
    spans = [(0, 2), (2, 3)]

    class Layer:
        layer_idx = 0

    out = CascadeBatch(shared, own, U, N, spans).attend(Layer(), q, k, v, 0.3)  # [R, N, H, D]
    prefix_of = {0: shared[0][0], 1: shared[0][0], 2: shared[1][0]}
    for r in range(R):
        ks, vs = prefix_of.get(r, (k[r, :, :0], v[r, :, :0]))
        keys = torch.cat([ks, k[r, :, U - int(own[r]):]], dim=1).repeat_interleave(rep, 0)
        vals = torch.cat([vs, v[r, :, U - int(own[r]):]], dim=1).repeat_interleave(rep, 0)
        L = keys.shape[1]
        allowed = torch.arange(L)[None, :] <= torch.arange(N)[:, None] + (L - N)
        scores = (q[r] @ keys.transpose(-1, -2) * 0.3).masked_fill(~allowed, float("-inf"))
        ref = torch.softmax(scores, dim=-1) @ vals  # [H, N, D]
        torch.testing.assert_close(out[r].transpose(0, 1), ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------- through the inference layer
class Walk(ppl.Model):
    """Unconstrained tokens after a long prompt of random ids (from ``seed``)."""

    def __init__(self, lm, seed: int, length: int, n: int = 5):
        super().__init__()
        ids = [int(t) for t in np.random.default_rng(seed).integers(1, V, size=length)]
        self.ctx, self.left = lm.context(prompt_ids=ids), n

    async def step(self):
        await self.sample(self.ctx.next_token())
        self.left -= 1
        if self.left == 0:
            self.finish()


class Intersect(ppl.Model):
    """Two contexts on different prompts: sample from one, observe on the other."""

    def __init__(self, lm, n: int = 5):
        super().__init__()
        rng = np.random.default_rng(11)
        self.a = lm.context(prompt_ids=[int(t) for t in rng.integers(1, V, size=230)])
        self.b = lm.context(prompt_ids=[int(t) for t in rng.integers(1, V, size=170)])
        self.left = n

    async def step(self):
        tok = await self.sample(self.a.next_token())
        await self.observe(self.b.next_token(), tok)
        self.left -= 1
        if self.left == 0:
            self.finish()


def _same(x, y):
    assert [p.ctx.token_ids for p in x.particles] == [p.ctx.token_ids for p in y.particles]
    np.testing.assert_allclose(x.log_weights, y.log_weights, rtol=0, atol=1e-4)


INPUTS = [{"seed": 1, "length": 210}, {"seed": 2, "length": 340}, {"seed": 3, "length": 150}]


def test_map_over_three_prompts_equals_one_at_a_time_on_the_plain_path():
    model = tiny("llama", seed=9)
    lm, plain = cached(model), cached(tiny("llama", seed=9), cascade=False)
    outcomes = list(ppl.map(Walk, INPUTS, lm=lm, n_particles=6, expand=2, seed=3))
    st = lm.stats()
    assert st["cascade_passes"] >= 4 and st["shared_groups"] >= 3 * 4  # the three runs batched together
    for o in outcomes:
        alone = ppl.infer(Walk(plain, **INPUTS[o.index]), n_particles=6, expand=2, seed=ppl.run_seed(3, o.index))
        assert o.status == "ok"
        _same(o.result, alone)
    lm.check_integrity()


def test_two_contexts_on_different_prompts_agree_with_the_plain_path():
    lm, plain = cached(tiny("qwen2", seed=10)), cached(tiny("qwen2", seed=10), cascade=False)
    x = asyncio.run(ppl.smc_steer(Intersect(lm), 6, 2, seed=0))
    y = asyncio.run(ppl.smc_steer(Intersect(plain), 6, 2, seed=0))
    assert [p.a.token_ids for p in x.particles] == [p.a.token_ids for p in y.particles]
    np.testing.assert_allclose(x.log_weights, y.log_weights, rtol=0, atol=1e-4)
    assert abs(x.log_Z - y.log_Z) < 1e-4
    # the contexts' requests come in alternate flushes: both buffers are kept
    # across them (one buffer would be rebuilt at every flush)
    st = lm.stats()
    assert st["cascade_passes"] >= 8 and st["shared_builds"] <= st["cascade_passes"] / 2
    assert {n.depth for n in lm._shared.buffers} >= {230, 170}
