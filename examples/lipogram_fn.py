"""Lipogram as a ``@ppl.program`` function: continue a prompt without the
letter "e" (the decorator form of examples/lipogram.py and
examples/lipogram.steer).

What it shows: the three front-ends side by side. The body is plain
generation code: each ``ppl.sample`` of a next token conditioned on
``lacks("eE")`` (special tokens excluded) is one SMC step, and the particle's
weight is multiplied by the mass the model put on tokens without "e".

Good output: continuations with no "e" or "E" in the generated text, the most
probable first; finite, negative log Z. It is the class form's program, and
with the same seed it gives the class form's results (" **John Smith**."
first, P 0.78, then quiz-like lines; see examples/lipogram.py, also for why
the prompt is raw text, not ``--chat``).

Run: ppl run examples/lipogram_fn.py --particles 8 --expand 3 --seed 0
"""

from __future__ import annotations

import ppl


# Tokens without "e"/"E"; EOS stays allowed, other special tokens do not.
NO_E = ppl.lacks("eE") & ppl.no_special()


@ppl.program
async def lipogram(lm, prompt: str = "My favorite writer is", n: int = 24):
    ctx = lm.context(prompt)
    for _ in range(n):
        tok = await ppl.sample(ctx.next_token().where(NO_E))
        if tok.is_eos or tok.text.strip().endswith("."):
            break
    return ctx.text
