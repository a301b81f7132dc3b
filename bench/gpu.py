"""The GPU check: the CachedTransformer's correctness and speed on one device.

    python -m bench.gpu --tiny --device cpu --out /tmp/gpu-out    # seconds, on any CPU (the test runs it)
    python -m bench.gpu --device cuda --tokenizer DIR --out DIR   # the full check, ~1B model, bf16
    python -m bench.gpu --export-tokenizer DIR                    # save SmolLM2's tokenizer (3.4 MB)

Models are built from configs with random weights (``torch.manual_seed``):
speed does not depend on the weights, and cached-vs-plain agreement holds for
any weights. The full model is a Llama of about 1.07B parameters (hidden
2048, 16 layers, 32 heads, 8 KV heads, intermediate 8192, tied embeddings,
SmolLM2's vocabulary of 49152); ``--tiny`` is a 2-layer Llama of hidden 64
(over a byte-level tokenizer built in code, or ``--tokenizer DIR``'s).

In this order, so that a run cut short has done the important part first
(every step prints a progress line; the JSON is rewritten after each one):

1. **correctness, fp32** (tolerance 1e-4 absolute on log-probs): the
   CachedTransformer's log-probs against one plain forward (no cache, batch
   of one, no padding) of each full sequence, on 120 prefix sets (one
   ``batch_next_token_logprobs`` call each): shared stems with branches,
   unshared sequences, extensions of earlier sets' sequences (trie reuse),
   repeats (log-prob cache hits), mixed lengths, duplicates; each set goes
   to a CachedTransformer without a memory budget and to one whose budget
   (1.5 longest sequences of KV) forces evictions after nearly every set.
2. **correctness, bf16**: the same on the same weights in bfloat16 against
   plain bf16 forwards; tolerance 0.1 absolute (``BF16_TOL``), or twice the
   noise floor if that is larger: the noise floor is the largest distance of
   plain bf16 from plain fp32 log-probs on the same prefixes (a cached pass
   may be off by bf16's own error in the other direction). Also reported:
   the cached bf16 log-probs' distance from fp32, and ``row_spread`` /
   ``row_spread_max``, the mean / (median over sets of the) largest distance
   of a prefix's log-probs from the set's mean row (what a wrong key,
   position or mask would cost). Measured here on the CPU with the full 1B
   config: fp32 1.5e-5; bf16 0.098 cached vs plain, 0.138 plain vs fp32,
   0.133 cached vs fp32; row spread 0.49 (mean).
3. **SMC checks** on a 4-token tiny Llama on the chosen device (fp32):
   ``smc_steer`` and ``smc_standard`` through the CachedTransformer give the
   same particles and weights as through a plain uncached model, and as the
   CachedTransformer on the CPU, with the same seeds; and the mean of
   ``Z_hat`` over 40 seeded runs matches the exact ``Z`` (enumerated from
   plain forwards) within 3.9 standard errors (the exact-answer tests).
4. **speed**: ``smc_steer`` on the lipogram (no "e", no EOS, no special
   token, a fixed number of new tokens) after a random prompt of ``ctx``
   tokens, against raw batched decoding of the same ``B = N*K`` rows in the
   same process (the prompt prefilled once and its ``DynamicCache``
   repeated to ``B`` rows, then one forward per token, the same mask,
   ``torch.multinomial``). Per configuration: wall times (a plain run of
   each), particle-steps/s, the ratio ours/raw, forward passes, rows per
   pass, peak GPU memory (``torch.cuda.max_memory_allocated``, reset before
   each run; total and above the weights; "-" on a CPU) and the share of
   time outside the model's forward (a second, profiled run of each, the
   forward timed by hooks that synchronise the device before and after it).
   Full grid: N in {16, 64, 256} x K in {1, 3} x ctx in {100, 2000}, 32 new
   tokens; ``--quick``: N in {16, 64}, 16 new tokens; ``--tiny``: N in
   {4, 16}, K in {1, 2}, ctx in {20, 200}, 8 new tokens; run by N, then
   ctx, then K. A configuration whose predicted time would pass ``--budget``
   seconds (330 by default, counted from the start of ``main``) is skipped
   and listed as skipped.

Output: one table on stdout, and ``OUT/gpu-bench.json`` (+ ``.txt``); the
exit status is 1 when a correctness check failed, 3 when the preflight (one
two-row batch through a CachedTransformer, before anything else) failed,
else 0.

Running it on the GPU machine (no network; Python 3.12, torch 2.11,
transformers 5.17 there; at most 64 MiB travels)
-----------------------------------------------------------------------------

Here, once, from the repository root (``.whl/`` and ``bench-out/`` are ignored)::

    echo /.whl/ >> .git/info/exclude
    .venv/bin/python -m bench.gpu --export-tokenizer bench-out/tokenizer
    .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 \\
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \\
        transformers==5.24.0 lark==1.3.1 llguidance==1.9.1 platformdirs==4.14.9 gguf==0.19.0

(17 MB of wheels and 3.4 MB of tokenizer.) Why each:

- ``transformers==5.24.0`` (13.5 MB): the CachedTransformer passes a 2-D
  ``logits_to_keep`` (one column per row), which transformers 5.24 takes
  (``modeling_utils.slice_logits_to_keep``) and 5.17, the machine's own,
  does not: there every batch of more than one row fails. The preflight
  says so in seconds. 5.24 imports with that machine's huggingface_hub 1.33,
  tokenizers 0.23.2 and safetensors 0.8.0 (tried here). If the runtime has
  meanwhile been made to work on 5.17, leave this wheel out and run on 5.17.
- ``lark``: imported by ``import ppl`` (the DSL). ``llguidance``,
  ``platformdirs`` and ``gguf`` are imported lazily and not by this check;
  they are carried so that nothing is missing. numpy, pyyaml, requests,
  tqdm, regex, typer, tokenizers, safetensors, accelerate are there already.
- ppl itself need not be installed there: this script maps ``ppl.runtime``
  and ``ppl.grammars`` onto the source folders ``runtime/`` and
  ``grammar/``, as the editable install does.

Then one device call with ``carry: [".whl", "bench-out/tokenizer"]`` and
``timeout_s: 480``, the command::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail; \\
    PYTHONUNBUFFERED=1 python3 -m bench.gpu --device cuda --tokenizer bench-out/tokenizer \\
        --out $OUT 2>&1 | tee $OUT/log.txt

It is meant to finish in under 6 minutes: ``--budget 330`` (seconds from
the start of ``main``) skips the speed configurations predicted not to fit,
which come last, and lists them. ``$OUT/gpu-bench.json`` is rewritten after
every section and speed row, so it comes back even from a run cut short. If
the first try fails for want of time, rerun at once with ``--quick`` (the
same correctness, a speed grid of N in {16, 64} and 16 new tokens).
"""

from __future__ import annotations

import sys
from pathlib import Path


def _map_source_packages() -> None:
    """Where ``ppl.runtime`` cannot be found (the GPU machine gets the working
    tree only, with ppl-steer not installed), map ``ppl.runtime`` and
    ``ppl.grammars`` onto the source folders ``runtime/`` and ``grammar/``, as
    the editable install's finder does. A no-op where ppl is installed."""
    import importlib.machinery
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    spec = importlib.util.find_spec("ppl")  # finds, does not import
    if spec is None or spec.submodule_search_locations is None:
        return
    where = list(spec.submodule_search_locations)
    for finder in sys.meta_path:
        try:
            if finder.find_spec("ppl.runtime", where) is not None:
                return
        except Exception:  # noqa: BLE001, S112 - a finder that cannot answer
            continue
    folders = {"ppl.runtime": root / "runtime", "ppl.grammars": root / "grammar"}

    class _SourceFinder(importlib.machinery.PathFinder):
        @classmethod
        def find_spec(cls, fullname, path=None, target=None):
            folder = folders.get(fullname)
            if folder is None:
                return None
            return importlib.util.spec_from_file_location(
                fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
            )

    sys.meta_path.insert(0, _SourceFinder)


_map_source_packages()

import argparse
import asyncio
import copy
import gc
import json
import math
import platform
import time
from statistics import NormalDist

import numpy as np
import torch
from ppl.runtime.backends.hf.cache_adapter import cache_kwarg_name
from ppl.runtime.backends.hf.cached_transformer import CachedTransformer
from ppl.runtime.backends.hf.devices import dtype_name, parse_device
from ppl.runtime.lm import LanguageModel

import ppl
from bench.runtime import NO_E_NO_EOS, BenchLipogram, table

FP32_TOL = 1e-4  # max |cached - plain| on log-probs, float32
# bfloat16 keeps 8 significant bits: a log-prob near -11 is rounded to 1/32, and
# logits near 4 to 1/64, before any difference of kernels; a cached pass differs
# from a plain one by the order of its reductions (attention over gathered keys,
# a masked or unmasked SDPA kernel), which on the CPU moves log-probs by up to
# ~0.03-0.05 (tiny and 8-layer models; plain bf16 is as far from fp32). 0.1
# allows that with room (or twice the measured noise floor, if larger) and still
# catches a wrong key, position or mask, which moves log-probs by tenths to units.
BF16_TOL = 0.1
SMC_TOL = 1e-4  # log weights and log Z, cached vs plain (float32 on both)
Z_ALPHA = 1e-4  # false-failure probability of the exact-Z check

FULL = {  # ~1.07B parameters: Llama-3.2-1B's shape with SmolLM2's vocabulary
    "vocab_size": 49152, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 4096,
    "rope_theta": 130000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-5,
}
TINY = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 512, "tie_word_embeddings": False,
}

GRIDS = {  # N values, K values, prompt lengths, new tokens, correctness max length
    "full": {"Ns": [16, 64, 256], "Ks": [1, 3], "ctxs": [100, 2000], "tokens": 32, "max_len": 384},
    "quick": {"Ns": [16, 64], "Ks": [1, 3], "ctxs": [100, 2000], "tokens": 16, "max_len": 384},
    "tiny": {"Ns": [4, 16], "Ks": [1, 2], "ctxs": [20, 200], "tokens": 8, "max_len": 48},
}
N_SETS = 120
JSON_NAME = "gpu-bench.json"

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[gpu {time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


# ------------------------------------------------------------------ tokenizers
TINY_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "then the other one said that there is nothing in the thing",
    "hello world, hello there; a steering program draws tokens",
    "sequential monte carlo with particles and weights and resampling",
] * 4


def tiny_tokenizer(vocab_size: int = 300):
    """A GPT-2-style byte-level BPE (256 byte tokens, a few merges,
    ``<|endoftext|>`` as BOS and EOS), trained in code in a few milliseconds."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[eos], show_progress=False)
    tok.train_from_iterator(TINY_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=eos)


def default_tokenizer():
    """SmolLM2's tokenizer, from the packaged default model: the safetensors
    cache folder when it has been built (fast), else the GGUF file (~10 s)."""
    from ppl.runtime.backends.hf.model_files import (
        default_model_path,
        file_key,
        gguf_cache_folder,
        read_marker,
    )
    from transformers import AutoTokenizer

    gguf = default_model_path()
    folder = gguf_cache_folder(gguf, file_key(gguf))
    if read_marker(folder) is not None and (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)


def load_tokenizer(folder: str | Path):
    """A tokenizer saved with ``save_pretrained``; if this transformers cannot
    read its config (another version wrote it), from ``tokenizer.json`` and
    the special tokens named in ``tokenizer_config.json``."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = Path(folder)
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - fall back to the plain fast tokenizer
        log(f"AutoTokenizer could not read {folder} ({type(exc).__name__}: {exc}); reading tokenizer.json")
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
        special = {k: cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")
                   if isinstance(cfg.get(k), str)}
        return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **special)


def export_tokenizer(folder: str | Path) -> int:
    tok = default_tokenizer()
    folder = Path(folder)
    tok.save_pretrained(str(folder))
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    back = load_tokenizer(folder)
    assert len(back) == len(tok) and back.encode("hello world") == tok.encode("hello world")
    print(f"saved {type(tok).__name__} ({len(tok)} tokens) to {folder} ({size / 2**20:.1f} MiB)")
    return 0


# ---------------------------------------------------------------------- models
def build_model(cfg: dict, tokenizer, device, dtype, seed: int = 0, spread: bool = False):
    """A random-init ``LlamaForCausalLM`` built on ``device`` (seeded).
    ``spread``: redraw the output head larger, so that next-token
    distributions are far from uniform (as the tests' tiny models do)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**cfg, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    if spread:
        with torch.no_grad():
            head = model.get_output_embeddings().weight
            g = torch.Generator().manual_seed(seed + 1)
            head.copy_((torch.randn(head.shape, generator=g) * 0.2).to(head.device))
    return model.to(dtype=dtype).eval().requires_grad_(False)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def cuda_on(device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


def sync(device) -> None:
    if cuda_on(device):
        torch.cuda.synchronize(device)


def free_memory(device) -> None:
    gc.collect()
    if cuda_on(device):
        torch.cuda.empty_cache()


def preflight(model, tokenizer, device, dtype) -> str | None:
    """One batch of two rows of different lengths through a CachedTransformer:
    the error (with a hint) if it fails, else None. Catches in seconds what
    would otherwise fail the first prefix set."""
    ct = CachedTransformer(model, tokenizer, device=device, dtype=dtype, name="preflight")
    try:
        got = ct.batch_next_token_logprobs([(1, 2, 3), (4, 5)])
        assert len(got) == 2 and got[0].shape == (len(ct.vocab),)
    except Exception as exc:  # noqa: BLE001 - reported, then the run stops
        import transformers
        from transformers import modeling_utils

        msg = f"{type(exc).__name__}: {exc}"[:400]
        if not hasattr(modeling_utils, "slice_logits_to_keep"):
            msg += (f" -- transformers {transformers.__version__} does not take the 2-D logits_to_keep "
                    "(one column per row) that the CachedTransformer passes (transformers 5.24 does: "
                    "modeling_utils.slice_logits_to_keep); carry the transformers 5.24.0 wheel (module docstring)")
        return msg
    return None


# ----------------------------------------------------------------- correctness
def prefix_sets(rng: np.random.Generator, n_sets: int, V: int, max_len: int):
    """``(kind, bases, requests)`` per set: ``bases`` are full token sequences
    (each compared against one plain forward), ``requests`` ``(base, length)``
    the prefixes sent in one batch. Kinds cycle: shared stems with branches,
    unshared sequences, extensions of earlier bases (reuse of the trie, or of
    what eviction left of it), repeats of earlier requests plus new ones."""
    history: list[tuple[int, ...]] = []

    def seq(n: int) -> tuple[int, ...]:
        return tuple(int(t) for t in rng.integers(0, V, size=max(1, n)))

    def length(lo: int, hi: int) -> int:
        return int(rng.integers(lo, max(lo, hi) + 1))

    for s in range(n_sets):
        kind = ("shared", "unshared", "extend", "repeat")[s % 4]
        bases: list[tuple[int, ...]] = []
        if kind == "shared" or not history:
            stem = seq(length(1, max_len // 2))
            bases = [stem + seq(length(1, max_len - len(stem))) for _ in range(length(2, 4))]
        elif kind == "unshared":
            bases = [seq(length(1, max_len)) for _ in range(length(2, 4))]
        elif kind == "extend":
            for _ in range(length(1, 3)):
                old = history[int(rng.integers(len(history)))]
                cut = length(1, min(len(old), max_len - 1))
                bases.append(old[:cut] + seq(length(1, max_len - cut)))
        else:
            bases = [history[int(rng.integers(len(history)))] for _ in range(length(1, 2))]
            bases.append(seq(length(1, max_len)))
        requests: list[tuple[int, int]] = []
        for b, base in enumerate(bases):
            requests.append((b, len(base)))
            for _ in range(length(0, 2)):
                requests.append((b, length(1, len(base))))
        if rng.random() < 0.3:
            requests.append(requests[0])  # an identical request in the same batch
        order = rng.permutation(len(requests))
        history.extend(bases)
        yield kind, bases, [requests[i] for i in order]


@torch.no_grad()
def plain_logprobs(model, base: tuple[int, ...], lengths: list[int], V: int, device) -> np.ndarray:
    """Log-probs after ``base[:L]`` for each ``L``, from one forward of ``base``."""
    logits = model(input_ids=torch.tensor([base], device=device), use_cache=False).logits[0]
    pos = torch.tensor([L - 1 for L in lengths], device=device)
    return torch.log_softmax(logits[pos, :V].float(), dim=-1).cpu().numpy()


def bytes_per_slot(model, dtype) -> int:
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return c.num_hidden_layers * 2 * c.num_key_value_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def check_logprobs(model, tokenizer, device, dtype, grid: dict, tol: float, ref32=None) -> dict:
    """The cached-vs-plain comparison on ``N_SETS`` prefix sets (see
    :func:`prefix_sets`), each sent to an unbounded CachedTransformer and to
    one under a small memory budget. ``ref32``: the float32 model, for the
    noise floor of ``dtype`` (plain ``dtype`` vs plain float32)."""
    V = len(tokenizer)
    max_len = grid["max_len"]
    budget = int(1.5 * max_len * bytes_per_slot(model, dtype))
    cts = {
        "unbounded": CachedTransformer(model, tokenizer, device=device, dtype=dtype, name="unbounded"),
        "small budget": CachedTransformer(model, tokenizer, device=device, dtype=dtype,
                                          memory_budget_bytes=budget, name="small budget"),
    }
    worst = {name: 0.0 for name in cts}
    vs32 = {name: 0.0 for name in cts}
    worst_kind: dict[str, float] = {}
    noise = 0.0
    spread: list[float] = []
    spread_max: list[float] = []
    n_req = 0
    failures: list[str] = []
    integrity_ok = True
    t0 = time.perf_counter()
    sets = list(prefix_sets(np.random.default_rng(1234), N_SETS, V, max_len))
    for si, (kind, bases, requests) in enumerate(sets):
        ref: dict[tuple[int, int], np.ndarray] = {}
        ref_32: dict[tuple[int, int], np.ndarray] = {}
        for b, base in enumerate(bases):
            Ls = sorted({L for bb, L in requests if bb == b})
            rows = plain_logprobs(model, base, Ls, V, device)
            for L, row in zip(Ls, rows):
                ref[(b, L)] = row
            if ref32 is not None:  # the noise floor: plain dtype vs plain float32
                rows32 = plain_logprobs(ref32, base, Ls, V, device)
                noise = max(noise, float(np.abs(rows - rows32).max()))
                for L, row in zip(Ls, rows32):
                    ref_32[(b, L)] = row
        want = np.stack([ref[r] for r in requests])
        want32 = np.stack([ref_32[r] for r in requests]) if ref32 is not None else None
        spread.append(float(np.abs(want - want.mean(axis=0)).mean()))
        spread_max.append(float(np.abs(want - want.mean(axis=0)).max()))
        prefixes = [bases[b][:L] for b, L in requests]
        for name, ct in cts.items():
            try:
                got = np.stack(ct.batch_next_token_logprobs(prefixes))
            except Exception as exc:  # noqa: BLE001 - a failing batch is a failed set
                worst[name] = math.inf
                if len(failures) < 5:
                    failures.append(f"set {si} ({kind}, {name}): {type(exc).__name__}: {exc}"[:300])
                continue
            err = float(np.abs(got - want).max())
            if not np.isfinite(got).all():
                err = math.inf
            worst[name] = max(worst[name], err)
            worst_kind[kind] = max(worst_kind.get(kind, 0.0), err)
            if want32 is not None:
                vs32[name] = max(vs32[name], float(np.abs(got - want32).max()))
            if err > tol and len(failures) < 5:
                failures.append(f"set {si} ({kind}, {name}): max |diff| {err:.3g}")
        n_req += len(requests)
        if si % 10 == 9 or si == len(sets) - 1:
            for name, ct in cts.items():
                try:
                    ct.check_integrity()
                except AssertionError as exc:
                    integrity_ok = False
                    if len(failures) < 5:
                        failures.append(f"after set {si}, {name}: integrity: {exc}"[:300])
        if si % 40 == 39:
            log(f"  {dtype_name(dtype)}: {si + 1}/{len(sets)} sets, max |diff| so far "
                f"{max(worst.values()):.2e}")
    stats = {name: ct.stats() for name, ct in cts.items()}
    max_diff = max(worst.values())
    stated = tol
    if ref32 is not None:  # the cache may differ from plain by bf16's own error, twice
        tol = max(tol, 2 * noise)
    evictions = stats["small budget"]["evictions"]
    out = {
        "dtype": dtype_name(dtype),
        "sets": len(sets),
        "requests": n_req,
        "max_len": max_len,
        "max_abs_diff": max_diff,
        "max_abs_diff_by_model": worst,
        "max_abs_diff_by_kind": worst_kind,
        "tolerance": tol,
        "tolerance_stated": stated,
        "evictions": evictions,
        "small_budget_bytes": budget,
        "cache_hits": {n: s["cache_hits"] for n, s in stats.items()},
        "tokens_reused": {n: s["tokens_reused"] for n, s in stats.items()},
        "row_spread": float(np.mean(spread)),
        "row_spread_max": float(np.median(spread_max)),
        "seconds": round(time.perf_counter() - t0, 2),
        "failures": failures,
        "integrity_ok": integrity_ok,
        "pass": bool(max_diff <= tol and evictions > 0 and integrity_ok),
    }
    if ref32 is not None:
        out["noise_vs_fp32"] = noise
        out["cached_vs_fp32_by_model"] = vs32
    del cts
    free_memory(device)
    return out


# ------------------------------------------------------------------ SMC checks
VOCAB4 = ["a", "b", "c", "<eos>"]
EOS4 = 3
MAX_LEN4 = 4
LACKS_C = ppl.lacks("c")


def four_token_llama():
    """The tiny Llama of the exact-answer tests (``a b c <eos>``), on the CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=4, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        eos_token_id=3, bos_token_id=3, tie_word_embeddings=False,
    )
    torch.manual_seed(7)
    model = LlamaForCausalLM(config).eval().requires_grad_(False)
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)  # sharpen: probabilities far from uniform
    return model


def cached4(model, device) -> CachedTransformer:
    return CachedTransformer(model, None, device=device, dtype=torch.float32, vocab=VOCAB4,
                             vocab_bytes=[b"a", b"b", b"c", b""], eos_token_id=EOS4, name=f"tiny4-{device}")


class PlainLM(LanguageModel):
    """The same model without any cache: one full forward per prefix."""

    def __init__(self, model, device):
        self.model, self.device = model, device
        self.vocab, self.vocab_bytes, self.eos_token_id = VOCAB4, [b"a", b"b", b"c", b""], EOS4
        self.name = f"plain-{device}"
        self._memo: dict[tuple[int, ...], np.ndarray] = {}

    @torch.no_grad()
    def _one(self, prefix: tuple[int, ...]) -> np.ndarray:
        if prefix not in self._memo:
            logits = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=False).logits[0, -1]
            self._memo[prefix] = torch.log_softmax(logits[:4].float(), -1).cpu().numpy()
        return self._memo[prefix]

    def batch_next_token_logprobs(self, prefixes):
        return [self._one(tuple(p)) for p in prefixes]

    def next_probs(self, prefix) -> np.ndarray:
        p = np.exp(self._one(tuple(prefix)).astype(np.float64))
        return p / p.sum()

    def prompt_ids(self, prompt: str) -> list[int]:
        if prompt:
            raise ValueError("PlainLM has no tokenizer")
        return [EOS4]  # as the CachedTransformer without a tokenizer does

    def encode(self, text: str) -> list[int]:
        raise ValueError("PlainLM has no tokenizer")

    def decode(self, ids) -> str:
        return "".join(VOCAB4[t] for t in ids if t != EOS4)


class TwistedLipogram(ppl.Model):
    """Tokens from ``p(. | no "c")`` until EOS or 4 tokens, with a twist."""

    def __init__(self, lm):
        super().__init__()
        self.ctx = lm.context("")

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(LACKS_C))
        text = self.ctx.text
        self.twist(-0.9 * text.count("b") + 0.4 * len(text))
        if tok.is_eos or len(self.ctx) == MAX_LEN4:
            self.finish()

    def key(self):
        return self.ctx.text

    @staticmethod
    def log_g(s) -> float:
        return 0.0 if 2 not in s else -math.inf


class Scored(ppl.Model):
    """Unconstrained tokens, a factor per "a", then a condition and an observation."""

    def __init__(self, lm):
        super().__init__()
        self.ctx = lm.context("")

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        self.factor(0.5 * (tok.text == "a"))
        if tok.is_eos or len(self.ctx) == MAX_LEN4:
            text = self.ctx.text
            self.condition("cc" not in text)
            await self.observe(ppl.Bernoulli(0.7), len(text) % 2 == 0)
            self.finish()

    def key(self):
        return self.ctx.text

    @staticmethod
    def log_g(s) -> float:
        text = "".join(VOCAB4[t] for t in s if t != EOS4)
        if "cc" in text:
            return -math.inf
        return 0.5 * text.count("a") + math.log(0.7 if len(text) % 2 == 0 else 0.3)


def exact_Z(plain: PlainLM, log_g) -> float:
    """``Z = sum_s p(s) g(s)`` over every string of at most 4 tokens (ending at
    EOS or cut at 4), by depth-first enumeration of the plain model."""
    total = 0.0
    stack = [((), 0.0)]
    while stack:
        gen, lp = stack.pop()
        if (gen and gen[-1] == EOS4) or len(gen) == MAX_LEN4:
            lg = lp + log_g(gen)
            total += math.exp(lg) if lg > -math.inf else 0.0
            continue
        for t, p in enumerate(plain.next_probs((EOS4,) + gen)):
            if p > 0:
                stack.append((gen + (t,), lp + math.log(p)))
    return total


def _summary(r) -> tuple[list[tuple[int, ...]], np.ndarray, float]:
    return [tuple(p.ctx.prefix_ids) for p in r.particles], np.asarray(r.log_weights, dtype=np.float64), r.log_Z


def _same(a, b, tol: float) -> tuple[bool, float]:
    (pa, wa, za), (pb, wb, zb) = _summary(a), _summary(b)
    if pa != pb or (np.isfinite(wa) != np.isfinite(wb)).any():
        return False, math.inf
    fin = np.isfinite(wa)
    d = float(np.abs(wa[fin] - wb[fin]).max()) if fin.any() else 0.0
    if math.isfinite(za) or math.isfinite(zb):
        d = max(d, abs(za - zb))
    return d <= tol, d


METHODS = [("steer 6x3", "steer", {"n_particles": 6, "expand": 3}),
           ("smc 6", "smc", {"n_particles": 6, "ess_threshold": 1.0})]
PROGRAMS = [TwistedLipogram, Scored]


def check_smc(device, runs: int) -> list[dict]:
    cpu_model = four_token_llama()
    dev_model = copy.deepcopy(cpu_model).to(device)
    plain = PlainLM(dev_model, device)
    ct_dev = cached4(dev_model, device)
    ct_cpu = cached4(cpu_model, torch.device("cpu")) if device.type != "cpu" else None
    out: list[dict] = []
    for prog in PROGRAMS:
        for label, method, kw in METHODS:
            worst_plain, worst_cpu, ok_plain, ok_cpu = 0.0, 0.0, True, True
            for seed in range(5):
                r_ct = ppl.infer(prog(ct_dev), method=method, seed=100 + seed, **kw)
                ok, d = _same(r_ct, ppl.infer(prog(plain), method=method, seed=100 + seed, **kw), SMC_TOL)
                ok_plain, worst_plain = ok_plain and ok, max(worst_plain, d)
                if ct_cpu is not None:
                    ok, d = _same(r_ct, ppl.infer(prog(ct_cpu), method=method, seed=100 + seed, **kw), SMC_TOL)
                    ok_cpu, worst_cpu = ok_cpu and ok, max(worst_cpu, d)
            out.append({"check": f"{prog.__name__} {label}: cached == plain, 5 seeds",
                        "pass": ok_plain, "max_abs_diff": worst_plain, "tolerance": SMC_TOL})
            if ct_cpu is not None:
                out.append({"check": f"{prog.__name__} {label}: {device} == cpu, 5 seeds",
                            "pass": ok_cpu, "max_abs_diff": worst_cpu, "tolerance": SMC_TOL})
        # the exact answer: mean Z_hat over seeded runs vs Z by enumeration
        Z = exact_Z(plain, prog.log_g)
        label, method, kw = METHODS[0]
        zs = [math.exp(ppl.infer(prog(ct_dev), method=method, seed=20_000 + m, **kw).log_Z) for m in range(runs)]
        mean, se = float(np.mean(zs)), float(np.std(zs, ddof=1)) / math.sqrt(runs)
        tol = NormalDist().inv_cdf(1 - Z_ALPHA / 2) * se + 1e-9 * abs(Z)
        out.append({"check": f"{prog.__name__} {label}: mean Z_hat of {runs} runs == exact Z",
                    "pass": bool(abs(mean - Z) <= tol), "max_abs_diff": abs(mean - Z), "tolerance": tol,
                    "exact_Z": Z, "mean_Z_hat": mean})
    st = ct_dev.stats()
    out.append({"check": "tiny CachedTransformer reused its cache",
                "pass": bool(st["forward_passes"] > 0 and st["tokens_computed"] < st["tokens_requested"]),
                "max_abs_diff": 0.0, "tolerance": 0.0})
    return out


# ----------------------------------------------------------------------- speed
class IdsLipogram(BenchLipogram):
    """bench.runtime's lipogram (its ``step``) after a prompt given as ids."""

    def __init__(self, lm, allowed, n: int, prompt_ids):
        ppl.Model.__init__(self)
        self.ctx = lm.context(prompt_ids=prompt_ids)
        self.allowed, self.left = allowed, n


class ForwardTimer:
    """While active, sums the wall time spent inside ``model``'s forward
    (hooks on the top-level module; the device is synchronised before and
    after each call, so that asynchronous GPU work is counted where it runs)."""

    def __init__(self, model, device):
        self.model, self.device = model, device
        self.seconds, self.calls = 0.0, 0

    def _pre(self, module, args):
        sync(self.device)
        self._t = time.perf_counter()

    def _post(self, module, args, output):
        sync(self.device)
        self.seconds += time.perf_counter() - self._t
        self.calls += 1

    def __enter__(self):
        self._hooks = [self.model.register_forward_pre_hook(self._pre),
                       self.model.register_forward_hook(self._post)]
        return self

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()


class Memory:
    """Peak device memory of a block: ``peak`` (all allocations) and ``run``
    (above what was allocated before it, i.e. mostly the weights); None on a CPU."""

    def __init__(self, device):
        self.device = device
        self.peak = self.run = None

    def __enter__(self):
        free_memory(self.device)
        if cuda_on(self.device):
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc):
        if cuda_on(self.device):
            sync(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            self.run = self.peak - self._base


def run_ours(model, tokenizer, device, dtype, prompt, N: int, K: int, n: int, profile: bool, seed: int = 0) -> dict:
    """``smc_steer`` on a fresh CachedTransformer (empty cache) over ``model``."""
    lm = CachedTransformer(model, tokenizer, device=device, dtype=dtype, name="ours")
    allowed = NO_E_NO_EOS
    allowed.mask(lm)  # built outside the timing, as raw's mask is
    timer = ForwardTimer(model, device)
    with Memory(device) as mem:
        if profile:
            timer.__enter__()
        try:
            t0 = time.perf_counter()
            result = asyncio.run(ppl.smc_steer(IdsLipogram(lm, allowed, n, prompt), N, K, seed=seed))
            wall = time.perf_counter() - t0
        finally:
            if profile:
                timer.__exit__()
    st = lm.stats()
    out = {"wall": wall, "forward_passes": st["forward_passes"], "rows_per_pass": st["rows_per_pass_mean"],
           "max_rows": max(st["rows_per_pass"], default=0),
           "computed_per_step": (st["tokens_computed"] - len(prompt)) / (N * K * n),
           "kv_pool_bytes": st["pool_bytes"], "buffer_bytes": st["buffer_bytes"],
           "peak_bytes": mem.peak, "run_bytes": mem.run, "log_Z": result.log_Z}
    if profile:
        out.update(forward_s=timer.seconds, outside_share=1 - timer.seconds / wall)
    del lm, result
    return out


@torch.no_grad()
def run_raw(model, mask: torch.Tensor, device, prompt, B: int, n: int, profile: bool, seed: int = 0) -> dict:
    """Plain batched decoding of ``B`` rows: the prompt prefilled once, its
    cache repeated to ``B`` rows, then one forward per token (DynamicCache),
    the same mask, ``torch.multinomial``."""
    from transformers import DynamicCache

    kw = cache_kwarg_name(model)
    V = len(mask)
    gen = torch.Generator(device=device).manual_seed(seed)
    timer = ForwardTimer(model, device)
    with Memory(device) as mem:
        if profile:
            timer.__enter__()
        try:
            t0 = time.perf_counter()
            cache = DynamicCache()
            out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True, logits_to_keep=1,
                        **{kw: cache})
            if kw == "past_key_values":  # transformers < 5.24 (``cache=`` there is filled in place)
                cache = out.past_key_values
            cache.batch_repeat_interleave(B)
            logits = out.logits[:, -1, :V].float().repeat(B, 1)
            tokens = []
            for i in range(n):
                lp = torch.log_softmax(logits, dim=-1).masked_fill(~mask, float("-inf"))
                tok = torch.multinomial(torch.softmax(lp, dim=-1), 1, generator=gen)
                tokens.append(tok)
                if i + 1 < n:
                    out = model(input_ids=tok, use_cache=True, logits_to_keep=1, **{kw: cache})
                    if kw == "past_key_values":
                        cache = out.past_key_values
                    logits = out.logits[:, -1, :V].float()
            drawn = torch.cat(tokens, dim=1).cpu()  # the one host copy: waits for the device
            wall = time.perf_counter() - t0
        finally:
            if profile:
                timer.__exit__()
    assert drawn.shape == (B, n) and bool(mask.cpu()[drawn].all())
    out_d = {"wall": wall, "forward_passes": n, "rows_per_pass": float(B), "max_rows": B,
             "peak_bytes": mem.peak, "run_bytes": mem.run}
    if profile:
        out_d.update(forward_s=timer.seconds, outside_share=1 - timer.seconds / wall)
    del cache, out, logits
    return out_d


def make_prompt(tokenizer, ctx: int, seed: int) -> tuple[int, ...]:
    """BOS (when the tokenizer has one) and random non-special tokens: ``ctx`` ids."""
    from ppl.runtime.backends.hf.vocab import vocab_tables

    _, _, eos, special = vocab_tables(tokenizer)
    ok = np.array([t for t in range(len(tokenizer)) if t not in special and t != eos])
    bos = tokenizer.bos_token_id
    head = [bos] if bos is not None else []
    rng = np.random.default_rng(seed)
    return tuple(head + [int(t) for t in rng.choice(ok, size=ctx - len(head))])


def speed_grid(model, tokenizer, device, dtype, grid: dict, budget: float | None, report) -> None:
    mb = lambda b: "-" if b is None else f"{b / 2**20:.0f}"
    n = grid["tokens"]
    probe = CachedTransformer(model, tokenizer, device=device, dtype=dtype, name="mask")
    mask = torch.from_numpy(NO_E_NO_EOS.mask(probe).copy()).to(device)
    del probe
    # warm up both paths (kernels, allocator, the scheduler's code)
    warm = make_prompt(tokenizer, min(grid["ctxs"]), seed=1)
    run_ours(model, tokenizer, device, dtype, warm, 4, 2, 3, profile=False)
    run_raw(model, mask, device, warm, 8, 3, profile=False)
    log("speed: warmed up")
    rows = report["speed"]["rows"]
    last: dict[int, tuple[float, int]] = {}  # ctx -> (seconds, N*K) of its last config done
    prompts: dict[int, tuple[int, ...]] = {}
    for ctx, N, K in speed_configs(grid):
        prompt = prompts.setdefault(ctx, make_prompt(tokenizer, ctx, seed=ctx))
        name = f"ctx={ctx} N={N} K={K}"
        if budget is not None:
            predicted = predict(last, ctx, N * K)
            left = budget - (time.perf_counter() - T0)
            if left < 1.3 * predicted + 5:
                report["speed"]["skipped"].append(
                    {"config": name, "reason": f"budget: ~{predicted:.0f} s predicted, {left:.0f} s left"})
                log(f"speed {name}: skipped (~{predicted:.0f} s predicted, {left:.0f} s left)")
                continue
        t0 = time.perf_counter()
        row = {"config": name, "ctx": ctx, "N": N, "K": K, "new_tokens": n, "particle_steps": N * K * n}
        try:
            ours = run_ours(model, tokenizer, device, dtype, prompt, N, K, n, profile=False)
            raw = run_raw(model, mask, device, prompt, N * K, n, profile=False)
            ours_p = run_ours(model, tokenizer, device, dtype, prompt, N, K, n, profile=True)
            raw_p = run_raw(model, mask, device, prompt, N * K, n, profile=True)
            row.update(ours=ours, raw=raw, ours_profiled=ours_p, raw_profiled=raw_p,
                       ratio=ours["wall"] / raw["wall"],
                       ours_steps_per_s=N * K * n / ours["wall"], raw_steps_per_s=N * K * n / raw["wall"],
                       peak_ratio=(ours["peak_bytes"] / raw["peak_bytes"]) if ours["peak_bytes"] else None)
            log(f"speed {name}: ours {ours['wall']:.3f} s, raw {raw['wall']:.3f} s, "
                f"ratio {row['ratio']:.2f}, peak MiB {mb(ours['peak_bytes'])}/{mb(raw['peak_bytes'])}, "
                f"outside forward {ours_p['outside_share']:.0%}/{raw_p['outside_share']:.0%}")
        except Exception as exc:  # noqa: BLE001 - an OOM or a failure is a finding: go on
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
            log(f"speed {name}: FAILED {row['error']}")
            free_memory(device)
        secs = time.perf_counter() - t0
        row["seconds"] = round(secs, 2)
        rows.append(row)
        last[ctx] = (secs, N * K)
        write_json(report)


def speed_configs(grid: dict) -> list[tuple[int, int, int]]:
    """``(ctx, N, K)`` in the order run: by N, then context, then K, so that a
    budget cut drops the largest populations, at every context length."""
    return [(ctx, N, K) for N in grid["Ns"] for ctx in grid["ctxs"] for K in grid["Ks"]]


def predict(last: dict[int, tuple[float, int]], ctx: int, rows: int) -> float:
    """Seconds a config will take: the last one at the same context scaled by
    ``N*K`` (the SMC work per step grows with it); at a new context, the last
    one at another, doubled."""
    if ctx in last:
        secs, r0 = last[ctx]
        return secs * rows / r0
    if last:
        secs, r0 = next(reversed(last.values()))
        return 2 * secs * rows / r0
    return 0.0


def speed_table(rows: list[dict]) -> str:
    mb = lambda b: "-" if b is None else f"{b / 2**20:.0f}"
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["ctx"], r["N"], r["K"]] + ["-"] * 8 + [r["error"][:40]])
            continue
        o, w, op, wp = r["ours"], r["raw"], r["ours_profiled"], r["raw_profiled"]
        out.append([r["ctx"], r["N"], r["K"], f"{o['wall']:.3f}", f"{w['wall']:.3f}", f"{r['ratio']:.2f}",
                    f"{r['ours_steps_per_s']:.0f}/{r['raw_steps_per_s']:.0f}",
                    f"{o['forward_passes']}/{w['forward_passes']}",
                    f"{o['rows_per_pass']:.1f}/{w['rows_per_pass']:.0f}",
                    f"{mb(o['peak_bytes'])}/{mb(w['peak_bytes'])}",
                    f"{op['outside_share']:.0%}/{wp['outside_share']:.0%}", ""])
    header = ["ctx", "N", "K", "ours s", "raw s", "ratio", "steps/s ours/raw", "fwd ours/raw",
              "rows/pass ours/raw", "peak MiB ours/raw", "outside fwd ours/raw", "note"]
    return table(out, header)


def correctness_table(report: dict) -> str:
    rows = []
    for key in ("fp32", "bf16"):
        c = report["correctness"].get(key)
        if c:
            note = f"{c['sets']} sets, {c['requests']} prefixes, {c['evictions']} evictions"
            if "noise_vs_fp32" in c:
                note += (f"; plain bf16 vs fp32 {c['noise_vs_fp32']:.3g},"
                         f" cached bf16 vs fp32 {max(c['cached_vs_fp32_by_model'].values()):.3g}")
            note += f"; row spread {c['row_spread_max']:.3g}"
            rows.append([f"log-probs {key}", "PASS" if c["pass"] else "FAIL", f"{c['max_abs_diff']:.3g}",
                         f"{c['tolerance']:.3g}", note])
    for c in report["correctness"].get("smc", []):
        rows.append([c["check"], "PASS" if c["pass"] else "FAIL", f"{c['max_abs_diff']:.3g}",
                     f"{c['tolerance']:.3g}", ""])
    return table(rows, ["check", "result", "max |diff|", "tolerance", "note"])


# ------------------------------------------------------------------------ main
_OUT: Path | None = None


def write_json(report: dict) -> None:
    if _OUT is not None:
        report["meta"]["elapsed_s"] = round(time.perf_counter() - T0, 2)
        (_OUT / JSON_NAME).write_text(json.dumps(report, indent=2, default=str))


def main(argv=None) -> int:
    global T0, _OUT
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model and grid: seconds on a CPU")
    parser.add_argument("--quick", action="store_true", help="a smaller speed grid (N 16, 64; 16 new tokens)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--out", default="bench-out", help="folder for gpu-bench.json (default: bench-out/)")
    parser.add_argument("--tokenizer", default=None, help="a tokenizer folder (from --export-tokenizer)")
    parser.add_argument("--export-tokenizer", metavar="DIR", default=None,
                        help="save SmolLM2's tokenizer (from the packaged default model) to DIR and exit")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run; speed configs that would not fit are skipped "
                             "(default 330, none with --tiny)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-speed", action="store_true", help="correctness only")
    args = parser.parse_args(argv)
    T0 = time.perf_counter()
    if args.export_tokenizer:
        return export_tokenizer(args.export_tokenizer)

    device = parse_device(args.device)
    grid = GRIDS["tiny" if args.tiny else "quick" if args.quick else "full"]
    budget = args.budget if args.budget is not None else (None if args.tiny else 330.0)
    if budget is not None and budget <= 0:
        budget = None
    _OUT = Path(args.out)
    _OUT.mkdir(parents=True, exist_ok=True)

    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer)
    elif args.tiny:
        tokenizer = tiny_tokenizer()
    else:
        try:
            tokenizer = default_tokenizer()
        except Exception as exc:  # noqa: BLE001
            print(f"no tokenizer: pass --tokenizer DIR (made with --export-tokenizer DIR) ({exc})", file=sys.stderr)
            return 2
    if args.tiny:
        V = len(tokenizer)
        cfg = dict(TINY, vocab_size=V + (-V) % 64 if V >= 1000 else V + 20)  # logits wider than the vocabulary
    else:
        cfg = dict(FULL)
        cfg["vocab_size"] = max(cfg["vocab_size"], len(tokenizer))
    fast = torch.bfloat16 if device.type == "cuda" else torch.float32  # the speed runs' dtype

    report: dict = {
        "meta": {
            "argv": list(sys.argv[1:] if argv is None else argv), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if cuda_on(device) else platform.processor() or "cpu",
            "torch": torch.__version__, "transformers": __import__("transformers").__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "model": "tiny" if args.tiny else "1B", "config": cfg, "grid": grid, "budget_s": budget,
            "speed_dtype": dtype_name(fast), "tokenizer": type(tokenizer).__name__, "vocab": len(tokenizer),
            "bf16_tolerance": BF16_TOL, "fp32_tolerance": FP32_TOL,
        },
        "correctness": {}, "speed": {"rows": [], "skipped": []}, "complete": False,
    }
    log(f"device {device} ({report['meta']['device_name']}), torch {torch.__version__}, "
        f"transformers {report['meta']['transformers']}, out {_OUT}")

    # the model, float32 (a bf16 copy is made for section 2)
    model32 = build_model(cfg, tokenizer, device, torch.float32, seed=args.seed, spread=args.tiny)
    report["meta"]["params"] = n_params(model32)
    report["meta"]["attn_implementation"] = getattr(model32.config, "_attn_implementation", None)
    log(f"model: {report['meta']['params'] / 1e6:.1f}M parameters, fp32, "
        f"attention {report['meta']['attn_implementation']}")
    err = preflight(model32, tokenizer, device, torch.float32)
    if err is not None:
        report["preflight_error"] = err
        report["all_correct"] = False
        write_json(report)
        log(f"PREFLIGHT FAILED: {err}")
        return 3

    precision = torch.get_float32_matmul_precision()
    report["meta"]["float32_matmul_precision"] = precision
    torch.set_float32_matmul_precision("highest")  # no TF32 in the fp32 model and references
    try:
        model16 = correctness(model32, tokenizer, device, grid, report)
    finally:
        torch.set_float32_matmul_precision(precision)

    # 4. speed, on the fast dtype
    model = model16 if fast == torch.bfloat16 else model32
    del model16, model32
    free_memory(device)
    if not args.skip_speed:
        guarded(report, "speed", lambda: speed_grid(model, tokenizer, device, fast, grid, budget, report))
    report["complete"] = "errors" not in report
    write_json(report)

    text = correctness_table(report) + "\n\n" + speed_table(report["speed"]["rows"])
    if report["speed"]["skipped"]:
        text += "\nskipped: " + ", ".join(s["config"] for s in report["speed"]["skipped"])
    for name, tb in report.get("errors", {}).items():
        text += f"\nERROR in {name}: {tb.strip().splitlines()[-1]}"
    (_OUT / "gpu-bench.txt").write_text(text + "\n")
    print(f"\n{report['meta']['model']} model on {device} ({report['meta']['device_name']}), "
          f"speed in {report['meta']['speed_dtype']}, {grid['tokens']} new tokens per particle; "
          f"ratio = ours / raw wall time\n")
    print(text, flush=True)
    log(f"done; {_OUT / JSON_NAME}")
    return 0 if report["all_correct"] else 1


def guarded(report: dict, name: str, fn):
    """``fn()``; an exception is logged and recorded in ``report["errors"]``
    (and the run goes on with the next section) instead of ending the run."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one GPU try: keep what the other sections measure
        import traceback

        report.setdefault("errors", {})[name] = traceback.format_exc()[-3000:]
        log(f"{name}: FAILED with {type(exc).__name__}: {exc}")
        write_json(report)
        return None


def correctness(model32, tokenizer, device, grid: dict, report: dict):
    """Sections 1-3 into ``report``; returns the bf16 copy of the model."""
    C = report["correctness"]

    def fp32():
        c = C["fp32"] = check_logprobs(model32, tokenizer, device, torch.float32, grid, FP32_TOL)
        log(f"fp32 log-probs: {'PASS' if c['pass'] else 'FAIL'}, max |diff| {c['max_abs_diff']:.3g} "
            f"(tolerance {FP32_TOL}), {c['requests']} prefixes, {c['evictions']} evictions, {c['seconds']} s")

    def bf16():
        c = C["bf16"] = check_logprobs(model16, tokenizer, device, torch.bfloat16, grid, BF16_TOL, ref32=model32)
        log(f"bf16 log-probs: {'PASS' if c['pass'] else 'FAIL'}, max |diff| {c['max_abs_diff']:.3g} "
            f"(tolerance {c['tolerance']:.3g}; plain bf16 vs fp32 {c['noise_vs_fp32']:.3g}), {c['seconds']} s")

    def smc():
        t = time.perf_counter()
        checks = C["smc"] = check_smc(device, runs=40)
        log(f"SMC checks: {sum(c['pass'] for c in checks)}/{len(checks)} pass, {time.perf_counter() - t:.1f} s")

    guarded(report, "correctness fp32", fp32)
    write_json(report)
    model16 = copy.deepcopy(model32).to(torch.bfloat16)  # the same weights
    guarded(report, "correctness bf16", bf16)
    write_json(report)
    guarded(report, "SMC checks", smc)
    done = [C.get("fp32"), C.get("bf16"), *(C.get("smc") or [None])]
    report["all_correct"] = all(c is not None and c["pass"] for c in done)
    write_json(report)
    return model16


if __name__ == "__main__":
    sys.exit(main())
