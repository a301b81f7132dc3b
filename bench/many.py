"""Many-input benchmark: one program over a data set, one at a time vs ``ppl.map``.

    python -m bench.many                 # 32 prompts, N=8 K=3, the default model
    python -m bench.many --inputs 8      # a quicker run
    python -m bench.many --no-ray        # leave out the Ray engine

The program is the gallery's lipogram (``examples/lipogram.py``: up to 24
tokens without "e", ending at EOS or a full stop) over 32 prompts, "My
favorite writer is" after 32 different openings. Every configuration runs
the same inputs with the same seeds (input ``i`` with ``run_seed(0, i)``), so
each does the same token work and gives the same results:

- **one at a time**: ``ppl.infer`` per input, in a loop;
- **map, M concurrent**: ``ppl.map`` in this process with
  ``max_concurrent=M``: the runs share one scheduler, so a forward pass holds
  the particles of up to M runs;
- **ray, W workers**: ``ppl.map(engine="ray")`` with W actors of one torch
  thread each, each loading the model once.

Each configuration gets a freshly loaded model (no cache carried over). The
ratio is the configuration's inputs per second over one-at-a-time's; the
numbers belong in notes, never in tests.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import torch

import ppl
from ppl.program_files import find_program

OPENINGS = [
    "Honestly,", "If you ask me,", "Since I was a child,", "Between you and me,", "Without a doubt,",
    "On a rainy day,", "In my opinion,", "When I travel,", "At bedtime,", "After a long day,",
    "For what it is worth,", "As a student,", "To be fair,", "These days,", "Like many people,",
    "On weekends,", "In the summer,", "When I was young,", "As a reader,", "If I had to choose,",
    "Among the classics,", "Truth be told,", "Since last year,", "In the evenings,", "Ask anyone:",
    "All things considered,", "In a nutshell,", "Back in school,", "On long trips,", "Right now,",
    "Of all time,", "For me,",
]
N, K = 8, 3


def _lipogram():
    root = Path(__file__).resolve().parents[1]
    _, _, program, _ = find_program(str(root / "examples" / "lipogram.py"))
    return program


def _counters(lm) -> tuple[int, float]:
    s = lm.stats()
    return s["forward_passes"], s["rows_per_pass_mean"]


def one_at_a_time(program, inputs):
    lm = ppl.load_lm()
    t0 = time.perf_counter()
    results = [ppl.infer(program(lm, **inp), n_particles=N, expand=K, seed=ppl.run_seed(0, i))
               for i, inp in enumerate(inputs)]
    return time.perf_counter() - t0, results, _counters(lm)


def mapped(program, inputs, max_concurrent):
    lm = ppl.load_lm()
    t0 = time.perf_counter()
    outcomes = sorted(ppl.map(program, inputs, lm=lm, n_particles=N, expand=K, seed=0,
                              max_concurrent=max_concurrent), key=lambda o: o.index)
    return time.perf_counter() - t0, [o.result for o in outcomes], _counters(lm)


def ray_mapped(program, inputs, workers):
    t0 = time.perf_counter()
    outcomes = sorted(ppl.map(program, inputs, lm=functools.partial(ppl.load_lm), engine="ray",
                              num_workers=workers, threads_per_worker=1, n_particles=N, expand=K,
                              seed=0, max_concurrent=len(inputs)), key=lambda o: o.index)
    return time.perf_counter() - t0, [o.result for o in outcomes]


def _same(a, b) -> str:
    """How many runs gave the same results as one at a time: the same
    outcomes with the same weights to 1e-6. Batches of other shapes move
    float32 log-probs in their last bits, and now and then that flips a draw,
    after which the run goes another way (equally valid, not the same)."""
    same = 0
    for x, y in zip(a, b):
        px, py = x.posterior(), y.posterior()
        same += list(px) == list(py) and all(abs(px[k] - py[k]) <= 1e-6 for k in px)
    return f"{same}/{len(b)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=32, help="how many prompts (at most 32)")
    ap.add_argument("--no-ray", action="store_true", help="leave out the Ray engine")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in this process (1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    inputs = [{"prompt": f"{o} my favorite writer is"} for o in OPENINGS[: args.inputs]]
    program = _lipogram()
    print(f"{len(inputs)} prompts, lipogram, N={N} K={K}, default model on cpu; torch threads: {args.threads}")
    rows = []
    base_t, base, (f, r) = one_at_a_time(program, inputs)
    rows.append(("one at a time", base_t, f, r, f"{len(base)}/{len(base)}"))
    for m in (8, 32):
        t, res, (f, r) = mapped(program, inputs, m)
        rows.append((f"map, {m} concurrent", t, f, r, _same(res, base)))
    if not args.no_ray:
        try:
            t, res = ray_mapped(program, inputs, 2)
            rows.append(("ray, 2 workers x 1 thread", t, None, None, _same(res, base)))
        except Exception as exc:  # the extra may be missing: say so, keep the table
            print(f"ray: not measured ({type(exc).__name__}: {exc})")
    print(f"\n{'configuration':>28}  {'wall s':>7}  {'inputs/s':>8}  {'forwards':>8}  {'rows/pass':>9}  "
          f"{'ratio':>5}  same results")
    for name, t, f, r, same in rows:
        rate = len(inputs) / t
        print(f"{name:>28}  {t:7.2f}  {rate:8.2f}  {f if f is not None else '-':>8}  "
              f"{f'{r:.1f}' if r is not None else '-':>9}  {base_t / t:5.2f}  {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
