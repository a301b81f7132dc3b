"""Length control: exactly N words, ending in a full stop.

What it shows: a length constraint that depends on the whole text, checked
by AWRS (``where_checked``) with a predicate on the text so far: never more
than N words, and a full stop only in the N-th word (one sentence). Once the
N-th word has begun it must end within three tokens, or the particle dies. The particle
finishes the moment it has N words and ends in ".". Stopping at a fixed
number of tokens would cut sentences off; here the model itself must bring
its sentence to an end exactly at word N, and SMC steering keeps the
particles for which that was natural.

Good output: one sentence (or a few) of exactly ``n`` whitespace-separated
words whose last word ends with a full stop, e.g. for n = 12:
"The sun was shining brightly in the sky as I walked home." Finite log Z.
At the documented settings one sentence takes almost all the weight: "A
walk home is when something is done on your way home." (12 words, on topic,
flat; log Z = -2.80 after 18 steps), and the three forms print the same
results. The prompt is raw text ending in a colon, not a chat message: as an
instruction under the chat template (``--chat``) the 12-word sentence the
model gave was off topic ("Our manager always expect their employees to be
committed to their teams.").

Run: ppl run examples/length_control.py --particles 8 --expand 3 --seed 0
Also written as examples/length_control_fn.py and examples/length_control.steer:
the same model (the same masks, the same AWRS check, the same conditions and
finishing rule), so with the same seed the same run
(tests/gallery/test_forms_length_control.py).
"""

from __future__ import annotations

import ppl


def length_ok(text: str, n: int) -> bool:
    """``text`` can still become one sentence of exactly ``n`` words ending
    in ".": no newline, "!", "?" or "..", at most ``n`` words, no space after
    the ``n``-th word (it would start word ``n + 1``), and a full stop only in
    the ``n``-th word."""
    words = text.split()
    if len(words) > n or ".." in text or any(c in text for c in "\n!?"):
        return False
    if len(words) == n and text[-1:].isspace():
        return False
    return all("." not in w for w in words[: n - 1])


def is_done(text: str, n: int) -> bool:
    """Exactly ``n`` words and the text ends with a full stop."""
    return len(text.split()) == n and text.endswith(".")


# No newline, no EOS, no special tokens: the text ends at its full stop.
PLAIN = ppl.lacks("\n") & ppl.no_special() & ppl.not_eos()


class LengthControl(ppl.Model):
    """Exactly ``n`` words ending in a full stop (at most ``max_tokens`` tokens)."""

    def __init__(self, lm, prompt: str = "A sentence about the walk home:\n",
                 n: int = 12, max_tokens: int = 40):
        super().__init__()
        self.ctx = lm.context(prompt)
        self.n, self.left = n, max_tokens
        self.tail = 0  # tokens spent on the n-th word

    def _ok(self, text: str) -> bool:
        return length_ok(text, self.n)

    async def step(self):
        await self.sample(self.ctx.next_token().where(PLAIN).where_checked(self._ok))
        self.left -= 1
        text = self.ctx.text
        if is_done(text, self.n):
            self.finish()
            return
        if len(text.split()) == self.n:
            self.tail += 1
        # the n-th word must end within a few tokens; the budget must hold
        self.condition(self.tail <= 3 and self.left > 0)

    def result_key(self):
        return self.ctx.text


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0"]))
