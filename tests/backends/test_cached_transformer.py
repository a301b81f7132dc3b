"""CachedTransformer: cached batched log-probs equal a plain full forward.

Tiny random Llama (grouped-query attention) and GPT-2 on CPU float32. Every
answer is checked against one uncached forward of the whole sequence.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

import numpy as np
import pytest
import torch
from ppl.runtime.backends.hf.cached_transformer import CachedTransformer
from ppl.runtime.backends.hf.vocab import bytes_to_unicode, vocab_tables
from ppl.runtime.scheduler import Scheduler

from ppl.errors import ForwardError, TokenIdError

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.tiny_models import (
        tiny_cached,
        tiny_llama,
        tiny_sentencepiece_tokenizer,
        tiny_tokenizer,
    )
except ImportError:
    from support.tiny_models import (
        tiny_cached,
        tiny_llama,
        tiny_sentencepiece_tokenizer,
        tiny_tokenizer,
    )

KINDS = ["llama", "gpt2"]
TOL = 1e-4


@pytest.fixture(scope="module", params=KINDS)
def kind(request):
    return request.param


def reference(lm: CachedTransformer, prefix) -> np.ndarray:
    """log p(. | prefix) from one plain forward of the whole sequence."""
    with torch.inference_mode():
        logits = lm.model(torch.tensor([prefix]), use_cache=False).logits[0, -1]
        return torch.log_softmax(logits[: len(lm.vocab)].float(), -1).numpy()


def assert_matches(lm, prefixes, answers):
    assert len(answers) == len(prefixes)
    refs = {p: reference(lm, p) for p in set(prefixes)}
    for p, a in zip(prefixes, answers):
        assert a.shape == (len(lm.vocab),) and a.dtype == np.float32
        err = np.abs(a - refs[p]).max()
        assert err < TOL, f"prefix of length {len(p)}: max error {err}"


def random_prefix(rng, lo=1, hi=64):
    return tuple(int(t) for t in rng.integers(0, 300, size=int(rng.integers(lo, hi + 1))))


def smc_like_run(lm, rng, *, n=10, steps=6, check=None):
    """Successive batches like SMC: a shared prompt, then every step each
    particle extends by one (sometimes a few) tokens, particles are resampled
    (duplicated / dropped) between steps, and requests arrive shuffled.
    Returns every (prefix, answer) pair."""
    prompt = random_prefix(rng, 5, 30)
    other = random_prefix(rng, 1, 64)  # an unrelated sequence in the same batches
    particles = [prompt] * n
    seen = []
    for step in range(steps):
        batch = list(particles) + [other]
        order = rng.permutation(len(batch))
        batch = [batch[i] for i in order]
        answers = lm.batch_next_token_logprobs(batch)
        seen.extend(zip(batch, answers))
        if check is not None:
            check(lm)
        # extend: sample a token from the answer (or a few random tokens)
        new = []
        for p in particles:
            lp = answers[batch.index(p)]
            if rng.random() < 0.15:
                ext = tuple(int(t) for t in rng.integers(0, 300, size=int(rng.integers(2, 5))))
            else:
                ext = (int(rng.choice(len(lp), p=np.exp(lp.astype(np.float64)) / np.exp(lp.astype(np.float64)).sum())),)
            new.append(p + ext)
        # resample: ancestors drawn with replacement
        ancestors = rng.integers(0, n, size=n)
        particles = [new[a] for a in ancestors]
        other = other + (int(rng.integers(0, 300)),)
    return seen


# ---------------------------------------------------------------- correctness
def test_mixed_batch_matches_full_forward(kind):
    lm = tiny_cached(kind)
    rng = np.random.default_rng(1)
    base = random_prefix(rng, 10, 40)
    prefixes = [random_prefix(rng) for _ in range(6)]  # unshared, lengths 1..64
    prefixes += [base + random_prefix(rng, 1, 20) for _ in range(4)]  # shared, uncached
    prefixes += [base, base[:3], base[:1], (7,), (7,)]  # prefixes of others, a duplicate
    rng.shuffle(prefixes)
    answers = lm.batch_next_token_logprobs(prefixes)
    assert_matches(lm, prefixes, answers)
    assert lm.stats()["forward_passes"] == 1
    lm.check_integrity()

    # second batch: extend by one or a few tokens, mixed with new prompts
    ext = [p + (int(rng.integers(0, 300)),) for p in prefixes[:8]]
    ext += [p + tuple(int(t) for t in rng.integers(0, 300, size=5)) for p in prefixes[8:]]
    ext += [random_prefix(rng, 30, 64), prefixes[0]]
    rng.shuffle(ext)
    answers = lm.batch_next_token_logprobs(ext)
    assert_matches(lm, ext, answers)
    lm.check_integrity()


@pytest.mark.parametrize("seed", [0, 1])
def test_smc_like_batches_match_full_forward(kind, seed):
    lm = tiny_cached(kind)
    seen = smc_like_run(lm, np.random.default_rng(seed), check=CachedTransformer.check_integrity)
    prefixes, answers = zip(*seen)
    assert_matches(lm, prefixes, answers)
    s = lm.stats()
    assert s["forward_passes"] == 6
    assert s["tokens_computed"] < s["tokens_requested"] / 3  # the cache does its job


def test_unpadded_batches_match_full_forward(kind):
    """Rows of equal length need no padding (the model's fast path, no mask)."""
    lm = tiny_cached(kind)
    rng = np.random.default_rng(5)
    prompt = random_prefix(rng, 12, 12)
    rows = [prompt + (int(t),) for t in rng.integers(0, 300, size=6)]
    for _ in range(3):
        answers = lm.batch_next_token_logprobs(rows)
        assert_matches(lm, rows, answers)
        rows = [rows[int(a)] + (int(t),) for a, t in zip(rng.integers(0, 6, 6), rng.integers(0, 300, 6))]
    fresh = [random_prefix(rng, 9, 9) for _ in range(4)]  # nothing cached, equal lengths
    assert_matches(lm, fresh, lm.batch_next_token_logprobs(fresh))


def test_fully_cached_prefix_without_logprob_cache_recomputes_last_token(kind):
    lm = tiny_cached(kind, logprob_cache_bytes=0)
    p = tuple(range(40, 60))
    lm.batch_next_token_logprobs([p + (1, 2, 3)])
    before = lm.stats()
    a, b = lm.batch_next_token_logprobs([p, p + (1,)])  # both fully cached
    after = lm.stats()
    assert_matches(lm, [p, p + (1,)], [a, b])
    assert after["tokens_computed"] - before["tokens_computed"] == 2  # one token per row
    assert after["tokens_stored"] == before["tokens_stored"]
    assert after["nodes"] == before["nodes"] == 23
    # a cached prefix and its uncached extension share one row
    c, d = lm.batch_next_token_logprobs([p + (1, 2, 3), p + (1, 2, 3, 4, 5)])
    assert_matches(lm, [p + (1, 2, 3), p + (1, 2, 3, 4, 5)], [c, d])
    assert lm.stats()["rows_per_pass"][-1] == 1


def test_no_warnings_from_the_forward_pass():
    lm = tiny_cached("llama")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lm.batch_next_token_logprobs([(1, 2, 3), (4, 5)])
        lm.batch_next_token_logprobs([(1, 2, 3, 4), (4, 5, 6, 7)])


# ------------------------------------------------------------------- counters
def test_counters_add_up():
    lm = tiny_cached("llama")
    P = tuple(range(100, 110))
    lm.batch_next_token_logprobs([P])
    s = lm.stats()
    assert (s["forward_passes"], s["tokens_computed"], s["tokens_stored"], s["nodes"]) == (1, 10, 10, 10)
    assert s["bytes_held"] == 10 * lm._bytes_per_slot > 0

    lm.batch_next_token_logprobs([P + (1,), P + (2,), P + (1,)])
    s = lm.stats()
    assert s["forward_passes"] == 2
    assert s["requests"] == 4
    assert s["tokens_requested"] == 10 + 3 * 11
    assert s["tokens_computed"] == 12  # one new token per distinct request
    assert s["tokens_reused"] == 20
    assert s["rows_per_pass"] == [1, 2]
    assert s["nodes"] == 12

    lm.batch_next_token_logprobs([P + (1,), P])  # both answered from the cache
    s = lm.stats()
    assert s["forward_passes"] == 2 and s["cache_hits"] == 2 and s["tokens_computed"] == 12

    # a branch that shares nothing new: distinct new tokens only
    lm.batch_next_token_logprobs([P + (1, 5, 6), P + (2, 7), (9, 9)])
    s = lm.stats()
    assert s["forward_passes"] == 3 and s["tokens_computed"] == 12 + 2 + 1 + 2
    assert s["nodes"] == 12 + 5 and s["bytes_held"] == 17 * lm._bytes_per_slot
    assert s["evictions"] == 0
    lm.check_integrity()


# ------------------------------------------------------ eviction and pins
def test_eviction_under_small_budget_keeps_answers(kind):
    free = tiny_cached(kind)
    seen_free = smc_like_run(free, np.random.default_rng(3))
    per_token = free._bytes_per_slot
    budget = 25 * per_token
    tight = tiny_cached(kind, memory_budget_bytes=budget)

    def check(lm):
        lm.check_integrity()
        assert lm.bytes_held <= budget

    seen_tight = smc_like_run(tight, np.random.default_rng(3), check=check)
    assert [p for p, _ in seen_free] == [p for p, _ in seen_tight]
    for (p, a), (_, b) in zip(seen_free, seen_tight):
        assert np.abs(a - b).max() < TOL
    s = tight.stats()
    assert s["evictions"] > 0
    assert s["tokens_computed"] > free.stats()["tokens_computed"]  # recomputed what was evicted
    assert s["nodes"] <= 25 < free.stats()["nodes"]
    assert s["pool_bytes"] <= free.stats()["pool_bytes"]  # evicted slots are reused


def test_pinned_nodes_are_never_evicted():
    lm = tiny_cached("llama", memory_budget_bytes=0)  # evict everything unpinned
    A = tuple(range(10, 30))
    B = tuple(range(50, 60))
    pin_a = lm.pin(A[:15])  # pinned before it exists: pending
    assert not pin_a.attached and lm.stats()["pinned_pending"] == 1
    lm.batch_next_token_logprobs([A, B])
    assert pin_a.attached and lm.stats()["pinned_pending"] == 0
    s = lm.stats()
    assert s["nodes"] == 15  # A[:15] and its ancestors stay; the rest went
    assert s["evictions"] == 5 + 10
    assert lm._trie.find(A[:15]) is not None and lm._trie.find(B[:1]) is None

    # the pinned prefix's KV is still there: extending it costs one token
    pin_b = lm.pin(A[:15] + (1,))
    before = lm.stats()["tokens_computed"]
    ans = lm.batch_next_token_logprobs([A[:15] + (1,)])
    assert lm.stats()["tokens_computed"] - before == 1
    assert_matches(lm, [A[:15] + (1,)], ans)
    assert lm.stats()["nodes"] == 16

    # clones share a pin; dropping the last reference lets the nodes go
    clone_ref = pin_a
    del pin_a
    gc.collect()
    lm.batch_next_token_logprobs([(5,)])
    assert lm.stats()["nodes"] == 16
    del clone_ref, pin_b
    gc.collect()
    lm.batch_next_token_logprobs([(5,)])
    assert lm.stats()["nodes"] == 0 and lm.bytes_held == 0
    lm.check_integrity()


def test_released_pending_pin_is_forgotten():
    lm = tiny_cached("gpt2", memory_budget_bytes=0)
    pin = lm.pin((1, 2, 3))
    pin.release()
    assert lm.stats()["pinned_pending"] == 0
    lm.batch_next_token_logprobs([(1, 2, 3)])
    assert lm.stats()["nodes"] == 0


def _corrupt(lm, how):
    trie = lm._trie
    nodes = [n for n in _walk(trie.root)]
    a, b = nodes[0], nodes[-1]
    if how == "shared slot":
        b.slot = a.slot
    elif how == "leaf set":
        trie._leaves.discard(b if not b.children else next(iter(trie._leaves)))
    elif how == "node count":
        trie.n_nodes += 1
    elif how == "negative pin":
        a.pins = -1
    elif how == "stale index":
        prefix, node = next(iter(trie._index.items()))
        trie._index[prefix] = node.parent if node.parent is not trie.root else next(iter(node.children.values()))
    elif how == "log-prob cache":
        lm._lp_cache.nbytes += 1


def _walk(node):
    for child in node.children.values():
        yield child
        yield from _walk(child)


@pytest.mark.parametrize("how", ["shared slot", "leaf set", "node count", "negative pin", "stale index", "log-prob cache"])
def test_check_integrity_catches_corruption(how):
    lm = tiny_cached("llama")
    lm.batch_next_token_logprobs([(1, 2, 3, 4), (1, 2, 5), (7, 8)])
    lm.check_integrity()
    _corrupt(lm, how)
    with pytest.raises(AssertionError):
        lm.check_integrity()


# --------------------------------------------------------------------- errors
def test_bad_token_id_is_named():
    lm = tiny_cached("llama")
    lm.batch_next_token_logprobs([(1, 2, 3)])
    with pytest.raises(TokenIdError, match=r"token id 300 at position 3 .*0\.\.299"):
        lm.batch_next_token_logprobs([(1, 2, 3, 300), (4,)])
    with pytest.raises(ValueError, match="token id -1"):
        lm.batch_next_token_logprobs([(-1,)])
    with pytest.raises(ValueError, match="empty prefix"):
        lm.batch_next_token_logprobs([()])
    with pytest.raises(ValueError, match="exceeds the model's maximum context of 256"):
        lm.batch_next_token_logprobs([tuple([1] * 257)])
    assert lm.stats()["forward_passes"] == 1
    lm.check_integrity()


def test_forward_failure_raises_forward_error(monkeypatch):
    lm = tiny_cached("gpt2")
    lm.batch_next_token_logprobs([(1, 2, 3)])

    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(lm.model, "forward", boom)
    with pytest.raises(ForwardError, match=r"batch of 2 rows \(3 cached \+ 2 new .*out of memory"):
        lm.batch_next_token_logprobs([(1, 2, 3, 4), (1, 2, 3, 5, 6)])
    monkeypatch.undo()
    lm.check_integrity()
    assert lm.stats()["nodes"] == 3
    ans = lm.batch_next_token_logprobs([(1, 2, 3, 4)])
    assert_matches(lm, [(1, 2, 3, 4)], ans)


def test_results_are_read_only():
    lm = tiny_cached("llama")
    (a,) = lm.batch_next_token_logprobs([(1, 2)])
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 0.0


# ------------------------------------------------------------ scheduler
def test_scheduler_sends_one_batch():
    lm = tiny_cached("llama")
    prefixes = [(1, 2, 3), (1, 2, 4), (1, 2, 3), (9,)]

    async def main():
        sched = Scheduler()
        return await sched.gather([lm.next_token_logprobs(p) for p in prefixes])

    answers = asyncio.run(main())
    assert lm.stats()["forward_passes"] == 1 and lm.stats()["rows_per_pass"] == [3]
    assert_matches(lm, prefixes, answers)


# ------------------------------------------------------ tokenizer and vocab
def test_byte_level_vocab_tables_round_trip():
    tok = tiny_tokenizer()
    texts, raw, eos, special = vocab_tables(tok)
    assert len(texts) == len(raw) == len(tok) == 300
    assert eos == tok.eos_token_id and eos in special and raw[eos] == b"" and texts[eos] == ""
    assert sorted(bytes_to_unicode()) == list(range(256))
    for s in ["hello world", "  the dog\n\tx", "naïve café ü€😀", "résumé"]:
        ids = tok.encode(s, add_special_tokens=False)
        assert b"".join(raw[i] for i in ids) == s.encode("utf-8")


def test_sentencepiece_vocab_tables_round_trip():
    tok = tiny_sentencepiece_tokenizer()
    texts, raw, eos, special = vocab_tables(tok)
    assert eos == 2 and special == {0, 1, 2}
    assert raw[tok.convert_tokens_to_ids("<0x41>")] == b"A"
    assert raw[tok.convert_tokens_to_ids("▁the")] == b" the"
    for s in ["the cat", "hello É €"]:
        ids = tok.encode(s, add_special_tokens=False)
        assert b"".join(raw[i] for i in ids) == (" " + s).encode("utf-8")


def test_encode_decode_prompt_ids():
    lm = tiny_cached("gpt2")
    ids = lm.encode("hello world")
    assert lm.decode(ids) == "hello world"
    assert lm.decode(ids + [lm.eos_token_id]) == "hello world"
    assert lm.prompt_ids("hello world") == ids  # this tokenizer adds no BOS
    assert lm.prompt_ids("") == [lm.eos_token_id]
    assert len(lm.vocab) == 300 < lm.model.config.vocab_size  # padded logits are sliced

    model, _ = tiny_llama()
    sp = CachedTransformer(model, tiny_sentencepiece_tokenizer(), device="cpu")
    assert sp.prompt_ids("the")[0] == 1 and sp.prompt_ids("the")[1:] == sp.encode("the")
    assert sp.prompt_ids("") == [1]
    assert sp.decode(sp.prompt_ids("the cat")) == "the cat"


def test_without_tokenizer_needs_vocab():
    model, tok = tiny_llama()
    with pytest.raises(ValueError, match="vocab= , vocab_bytes= and eos_token_id=|vocab=, vocab_bytes="):
        CachedTransformer(model, None, device="cpu")
    texts, raw, eos, _ = vocab_tables(tok)
    lm = CachedTransformer(model, None, device="cpu", vocab=texts, vocab_bytes=raw, eos_token_id=eos)
    assert lm.decode(tok.encode("the dog")) == "the dog"
    with pytest.raises(ValueError, match="logits have only 320"):
        CachedTransformer(model, None, device="cpu", vocab=["x"] * 400, vocab_bytes=[b"x"] * 400, eos_token_id=0)
