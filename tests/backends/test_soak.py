"""Soak test: consecutive inferences on the default model under a KV budget.

Marked slow (it loads SmolLM2-135M-Instruct). Each run is ``N`` particles of
SMC steering (``expand=K``) over a program that never finishes early: EOS and
special tokens are forbidden, so every particle runs the full ``T`` tokens.
After every run the KV bytes the trie holds stay within the budget
(``lm.stats()["bytes_held"] <= memory_budget_bytes``) and the trie's
invariants hold; the resident memory of the process after the 5th run is
within 10% of its value after the 1st (a leak of pinned nodes, buffers or
futures would grow it run by run).

The budget is the ``N`` particles' own positions of one run (plus 64): the
pins of one run fit, and later runs evict what earlier ones left.

The issue's size (5 runs of N=64, 384 tokens) is far too slow for CI on a
2-core CPU: one batch of 64 rows on SmolLM2-135M (float32, one thread) took
0.35 s at a 64-token context, 0.72 s at 192 and 1.08 s at 384, so the 384
steps of one run cost about 4 minutes of forward passes alone, 5 runs 20
minutes or more; it runs with ``PPL_SOAK_FULL=1``. The default size keeps the
same shape (resampling, shared prefixes, evictions under the budget) at N=16,
K=2, 64 tokens: 15-37 s a run on a shared 2-core machine, under 2 minutes in
all; resident memory grew 4-5% from the 1st run to the 5th (about 1085 to
1130-1140 MB: the gather buffer reaching its size in the 2nd run).
"""

from __future__ import annotations

import gc
import os
import time

import pytest

import ppl

pytestmark = pytest.mark.slow

FULL = os.environ.get("PPL_SOAK_FULL") == "1"
N, K, T = (64, 2, 384) if FULL else (16, 2, 64)
RUNS = 5
NO_EOS = ppl.not_eos() & ppl.no_special()


class Ramble(ppl.Model):
    """Exactly ``n`` tokens after ``prompt``, EOS never allowed."""

    def __init__(self, lm, prompt: str, n: int):
        super().__init__()
        self.ctx = lm.context(prompt)
        self.left = n

    async def step(self):
        await self.sample(self.ctx.next_token().where(NO_EOS))
        self.left -= 1
        if self.left == 0:
            self.finish()


def resident_bytes() -> int:
    """Resident set size of this process."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return psutil.Process().memory_info().rss


@pytest.fixture(scope="module")
def lm():
    """A fresh load (the session's ``default_lm`` has no budget): room for
    the ``N`` particles' own positions of one run and a little more, so that
    later runs evict what earlier ones left."""
    lm = ppl.load_lm()
    lm.memory_budget_bytes = (N * T + 64) * lm._bytes_per_slot
    return lm


def test_consecutive_runs_keep_the_budget_and_the_resident_memory(lm):
    rss, seconds = [], []
    for run in range(RUNS):
        t0 = time.perf_counter()
        result = ppl.infer(Ramble(lm, "Once upon a time", T), method="steer",
                           n_particles=N, expand=K, seed=run)
        assert all(len(p.ctx.token_ids) == T for p in result.particles)
        del result  # its particles' pins go with it
        gc.collect()
        st = lm.stats()
        assert st["bytes_held"] <= lm.memory_budget_bytes, (run, st["bytes_held"])
        assert st["pinned_pending"] == 0
        lm.check_integrity()
        rss.append(resident_bytes())
        seconds.append(round(time.perf_counter() - t0, 1))
    print(f"soak N={N} K={K} T={T}: resident MB after each run",
          [round(r / 2**20, 1) for r in rss], "s per run", seconds,
          {k: lm.stats()[k] for k in ("bytes_held", "evictions", "forward_passes", "tokens_computed")})
    assert rss[-1] <= 1.10 * rss[0], rss
    assert lm.stats()["evictions"] > 0  # the budget was binding
