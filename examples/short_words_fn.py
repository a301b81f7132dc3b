"""Short words only, as a ``@ppl.program`` function (the decorator form of
examples/short_words.py; the DSL form is examples/short_words.steer).

What it shows: the same target as the class form: the model's distribution
restricted to texts in which no word has more than five letters, each token
drawn by AWRS (``where_checked``) against a Python predicate on the whole
text. The function body reads like ordinary generation code; ppl turns each
token draw into one SMC step and clones particles by replaying their trace.

Good output: short, plain sentences with no word over five letters, finite
log Z. It is the class form's program: with the same seed and flags
(``--chat``, see examples/short_words.py) it gives the class form's results,
"The night was a dark and grey moon, and the moon was twin." first.

Run: ppl run examples/short_words_fn.py --particles 8 --expand 3 --seed 0 --chat
"""

from __future__ import annotations

import re

import ppl

WORD = re.compile(r"[A-Za-z]+")


def short_words(text: str) -> bool:
    """Every run of letters in ``text`` has at most five letters."""
    return all(len(w) <= 5 for w in WORD.findall(text))


PLAIN = ppl.lacks("\n") & ppl.no_special()


@ppl.program
async def short_words_story(lm, prompt: str = "Tell me a story for a small child.", n: int = 30):
    ctx = lm.context(prompt)
    for _ in range(n):
        tok = await ppl.sample(ctx.next_token().where(PLAIN).where_checked(short_words))
        if tok.is_eos or tok.text.rstrip().endswith((".", "!", "?")):
            break
    return ctx.text
