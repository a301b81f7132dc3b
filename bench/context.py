"""Context sweep: SMC steering after a long shared prompt vs raw batched decoding.

    python -m bench.context                       # contexts 5, 500, 1500, 4000; K = 1 and 3
    python -m bench.context --quick               # contexts 5, 500, 1500; K = 1; 16 new tokens
    python -m bench.context --contexts 5 1500 --ks 1 --tokens 32 --threads 2
    python -m bench.context --prompts 4 --contexts 500 1500 --ks 1   # 4 prompts in one batch

Every particle shares one prompt of about ``L`` tokens (a text repeated until
long enough, cut at ``L`` token ids). For each context length and each
``(N, K)``, in the same process and with the same torch thread count:

- **ours**: ``smc_steer`` with N particles, expansion K, a lipogram mask (no
  "e", no EOS), ``--tokens`` new tokens. The prompt is cached before the clock
  starts (one request for its next-token log-probs), so only decoding is timed;
- **raw**: plain transformers decoding of ``R = N*K`` rows with a shared
  prefill: one prefill of the prompt (untimed), its cache repeated to R rows
  (untimed), then R-row decode steps with the same mask and
  ``torch.multinomial`` sampling (timed).

Columns: ratio = ours / raw wall time; tokens computed by ours (the model's
positions run, padding excluded); KV bytes copied per forward pass by ours
(gathers into the batch buffers, the shared-prefix buffer, writes back to the
pool: ``kv_bytes_copied`` of the CachedTransformer's stats; for a version
without that counter, the plain path's gather of every reused position is
estimated from ``tokens_reused``); peak resident memory growth during each
run (sampled every 2 ms). Numbers belong in notes, never in tests.

With ``--prompts P`` (P > 1) every batch mixes P different prompts, as
``ppl.map`` over P inputs sends them: prompt ``i`` is "Report i." followed
by the text, cut at ``L`` token ids (so the prompts share only their first
few tokens). For each context length, in the same process:

- **before** and **after**: ``ppl.map`` of the same lipogram over the P
  prompts, N particles and expansion K each, all runs in one scheduler (one
  forward pass per step for all ``P*N*K`` candidates), on a fresh
  CachedTransformer built with ``cascade=False`` (before: the plain path,
  which gathers every row's whole prefix at every step, as the backend did
  for batches without one common prefix) and with the default (after: one
  shared-prefix group per prompt, :mod:`ppl.runtime.backends.hf.shared_prefix`).
  The prompts are cached before the clock starts;
- **raw**: transformers decoding of the same ``R = P*N*K`` rows: one
  prefill per prompt (untimed), each prompt's cache repeated to its ``N*K``
  rows and the P caches concatenated along the batch into one
  ``DynamicCache`` (every prompt has exactly ``L`` ids, so no row is
  padded; untimed), then R-row decode steps with the mask and
  ``torch.multinomial`` (timed). Raw reads R copies of the prompts per
  step; nothing of SMC (resampling, the trie) is in it.

Columns: each side's wall time and its ratio to raw, KV MiB copied per
forward pass, peak resident memory growth, and the mean shared-prefix groups
per cascade pass of "after".
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time

import torch

import ppl

from .runtime import NO_E_NO_EOS, BenchLipogram, PeakRSS, fresh, rss_mb, table

CONTEXTS = [5, 500, 1500, 4000]
TEXT = (
    "The committee met on a grey morning to review the proposal for the new library. "
    "Several members asked how the building would be heated, who would pay for the books, "
    "and whether the old reading room could be kept as it was. After a long discussion "
    "they agreed to ask the architect for a second plan and to meet again in the spring. "
)


def prompt_of(lm, n_tokens: int) -> list[int]:
    """Exactly ``n_tokens`` prompt ids (BOS first when the tokenizer has one)."""
    ids = lm.prompt_ids(TEXT)
    while len(ids) < n_tokens:
        ids = ids + lm.encode(TEXT)
    return ids[:n_tokens]


def copied_per_pass(lm, stats: dict) -> float:
    """KV bytes copied per forward pass (see the module docstring)."""
    passes = max(stats["forward_passes"], 1)
    if "kv_bytes_copied" in stats:
        return stats["kv_bytes_copied"] / passes
    per_slot = lm._bytes_per_slot
    return (stats["tokens_reused"] + 2 * stats["tokens_computed"]) * per_slot / passes


def run_ours(lm, ids: list[int], N: int, K: int, n_tokens: int, seed: int = 0) -> dict:
    lm = fresh(lm)
    NO_E_NO_EOS.mask(lm)
    lm.batch_next_token_logprobs([tuple(ids)])  # the prompt is cached before timing
    lm.reset_stats()
    gc.collect()
    with PeakRSS() as peak:
        base = rss_mb()
        t0 = time.perf_counter()
        asyncio.run(ppl.smc_steer(BenchLipogram(lm, NO_E_NO_EOS, n_tokens, prompt_ids=ids), N, K, seed=seed))
        wall = time.perf_counter() - t0
    stats = lm.stats()
    return {"wall": wall, "computed": stats["tokens_computed"], "passes": stats["forward_passes"],
            "copied": copied_per_pass(lm, stats), "peak_mb": peak.peak - base}


def decode_timed(model, logits, cache, kw: str, allowed, gen, n_tokens: int) -> dict:
    """The raw side's timed part: ``n_tokens`` masked multinomial draws for
    every row, one ``R``-row forward pass per token through ``cache``
    (already filled by the caller's prefills, which are not timed)."""
    gc.collect()
    with PeakRSS() as peak:
        base = rss_mb()
        t0 = time.perf_counter()
        for i in range(n_tokens):
            lp = torch.log_softmax(logits[:, : len(allowed)].float(), dim=-1).masked_fill(~allowed, float("-inf"))
            tok = torch.multinomial(torch.softmax(lp, dim=-1), 1, generator=gen)
            if i + 1 < n_tokens:
                logits = model(input_ids=tok, use_cache=True, logits_to_keep=1, **{kw: cache}).logits[:, -1]
        wall = time.perf_counter() - t0
    return {"wall": wall, "peak_mb": peak.peak - base}


@torch.inference_mode()
def run_raw(lm, ids: list[int], R: int, n_tokens: int, seed: int = 0) -> dict:
    """One prefill, its cache repeated to R rows, R-row decode steps (timed)."""
    from transformers import DynamicCache

    from ppl.runtime.backends.hf.cache_adapter import cache_kwarg_name

    model, device = lm.model, lm.device
    kw = cache_kwarg_name(model)
    allowed = torch.from_numpy(NO_E_NO_EOS.mask(lm).copy()).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    one = DynamicCache(config=model.config)
    out = model(input_ids=torch.tensor([ids], device=device), use_cache=True, logits_to_keep=1, **{kw: one})
    cache = DynamicCache(config=model.config)
    for i, layer in enumerate(one.layers):
        cache.update(layer.keys.expand(R, -1, -1, -1).contiguous(),
                     layer.values.expand(R, -1, -1, -1).contiguous(), i)
    logits = out.logits[:, -1].expand(R, -1)
    del one, out
    return decode_timed(model, logits, cache, kw, allowed, gen, n_tokens)


def sweep(lm, args) -> str:
    rows = []
    for L in args.contexts:
        ids = prompt_of(lm, L)
        for K in args.ks:
            N = args.particles
            runs = [(run_raw(lm, ids, N * K, args.tokens), run_ours(lm, ids, N, K, args.tokens))
                    for _ in range(args.repeats)]  # interleaved, so that a load spike hits one pair
            raw = min((r for r, _ in runs), key=lambda r: r["wall"])
            ours = min((o for _, o in runs), key=lambda r: r["wall"])
            rows.append([len(ids), f"N={N} K={K}", f"{ours['wall']:.2f}", f"{raw['wall']:.2f}",
                         f"{ours['wall'] / raw['wall']:.2f}", ours["computed"], ours["passes"],
                         f"{ours['copied'] / 2**20:.2f}", f"{ours['peak_mb']:.0f}/{raw['peak_mb']:.0f}"])
            print(table(rows[-1:], HEADER).splitlines()[-1], flush=True)
    return table(rows, HEADER)


def prompts_of(lm, n_tokens: int, P: int) -> list[list[int]]:
    """P different prompts of exactly ``n_tokens`` ids: "Report i." then the text."""
    out = []
    for i in range(P):
        ids = lm.prompt_ids(f"Report {i + 1}. " + TEXT)
        while len(ids) < n_tokens:
            ids = ids + lm.encode(TEXT)
        out.append(ids[:n_tokens])
    return out


def run_map(lm, prompts: list[list[int]], N: int, K: int, n_tokens: int, cascade: bool) -> dict:
    """``ppl.map`` of the lipogram over the prompts on a fresh backend."""
    from ppl.runtime.backends.hf.cached_transformer import CachedTransformer

    lm = CachedTransformer(lm.model, lm.tokenizer, device=lm.device, dtype=lm.dtype, name=lm.name,
                           cascade=None if cascade else False)
    NO_E_NO_EOS.mask(lm)
    lm.batch_next_token_logprobs([tuple(p) for p in prompts])  # cached before timing
    lm.reset_stats()
    inputs = [{"allowed": NO_E_NO_EOS, "n": n_tokens, "prompt_ids": p} for p in prompts]
    gc.collect()
    with PeakRSS() as peak:
        base = rss_mb()
        t0 = time.perf_counter()
        outcomes = list(ppl.map(BenchLipogram, inputs, lm=lm, n_particles=N, expand=K, seed=0,
                                max_concurrent=len(prompts)))
        wall = time.perf_counter() - t0
    bad = [o.error for o in outcomes if o.status != "ok"]
    if bad:
        raise RuntimeError(f"a run failed: {bad[0]}")
    st = lm.stats()
    return {"wall": wall, "copied": copied_per_pass(lm, st), "peak_mb": peak.peak - base,
            "groups": st["shared_groups"] / max(st["cascade_passes"], 1), "passes": st["forward_passes"]}


@torch.inference_mode()
def run_raw_many(lm, prompts: list[list[int]], rows_per: int, n_tokens: int, seed: int = 0) -> dict:
    """One prefill per prompt, the caches repeated and concatenated (see the
    module docstring), R-row decode steps (timed)."""
    from transformers import DynamicCache

    from ppl.runtime.backends.hf.cache_adapter import cache_kwarg_name

    model, device = lm.model, lm.device
    kw = cache_kwarg_name(model)
    allowed = torch.from_numpy(NO_E_NO_EOS.mask(lm).copy()).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    keys, values, first = None, None, []
    for ids in prompts:
        one = DynamicCache(config=model.config)
        out = model(input_ids=torch.tensor([ids], device=device), use_cache=True, logits_to_keep=1, **{kw: one})
        first.append(out.logits[:, -1].expand(rows_per, -1))
        k = [layer.keys.expand(rows_per, -1, -1, -1) for layer in one.layers]
        v = [layer.values.expand(rows_per, -1, -1, -1) for layer in one.layers]
        keys = [[x] for x in k] if keys is None else [ks + [x] for ks, x in zip(keys, k)]
        values = [[x] for x in v] if values is None else [vs + [x] for vs, x in zip(values, v)]
        del one, out
    cache = DynamicCache(config=model.config)
    for i, (ks, vs) in enumerate(zip(keys, values)):
        cache.update(torch.cat(ks), torch.cat(vs), i)
    logits = torch.cat(first)
    del keys, values, first
    return decode_timed(model, logits, cache, kw, allowed, gen, n_tokens)


def sweep_many(lm, args) -> str:
    """Before (``cascade=False``) / after / raw with ``--prompts`` prompts per batch."""
    rows, N, P = [], args.particles, args.prompts
    for L in args.contexts:
        prompts = prompts_of(lm, L, P)
        for K in args.ks:
            runs = [(run_raw_many(lm, prompts, N * K, args.tokens), run_map(lm, prompts, N, K, args.tokens, False),
                     run_map(lm, prompts, N, K, args.tokens, True)) for _ in range(args.repeats)]
            raw, before, after = (min((r[j] for r in runs), key=lambda x: x["wall"]) for j in range(3))
            rows.append([L, f"P={P} N={N} K={K}", P * N * K, f"{before['wall']:.2f}", f"{after['wall']:.2f}",
                         f"{raw['wall']:.2f}", f"{before['wall'] / raw['wall']:.2f}",
                         f"{after['wall'] / raw['wall']:.2f}",
                         f"{before['copied'] / 2**20:.1f}/{after['copied'] / 2**20:.1f}",
                         f"{before['peak_mb']:.0f}/{after['peak_mb']:.0f}/{raw['peak_mb']:.0f}",
                         f"{after['groups']:.2f}"])
            print(table(rows[-1:], HEADER_MANY).splitlines()[-1], flush=True)
    return table(rows, HEADER_MANY)


HEADER_MANY = ["context", "config", "rows", "before s", "after s", "raw s", "before/raw", "after/raw",
               "MiB copied/pass before/after", "peak MiB before/after/raw", "groups/pass"]
HEADER = ["context", "config", "ours s", "raw s", "ratio", "tokens computed", "forwards",
          "MiB copied/pass", "peak MiB ours/raw"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.context", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="contexts 5 500 1500, K=1, 16 new tokens")
    parser.add_argument("--contexts", type=int, nargs="+", default=None, help="prompt lengths in tokens")
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="expansion factors (1 3)")
    parser.add_argument("--particles", type=int, default=16, help="N (16)")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens (32; 16 with --quick)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; the fastest counts (1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--prompts", type=int, default=1,
                        help="different prompts per batch (1); above 1: before/after/raw of ppl.map over them")
    args = parser.parse_args(argv)
    args.contexts = args.contexts or ([5, 500, 1500] if args.quick else CONTEXTS)
    args.ks = args.ks or ([1] if args.quick else [1, 3])
    args.tokens = args.tokens or (16 if args.quick else 32)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    lm = ppl.load_lm()
    print(f"model: {lm.name} on {lm.device} ({lm.dtype}); torch threads: {torch.get_num_threads()}; "
          f"{args.tokens} new tokens, N={args.particles}, prompts per batch {args.prompts}, "
          f"best of {args.repeats}", flush=True)
    warm = prompt_of(lm, 8)
    run_ours(lm, warm, 2, 1, 3)
    run_raw(lm, warm, 2, 3)
    if args.prompts > 1:
        few = prompts_of(lm, 8, 2)
        run_raw_many(lm, few, 2, 3)
        run_map(lm, few, 2, 1, 3, False)
        run_map(lm, few, 2, 1, 3, True)
        print(table([], HEADER_MANY), flush=True)
        print("\n" + sweep_many(lm, args))
        return 0
    print(table([], HEADER), flush=True)
    print("\n" + sweep(lm, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
