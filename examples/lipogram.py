"""Lipogram: continue a prompt without ever using the letter "e".

What it shows: a token-level constraint (``ppl.lacks("e")``) applied as exact
conditioning — each token is drawn from the model's next-token distribution
restricted to tokens without "e", and the particle's weight is multiplied by
the probability mass the model put on those tokens. SMC steering then keeps
the continuations the model itself finds most natural under the constraint,
instead of the ones that merely survived token-by-token masking.

Good output: fluent continuations with no "e" anywhere, the most probable
first; ``log Z`` (the log-probability, under the model, that an unconstrained
continuation of this length would have no "e") is negative. What the default
model gives at the documented settings is not fluent: no result has an "e",
and the best (P 0.78) is " **John Smith**." (a plausible answer, in the
markdown bold an instruction-tuned model likes); the others are a quiz-like
list and a made-up name, cut off at the 24-token limit. The prompt is sent
as raw text: as a chat message ("Tell me about your favourite writer.",
``--chat``) no result named a writer either, at 8 particles ("Ladakhampaala.")
or 16 ("My all-too-happy cat.").

Run: ppl run examples/lipogram.py --particles 8 --expand 3 --seed 0
"""

from __future__ import annotations

import ppl


# Tokens without "e"/"E"; EOS stays allowed, other special tokens do not.
NO_E = ppl.lacks("eE") & ppl.no_special()


class Lipogram(ppl.Model):
    """Up to ``n`` tokens without the letter "e", ending at EOS or a full stop."""

    def __init__(self, lm, prompt: str = "My favorite writer is", n: int = 24):
        super().__init__()
        self.ctx = lm.context(prompt)
        self.left = n

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(NO_E))
        self.left -= 1
        if tok.is_eos or self.left == 0 or tok.text.strip().endswith("."):
            self.finish()


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0"]))
