"""Constraint benchmark: the cost of constraint handling per particle-step on
the default model, against the cost of the forward pass.

    python -m bench.constraints                  # N=16, 12 tokens per run
    python -m bench.constraints --tokens 24 --particles 16

For each constraint (``lacks``, a regex, a JSON schema, a CFG), one run of
``smc_standard`` with N particles draws up to ``--tokens`` tokens from the
constrained context. Timers wrap, in the same process:

- **forward**: the language model's batched call (one per step, N rows);
- **mask**: the constraint's work, per particle-step: advancing the
  llguidance matchers by the sampled token (``deep_copy`` + consume), the
  token mask (``compute_bitmask`` + unpacking; a cached array for ``lacks``),
  and the CPU work of the masked next-token distribution (``log_mass``: the
  allowed ids and their ``logsumexp``; ``sample``: the draw among them). The
  draw is work an unconstrained step does too, so the ratio is an upper bound.

The table reports both per particle-step and their ratio (target: under 10%).
Then AWRS: predicate evaluations per step for "no word longer than five
letters" on the default model, against |V| for a full mask, and the time of
one full mask by the same predicate. Wall-clock numbers; they belong in notes,
never in tests.
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np

import ppl
from ppl import awrs
from ppl.constraints import grammar, json_schema, regex
from ppl.constraints.sequence import ConstraintState
from ppl.distributions import NextToken

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 12},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}

CASES = [
    ("lacks('e')", "My favorite writer is", None, "lacks"),
    ("regex phone", "Call me at ", regex(r"\(?[0-9]{3}\)? [0-9]{3}-[0-9]{4}"), None),
    ("json_schema", "A person, as JSON: ", json_schema(SCHEMA), None),
    ("CFG (sql.lark)", "An SQL query: ", grammar("sql"), None),
]


class Timers:
    def __init__(self):
        self.forward = 0.0
        self.mask = 0.0
        self.steps = 0


def instrument(lm, timers: Timers):
    """Wrap the forward pass and the constraint work with timers; returns undo()."""
    orig_batch = lm.batch_next_token_logprobs
    orig_mask, orig_adv = ConstraintState.mask, ConstraintState.advance_many
    orig_log_mass, orig_sample = NextToken.log_mass, NextToken.sample

    def batch(prefixes):
        t = time.perf_counter()
        try:
            return orig_batch(prefixes)
        finally:
            timers.forward += time.perf_counter() - t

    def mask(self):
        t = time.perf_counter()
        try:
            return orig_mask(self)
        finally:
            timers.mask += time.perf_counter() - t

    def advance_many(self, ids):
        t = time.perf_counter()
        try:
            return orig_adv(self, ids)
        finally:
            timers.mask += time.perf_counter() - t

    def after_view(orig):
        async def timed(self, *args):
            await self.view()  # the model call (timed as forward) and the mask
            t = time.perf_counter()
            try:
                return await orig(self, *args)  # memoised view: CPU work only
            finally:
                timers.mask += time.perf_counter() - t

        return timed

    lm.batch_next_token_logprobs = batch
    ConstraintState.mask, ConstraintState.advance_many = mask, advance_many
    NextToken.log_mass, NextToken.sample = after_view(orig_log_mass), after_view(orig_sample)

    def undo():
        del lm.batch_next_token_logprobs
        ConstraintState.mask, ConstraintState.advance_many = orig_mask, orig_adv
        NextToken.log_mass, NextToken.sample = orig_log_mass, orig_sample

    return undo


class Generate(ppl.Model):
    shared_attributes = ("timers", "token_constraint")  # one counter for every clone

    def __init__(self, lm, prompt, constraint, token_constraint, n, timers):
        super().__init__()
        self.ctx = lm.context(prompt, constraint=constraint)
        self.token_constraint = token_constraint
        self.left, self.timers = n, timers

    async def step(self):
        d = self.ctx.next_token()
        if self.token_constraint is not None:
            d = d.where(self.token_constraint)
        tok = await self.sample(d)
        self.timers.steps += 1
        self.left -= 1
        if tok.is_eos or self.left == 0:
            self.finish()


def bench_masks(lm, n_particles, n_tokens):
    rows = []
    for name, prompt, constraint, tok in CASES:
        token_constraint = ppl.lacks("e") if tok == "lacks" else None
        if token_constraint is not None:
            token_constraint.mask(lm)  # built once per model, not per step
        timers = Timers()
        undo = instrument(lm, timers)
        try:
            model = Generate(lm, prompt, constraint, token_constraint, n_tokens, timers)
            t = time.perf_counter()
            r = ppl.infer(model, method="smc", n_particles=n_particles, seed=0)
            wall = time.perf_counter() - t
        finally:
            undo()
        steps = max(timers.steps, 1)
        mask_ps = timers.mask / steps
        fwd_ps = timers.forward / steps
        example = max(zip(r.log_weights, (p.ctx.text for p in r.particles)))[1]
        rows.append((name, steps, fwd_ps, mask_ps, wall, example))
    return rows


def bench_awrs(lm, n_particles, n_tokens):
    def short_words(text):
        return all(len(w) <= 5 for w in re.findall(r"[A-Za-z]+", text))

    evals = []

    class Short(ppl.Model):
        def __init__(self):
            super().__init__()
            self.ctx = lm.context("The cat")
            self.left = n_tokens

        async def step(self):
            d = awrs(self.ctx.next_token(), short_words)
            tok = await self.sample(d)
            evals.append(d.evaluations)
            self.left -= 1
            if tok.is_eos or self.left == 0:
                self.finish()

    t = time.perf_counter()
    r = ppl.infer(Short(), method="smc", n_particles=n_particles, seed=0)
    wall = time.perf_counter() - t
    # one full mask by the same predicate (what masking would pay every step)
    head = "The cat sat on"
    texts = [head + (lm.vocab_bytes[i].decode("utf-8", errors="replace")) for i in range(lm.vocab_size)]
    t = time.perf_counter()
    sum(short_words(x) for x in texts)
    full = time.perf_counter() - t
    example = max(zip(r.log_weights, (p.ctx.text for p in r.particles)))[1]
    return np.array(evals), full, wall, example


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--particles", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=12)
    ap.add_argument("--awrs-particles", type=int, default=8)
    args = ap.parse_args(argv)

    t = time.perf_counter()
    lm = ppl.load_lm()
    print(f"model: {lm!r}  (loaded in {time.perf_counter() - t:.1f}s), |V| = {lm.vocab_size}")
    t = time.perf_counter()
    ppl.constraints.llg_tokenizer(lm)
    print(f"llguidance tokenizer built once per model in {time.perf_counter() - t:.2f}s")
    lm.batch_next_token_logprobs([tuple(lm.prompt_ids("warm up"))])

    rows = bench_masks(lm, args.particles, args.tokens)
    print(f"\nConstraint cost per particle-step, N={args.particles}, up to {args.tokens} tokens (smc_standard)")
    print(f"{'constraint':<16} {'steps':>5} {'forward ms':>11} {'mask ms':>8} {'mask/fwd':>9}  example")
    for name, steps, fwd, mask, wall, example in rows:
        print(f"{name:<16} {steps:>5} {fwd * 1e3:>11.2f} {mask * 1e3:>8.3f} {mask / fwd:>8.1%}  {example[:40]!r}")

    evals, full, wall, example = bench_awrs(lm, args.awrs_particles, args.tokens)
    print(f"\nAWRS, 'no word longer than 5 letters', N={args.awrs_particles}, {len(evals)} particle-steps")
    print(f"  predicate calls per step: mean {evals.mean():.2f}, median {np.median(evals):.0f}, max {evals.max()}")
    print(f"  full mask: {lm.vocab_size} calls per step ({full * 1e3:.1f} ms for one)  ->  "
          f"{lm.vocab_size / evals.mean():.0f}x fewer calls with AWRS")
    print(f"  example: {example!r}")


if __name__ == "__main__":
    main()
