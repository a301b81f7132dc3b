"""The vLLM backend against vLLM's own batched generation, in one process.

    .venv-vllm/bin/python -m bench.vllm                 # N in {16, 64}, K in {1, 3}, the default model
    .venv-vllm/bin/python -m bench.vllm --quick         # N=16 only, 12 tokens
    .venv-vllm/bin/python -m bench.vllm --model DIR     # another model folder

The program is the gallery's lipogram (``examples/lipogram.py``: tokens
without "e", at most ``--tokens``). For each (N, K):

- **ppl**: ``smc_steer`` with N particles and expansion K through the vLLM
  backend: one engine call per step for the N*K candidates (fewer once
  particles finish);
- **raw**: ``LLM.generate`` of N*K copies of the prompt with as many new
  tokens as the ppl run took steps (``ignore_eos``), the token work of the
  ppl run done by vLLM's own decoding loop.

Reported: the ratio of wall times, ppl's engine calls, the time inside the
engine calls, and the overhead outside them (the runtime, the mask, the copy
of log-probs to numpy). Each engine call of the backend is a fresh set of
requests, whose prompts vLLM's prefix cache finds in whole KV blocks, so up
to ``block_size - 1`` tokens per row are computed again at every step: the
``--block-size`` option shows how that trades off. Numbers belong in notes,
never in tests.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import ppl  # noqa: E402
from ppl.program_files import find_program  # noqa: E402

PROMPT = "My favorite writer is"


def _lipogram_class():
    root = Path(__file__).resolve().parents[1]
    _, _, program, _ = find_program(str(root / "examples" / "lipogram.py"))
    return program


def _ppl_run(lm, program, n: int, k: int, tokens: int) -> dict:
    before = lm.stats()
    t0 = time.perf_counter()
    result = ppl.infer(program(lm, PROMPT, n=tokens), method="steer", n_particles=n, expand=k, seed=0)
    wall = time.perf_counter() - t0
    after = lm.stats()
    calls = after["engine_calls"] - before["engine_calls"]
    engine = after["engine_seconds"] - before["engine_seconds"]
    rows = after["rows_sent"] - before["rows_sent"]
    return dict(wall=wall, steps=result.n_steps, calls=calls, engine=engine, rows=rows)


def _raw_run(lm, rows: int, tokens: int) -> float:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    prompt = TokensPrompt(prompt_token_ids=lm.prompt_ids(PROMPT))
    params = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=1.0, seed=0, detokenize=False)
    t0 = time.perf_counter()
    lm.llm.generate([prompt] * rows, params, use_tqdm=False)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a model folder (default: the packaged default model)")
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    import torch

    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    lm = ppl.load_lm(args.model, backend="vllm", enforce_eager=True, max_model_len=1024,
                     block_size=args.block_size)
    print(f"loaded {lm.name} in {time.perf_counter() - t0:.1f} s; torch threads {threads}; "
          f"block_size {args.block_size}", flush=True)
    program = _lipogram_class()
    grid = [(16, 1), (16, 3)] if args.quick else [(16, 1), (16, 3), (64, 1), (64, 3)]
    tokens = 12 if args.quick else args.tokens
    _ppl_run(lm, program, 4, 1, 4)  # warm-up: first engine calls, the mask tables
    print(f"| N | K | steps | ppl s | raw s | ratio | engine calls | in engine s | outside s |")
    print(f"|---|---|---|---|---|---|---|---|---|")
    for n, k in grid:
        ours = _ppl_run(lm, program, n, k, tokens)
        raw = _raw_run(lm, n * k, ours["steps"])
        outside = ours["wall"] - ours["engine"]
        print(f"| {n} | {k} | {ours['steps']} | {ours['wall']:.2f} | {raw:.2f} | {ours['wall'] / raw:.2f} "
              f"| {ours['calls']} | {ours['engine']:.2f} | {outside:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
