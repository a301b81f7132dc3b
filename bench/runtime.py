"""Runtime benchmark: SMC steering on the default model vs raw batched decoding.

    python -m bench.runtime              # the full table and the length sweep
    python -m bench.runtime --quick      # fewer configs, for a smoke run
    python -m bench.runtime --memory     # also peak RSS during each run, in fresh processes
    python -m bench.runtime --contexts 5 500 1500   # also the context sweep (bench.context)

The program is the lipogram: after "My favorite writer is", draw tokens
conditioned to contain no letter "e" (and not to end the text), for a fixed
number of new tokens. For each configuration, in the same process:

- **ours**: ``smc_steer`` with N particles and expansion factor K, every
  request answered by the CachedTransformer (shared prefix trie, one batched
  forward per step);
- **raw**: plain batched decoding of the same token work: ``B = N*K`` rows,
  one forward per step with a transformers ``DynamicCache``, the same mask,
  ``torch.multinomial`` sampling.

The ratio is ours / raw wall time (lower is better; 1.0 means the SMC
machinery costs nothing beyond decoding). Timings are wall-clock on whatever
machine runs this; the numbers belong in notes, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
import time

import torch

import ppl

PROMPT = "My favorite writer is"
CONFIGS = [(4, 1), (16, 1), (16, 3), (64, 1), (64, 3)]
LENGTHS = [24, 96, 384]


# Allowed next tokens: no "e" in the text, not EOS, no special token.
NO_E_NO_EOS = ppl.lacks("eE") & ppl.no_special() & ppl.not_eos()


class BenchLipogram(ppl.Model):
    """``n`` tokens, each drawn from ``p(. | allowed)``, after ``PROMPT`` (or
    the token ids ``prompt_ids``: bench.context's long prompts)."""

    def __init__(self, lm, allowed: ppl.TokenConstraint, n: int, prompt_ids=None):
        super().__init__()
        self.ctx = lm.context(PROMPT) if prompt_ids is None else lm.context(prompt_ids=prompt_ids)
        self.allowed, self.left = allowed, n

    async def step(self):
        await self.sample(self.ctx.next_token().where(self.allowed))
        self.left -= 1
        if self.left == 0:
            self.finish()


def fresh(lm):
    """A CachedTransformer on the same weights with an empty cache, so that
    no run profits from an earlier one's prefixes."""
    from ppl.runtime.backends.hf.cached_transformer import CachedTransformer

    return CachedTransformer(lm.model, lm.tokenizer, device=lm.device, dtype=lm.dtype, name=lm.name)


def run_ours(lm, N: int, K: int, n_tokens: int, seed: int = 0) -> dict:
    lm = fresh(lm)
    allowed = NO_E_NO_EOS
    allowed.mask(lm)  # build the mask outside the timing, as raw does
    t0 = time.perf_counter()
    result = asyncio.run(ppl.smc_steer(BenchLipogram(lm, allowed, n_tokens), N, K, seed=seed))
    wall = time.perf_counter() - t0
    stats = lm.stats()
    particle_steps = N * K * n_tokens
    return {
        "wall": wall,
        "particle_steps": particle_steps,
        "forward_passes": stats["forward_passes"],
        "rows_per_pass": stats["rows_per_pass_mean"],
        "tokens_computed": stats["tokens_computed"],
        "computed_per_step": (stats["tokens_computed"] - len(lm.prompt_ids(PROMPT))) / particle_steps,
        "kv_bytes": stats["pool_bytes"] + stats["buffer_bytes"],
        "log_Z": result.log_Z,
    }


@torch.inference_mode()
def run_raw(lm, B: int, n_tokens: int, seed: int = 0) -> dict:
    """Plain batched decoding: B rows, one forward per new token, DynamicCache."""
    from ppl.runtime.backends.hf.cache_adapter import cache_kwarg_name
    from transformers import DynamicCache

    model, device = lm.model, lm.device
    kw = cache_kwarg_name(model)
    allowed = torch.from_numpy(NO_E_NO_EOS.mask(lm).copy()).to(device)
    prompt = torch.tensor([lm.prompt_ids(PROMPT)] * B, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    t0 = time.perf_counter()
    cache = DynamicCache()
    out = model(input_ids=prompt, use_cache=True, logits_to_keep=1, **{kw: cache})
    tokens = []
    for i in range(n_tokens):
        logits = out.logits[:, -1, : len(allowed)].float()
        lp = torch.log_softmax(logits, dim=-1).masked_fill(~allowed, float("-inf"))
        tok = torch.multinomial(torch.softmax(lp, dim=-1), 1, generator=gen)
        tokens.append(tok)
        if i + 1 < n_tokens:
            out = model(input_ids=tok, use_cache=True, logits_to_keep=1, **{kw: out.past_key_values if kw == "past_key_values" else cache})
    wall = time.perf_counter() - t0
    kv = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    return {"wall": wall, "tokens": B * n_tokens, "kv_bytes": kv}


def rss_mb() -> float:
    """Current resident set size (Linux ``/proc``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakRSS:
    """Samples the resident set size every 2 ms while a block runs (the
    process-wide maximum would be set by loading the model, not by the run)."""

    def __enter__(self):
        import threading

        self.peak, self._stop = rss_mb(), threading.Event()

        def sample():
            while not self._stop.wait(0.002):
                self.peak = max(self.peak, rss_mb())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def measure_one(kind: str, N: int, K: int, n_tokens: int) -> dict:
    """One run in this (fresh) process: its peak resident memory."""
    lm = ppl.load_lm()
    run_ours(lm, 2, 1, 2) if kind == "ours" else run_raw(lm, 2, 2)  # warm up
    gc.collect()
    base = rss_mb()
    with PeakRSS() as peak:
        out = run_ours(lm, N, K, n_tokens) if kind == "ours" else run_raw(lm, N * K, n_tokens)
    out.update(peak_rss_mb=peak.peak, rss_before_mb=base)
    return out


def _subprocess_peak(kind, N, K, n) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.runtime", "--one", kind, str(N), str(K), str(n)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[list], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(str(x).rjust(w) for x, w in zip(r, widths))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def config_table(lm, args, best) -> str:
    """The (N, K) table: ours against raw decoding, per configuration."""
    rows = []
    for N, K in ([(4, 1), (16, 3)] if args.quick else CONFIGS):
        raw = best(run_raw, lm, N * K, args.tokens)
        ours = best(run_ours, lm, N, K, args.tokens)
        row = [f"N={N} K={K}", f"{ours['wall']:.3f}", f"{raw['wall']:.3f}",
               f"{ours['particle_steps'] / ours['wall']:.0f}", f"{raw['tokens'] / raw['wall']:.0f}",
               f"{ours['wall'] / raw['wall']:.2f}", ours["forward_passes"], f"{ours['rows_per_pass']:.1f}",
               f"{ours['computed_per_step']:.3f}",
               f"{ours['kv_bytes'] / 2**20:.1f}/{raw['kv_bytes'] / 2**20:.1f}"]
        if args.memory:
            po, pr = _subprocess_peak("ours", N, K, args.tokens), _subprocess_peak("raw", N, K, args.tokens)
            row.append(f"{po['peak_rss_mb']:.0f}/{pr['peak_rss_mb']:.0f}")
            row.append(f"{po['peak_rss_mb'] - po['rss_before_mb']:.0f}/{pr['peak_rss_mb'] - pr['rss_before_mb']:.0f}")
        rows.append(row)
    header = ["config", "ours s", "raw s", "particle-steps/s", "raw tokens/s", "ratio",
              "forwards", "rows/pass", "computed/step", "KV MiB ours/raw"]
    if args.memory:
        header += ["peak RSS MiB ours/raw", "run growth MiB ours/raw"]
    return table(rows, header)


def sweep_table(lm, args, best) -> str:
    """The length sweep at N=16 K=1."""
    rows = []
    for n in ([24, 96] if args.quick else LENGTHS):
        raw = best(run_raw, lm, 16, n)
        ours = best(run_ours, lm, 16, 1, n)
        rows.append([n, f"{ours['wall']:.3f}", f"{raw['wall']:.3f}",
                     f"{1e3 * ours['wall'] / ours['particle_steps']:.3f}",
                     f"{1e3 * raw['wall'] / raw['tokens']:.3f}",
                     f"{ours['wall'] / raw['wall']:.2f}", f"{ours['computed_per_step']:.3f}"])
    return table(rows, ["new tokens", "ours s", "raw s", "ms/particle-step", "raw ms/token",
                        "ratio", "computed/step"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="configs (4,1), (16,3) and lengths 24, 96")
    parser.add_argument("--tokens", type=int, default=24, help="new tokens per particle (24)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per config; the fastest counts (2)")
    parser.add_argument("--memory", action="store_true", help="peak RSS per run, in fresh processes")
    parser.add_argument("--no-sweep", action="store_true", help="skip the length sweep")
    parser.add_argument("--contexts", type=int, nargs="+", default=None,
                        help="also run the context sweep (python -m bench.context) at these prompt lengths")
    parser.add_argument("--one", nargs=4, metavar=("KIND", "N", "K", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, N, K, n = args.one[0], *map(int, args.one[1:])
        print(json.dumps(measure_one(kind, N, K, n)))
        return 0

    torch.set_grad_enabled(False)
    t_load = time.perf_counter()
    lm = ppl.load_lm()
    print(f"model: {lm.name} on {lm.device} ({lm.dtype}), loaded in {time.perf_counter() - t_load:.1f} s; "
          f"torch threads: {torch.get_num_threads()}")
    run_ours(lm, 2, 2, 4)  # warm up both paths
    run_raw(lm, 4, 4)

    def best(fn, *a):
        runs = [fn(*a) for _ in range(args.repeats)]
        return min(runs, key=lambda r: r["wall"])

    print(f"\nlipogram, {args.tokens} new tokens, best of {args.repeats}")
    print(config_table(lm, args, best))
    if not args.no_sweep:
        print("\nlength sweep, N=16 K=1")
        print(sweep_table(lm, args, best))
    if args.contexts:
        from . import context

        print("\ncontext sweep (python -m bench.context)")
        context.main(["--contexts", *map(str, args.contexts), "--threads", str(torch.get_num_threads())]
                     + (["--quick"] if args.quick else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
