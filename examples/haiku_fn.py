"""Haiku as a ``@ppl.program`` function: three lines of 5, 7 and 5 syllables
(the decorator form of examples/haiku.py; the DSL form is examples/haiku.steer).

What it shows: the class form's program written as generation code, with
the class form's own predicates (imported from examples/haiku.py, the file
``--import`` would load): each token is drawn by AWRS (``where_checked``)
against ``haiku_prefix_ok``, so no line goes over its syllable budget and
every word is (or starts) a dictionary word; the loop stops at EOS, at the
third newline or after ``max_tokens`` tokens, and then ``is_haiku`` must
hold. Each token draw is one SMC step, the final condition in the step of
the last token, as in the class's ``step()``: it is the same Feynman-Kac
model as the class form, and gives the same run with the same seed.

Good output: three lines of 5, 7 and 5 syllables by the dictionary,
about the autumn wind; finite log Z. It is the class form's program: with the
same seed and flags (``--chat``, see examples/haiku.py) it gives the class
form's results, "Autumn wind whispers, / the rustling leaves rest in peace; /
a stark image yet," first (P 0.80), log Z -8.7791 in 40 steps.

Run: ppl run examples/haiku_fn.py --particles 8 --expand 3 --seed 0 --chat
"""

from __future__ import annotations

from pathlib import Path

import ppl
from ppl.program_files import load_module

# The class form's module, loaded once per process (as --import loads it).
haiku = load_module(Path(__file__).with_name("haiku.py"))


@ppl.program
async def write_haiku(lm, prompt: str = haiku.PROMPT, max_tokens: int = 40):
    ctx = lm.context(prompt)
    for _ in range(max_tokens):
        tok = await ppl.sample(ctx.next_token().where(haiku.PLAIN).where_checked(haiku.haiku_prefix_ok))
        if tok.is_eos or ctx.text.count("\n") >= len(haiku.PATTERN):
            break
    ppl.condition(haiku.is_haiku(ctx.text))
    return ctx.text.strip()
