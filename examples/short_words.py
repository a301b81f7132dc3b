"""Short words only: a continuation in which no word has more than five letters.

What it shows: a constraint on the *whole text* (a word grows over several
tokens, so no single-token mask can enforce it) checked by a plain Python
predicate through adaptive weighted rejection sampling (AWRS,
``ctx.next_token().where_checked(pred)``). AWRS draws tokens from the model,
checks only the ones it draws (two or three calls of ``pred`` per step instead
of one per vocabulary entry), and weights the particle by an unbiased estimate
of the probability mass the model puts on allowed tokens. The target is the
model's own distribution restricted to texts whose every prefix has only
short words.

Good output: fluent, plain English made of short words ("The dog ran to the
park and sat in the sun."), no word longer than five letters, finite log Z.
A long word anywhere in a result would be a bug. The prompt is an
instruction ("Tell me a story for a small child."), sent as a user message
under the model's chat template (``--chat``); as raw text ("Here is a story
for a small child:") the results were not stories ("Today, let's do a small
piece of yoga."). At the documented settings the best result (P 0.52) is
"The night was a dark and grey moon, and the moon was twin.", short words
and little sense; the others start a story ("There's a story about a young
girl named Luna who lives in a small town in Japan.").

Run: ppl run examples/short_words.py --particles 8 --expand 3 --seed 0 --chat
Also written as examples/short_words_fn.py (@ppl.program) and
examples/short_words.steer (the DSL: the same AWRS, with this file's
predicate imported as a builtin).
"""

from __future__ import annotations

import re

import ppl

MAX_LETTERS = 5
WORD = re.compile(r"[A-Za-z]+")


def short_words(text: str, limit: int = MAX_LETTERS) -> bool:
    """Every run of letters in ``text`` has at most ``limit`` letters."""
    return all(len(w) <= limit for w in WORD.findall(text))


@ppl.builtin(replace=True)
def short_words_only(text: str) -> bool:
    """``short_words`` as a builtin of the steer language, for
    examples/short_words.steer (``--import examples/short_words.py``)."""
    return short_words(text)


# Every token except special ones (EOS stays allowed) and newlines.
PLAIN = ppl.lacks("\n") & ppl.no_special()


class ShortWords(ppl.Model):
    """Up to ``n`` tokens whose words have at most five letters; stops at EOS
    or after a full stop."""

    def __init__(self, lm, prompt: str = "Tell me a story for a small child.", n: int = 30):
        super().__init__()
        self.ctx = lm.context(prompt)
        self.left = n

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(PLAIN).where_checked(short_words))
        self.left -= 1
        if tok.is_eos or self.left == 0 or tok.text.rstrip().endswith((".", "!", "?")):
            self.finish()

    def result_key(self):
        return self.ctx.text


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0", "--chat"]))
