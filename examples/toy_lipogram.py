"""Lipogram on a toy language model: no letter "e", solved exactly and by SMC.

What it shows: a steering program (class form), SMC steering on a model small
enough to enumerate, and that SMC's estimate of Z and its posterior agree with
the exact answers.

Good output: strings without "e"; log Z within a few hundredths of the exact
value; the posterior of the number of words close to the exact one (the full
posterior has thousands of strings, so single strings are noisier).

Run: python examples/toy_lipogram.py
 or: ppl run examples/toy_lipogram.py --particles 64 --expand 3 --seed 0
"""

from __future__ import annotations

import math

import numpy as np

import ppl

VOCAB = [" the", " cat", " sat", " on", " mat", " a", " hat", ".", "<eos>"]


def next_probs(prefix):
    """A toy model that likes " the" and " cat", and ends after a full stop."""
    if prefix and VOCAB[prefix[-1]] == ".":
        return np.eye(len(VOCAB))[VOCAB.index("<eos>")]
    logits = np.array([1.5, 1.2, 0.8, 0.6, 0.7, 1.0, 0.9, 0.3 + 0.4 * len(prefix), -3.0])
    if len(prefix) >= 5:
        logits[:] = -np.inf
        logits[VOCAB.index(".")] = 0.0
    p = np.exp(logits - logits.max())
    return p / p.sum()


def make_lm():
    """The toy model (``ppl run`` uses this instead of loading a transformer)."""
    return ppl.ToyLM(VOCAB, next_probs, eos="<eos>")


class Lipogram(ppl.Model):
    """Draw tokens without the letter "e" until EOS."""

    def __init__(self, lm, prompt=""):
        super().__init__()
        self.ctx = lm.context(prompt)

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(ppl.lacks("e")))
        if tok.is_eos:
            self.finish()


def exact(lm):
    """Z and the posterior by enumerating every string."""
    out = {}

    def walk(prefix, logp):
        if prefix and prefix[-1] == lm.eos_token_id:
            text = lm.decode(prefix)
            out[text] = out.get(text, 0.0) + math.exp(logp)
            return
        for t, p in enumerate(next_probs(prefix)):
            if p > 0 and "e" not in lm.vocab[t] or t == lm.eos_token_id and p > 0:
                walk(prefix + (t,), logp + math.log(p))

    walk((), 0.0)
    Z = sum(out.values())
    return Z, {k: v / Z for k, v in out.items()}


def main():
    lm = make_lm()
    result = ppl.infer(Lipogram(lm), method="steer", n_particles=256, expand=3, seed=0)
    Z, posterior = exact(lm)
    print(f"SMC steering, N=256, K=3: {result.n_steps} steps, status: {result.status}")
    print(f"log Z: SMC {result.log_Z:.4f}   exact {math.log(Z):.4f}")
    print(f"{'string':<28} {'SMC':>7} {'exact':>7}")
    smc = result.posterior()
    for text, p in sorted(posterior.items(), key=lambda kv: -kv[1])[:10]:
        print(f"{text!r:<28} {smc.get(text, 0.0):7.3f} {p:7.3f}")
    # A coarser question converges faster than the full posterior: the number of words.
    print(f"{len(smc)} distinct strings among the particles. Posterior of the number of words:")
    by_len = result.posterior(key=lambda p: len(p.ctx.text.split()))
    exact_len = {}
    for text, p in posterior.items():
        exact_len[len(text.split())] = exact_len.get(len(text.split()), 0.0) + p
    for n in sorted(exact_len):
        print(f"  {n} words: SMC {by_len.get(n, 0.0):.3f}   exact {exact_len[n]:.3f}")

if __name__ == "__main__":
    main()
