"""Length control as a ``@ppl.program`` function: exactly N words ending in a
full stop (the decorator form of examples/length_control.py; the DSL form is
examples/length_control.steer).

What it shows: the same target as the class form, each token drawn by AWRS
against "one sentence of at most n words, no space after the n-th", the
n-th word must end within three tokens, and the program returns
as soon as the text has n words and ends in "."; running out of tokens first
kills the particle (``ppl.condition(False)``).

Good output: texts of exactly ``n`` words, the last ending with ".". With
the same seed it gives what the class form and the DSL form give (the same
model, the same run): at the documented settings "A walk home is when
something is done on your way home." with almost all the weight, log Z =
-2.80. Raw text, no ``--chat`` (see the class form for why).

Run: ppl run examples/length_control_fn.py --particles 8 --expand 3 --seed 0
"""

from __future__ import annotations

from functools import partial

import ppl


def length_ok(text: str, n: int) -> bool:
    """At most ``n`` words, no newline, "!", "?" or "..", no space after the
    ``n``-th word, and a full stop only in the ``n``-th word."""
    words = text.split()
    if len(words) > n or ".." in text or any(c in text for c in "\n!?"):
        return False
    if len(words) == n and text[-1:].isspace():
        return False
    return all("." not in w for w in words[: n - 1])


PLAIN = ppl.lacks("\n") & ppl.no_special() & ppl.not_eos()


@ppl.program
async def exactly_n_words(lm, prompt: str = "A sentence about the walk home:\n",
                          n: int = 12, max_tokens: int = 40):
    ctx = lm.context(prompt)
    ok = partial(length_ok, n=n)  # not a lambda: a closure over n would make clones replay
    tail = 0  # tokens spent on the n-th word
    for _ in range(max_tokens):
        await ppl.sample(ctx.next_token().where(PLAIN).where_checked(ok))
        words = ctx.text.split()
        if len(words) == n and ctx.text.endswith("."):
            return ctx.text
        tail += len(words) == n
        ppl.condition(tail <= 3)  # the n-th word must end within three tokens
    ppl.condition(False)
