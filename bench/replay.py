"""Replay benchmark: the cost of cloning ``@ppl.program`` particles.

    python -m bench.replay               # 50, 200 and 400 tokens
    python -m bench.replay --quick       # 50 and 200 tokens
    python -m bench.replay --profile 200 # cProfile of the function form at 200 tokens

The same program twice, on a :class:`~ppl.runtime.backends.toy.ToyLM` (no
neural network: what is measured is the runtime's own Python work): a
lipogram that draws ``n`` tokens conditioned to lack the letter "e", written
as a class (``ppl.Model``, cloned by copying attributes) and as a
``@ppl.program`` function (cloned by copying its suspended coroutine, and
again by replaying its trace, as where a coroutine cannot be copied). All
run SMC steering with ``N = 16`` particles and ``K = 3`` in the same
process, with the same seed, and print the wall times and their ratios to
the class form's.
Timings are wall-clock on whatever machine runs this; they belong in notes,
never in tests.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

import numpy as np
import torch

import ppl
from ppl.runtime.backends.toy import ToyLM

VOCAB = ["a", "b", "c", "d", "e", "f", " ", "<eos>"]
NO_E = ppl.lacks("e") & ppl.not_eos()
N, K = 16, 3


def toy(seed: int = 0) -> ToyLM:
    """A fixed next-token distribution, the same for every prefix (cheap)."""
    probs = np.random.default_rng(seed).dirichlet(np.full(len(VOCAB), 2.0))
    return ToyLM(VOCAB, lambda prefix: probs, eos="<eos>")


class ClassLipogram(ppl.Model):
    def __init__(self, lm, n: int):
        super().__init__()
        self.ctx = lm.context("")
        self.left = n

    async def step(self):
        await self.sample(self.ctx.next_token().where(NO_E))
        self.left -= 1
        if self.left == 0:
            self.finish()


@ppl.program
async def fn_lipogram(lm, n: int):
    ctx = lm.context("")
    for _ in range(n):
        await ppl.sample(ctx.next_token().where(NO_E))
    return ctx.text


def timed(model, copy_frames: bool = True) -> tuple[float, ppl.InferenceResult]:
    """Wall time and result of one run; ``copy_frames=False`` clones
    ``@ppl.program`` particles by replay instead of copying their coroutine."""
    program_model = sys.modules["ppl.program"].ProgramModel
    program_model.copy_frames = copy_frames
    try:
        t0 = time.perf_counter()
        result = ppl.infer(model, method="steer", n_particles=N, expand=K, seed=0)
        return time.perf_counter() - t0, result
    finally:
        program_model.copy_frames = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 and 200 tokens only")
    parser.add_argument("--lengths", type=int, nargs="*", help="token counts (default 50 200 400)")
    parser.add_argument("--profile", type=int, metavar="TOKENS", help="profile the function form")
    args = parser.parse_args(argv)
    lm = toy()
    if args.profile:
        cProfile.runctx("timed(fn_lipogram(lm, args.profile))", globals(), locals(), "/dev/null")
        prof = cProfile.Profile()
        prof.runcall(timed, fn_lipogram(lm, args.profile))
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0
    lengths = args.lengths or ([50, 200] if args.quick else [50, 200, 400])
    print(f"ToyLM ({len(VOCAB)} tokens), smc_steer N={N} K={K}, lipogram; threads: torch {torch.get_num_threads()}")
    print(f"{'tokens':>7} {'class s':>9} {'copy s':>8} {'ratio':>6} {'replay s':>9} {'ratio':>6}")
    for n in lengths:
        t_class, r_class = timed(ClassLipogram(lm, n))
        t_copy, r_copy = timed(fn_lipogram(lm, n))
        t_replay, r_replay = timed(fn_lipogram(lm, n), copy_frames=False)
        same = all(np.allclose(r_class.log_weights, r.log_weights) for r in (r_copy, r_replay))
        print(f"{n:>7} {t_class:>9.2f} {t_copy:>8.2f} {t_copy / t_class:>6.2f} {t_replay:>9.2f} "
              f"{t_replay / t_class:>6.2f}" + ("" if same else "  (results differ!)"))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
