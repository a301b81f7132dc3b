"""Infilling as a ``ppl.Model`` subclass (the class form of the
``@ppl.program`` function in examples/infilling.py; the DSL form is
examples/infilling.steer).

What it shows: the function's steps written out as a state machine. The
first segment of the template is the prompt; then, for each further
segment, a gap whose length (1 to ``max_gap`` tokens) is drawn from a
geometric prior, one token of the model a step (no newline, no EOS, no
special token: the weight pays for the mass the mask removes), and the
segment observed (``ctx.observe_text``: the weight is multiplied by the
model's probability of the segment after the gap). A function's step is one
token primitive and what follows it, so a segment's observation and the
next gap's length share a step, and the first step draws the first gap's
length and its first token; ``step()`` below keeps exactly those steps,
with the function's template, gap mask and result text (imported from
examples/infilling.py): the same Feynman-Kac model, so with the same seed
the same run.

Good output: the template's segments verbatim and in order, joined by short
gaps. At the documented settings it prints what the function gives: every
result is "Once upon a time, a little 20-year-old lived in a 101-story
tower. Every morning, she" and a gap ("studied and performed.", P 0.70),
log Z -43.1092, in 20 steps. Raw text, no ``--chat`` (see
examples/infilling.py for why).

Run: ppl run examples/infilling_class.py --particles 8 --expand 3 --seed 0
"""

from __future__ import annotations

from pathlib import Path

import ppl
from ppl.program_files import load_module

# The function form's module, imported once per process as `ppl run` and --import import it.
_FN_FORM = load_module(Path(__file__).with_name("infilling.py"))
TEMPLATE, GAP, GAP_TOKENS = _FN_FORM.TEMPLATE, _FN_FORM.GAP, _FN_FORM.GAP_TOKENS


class Infill(ppl.Model):
    """``template`` with each ``___`` filled by 1 to ``max_gap`` tokens."""

    def __init__(self, lm, template: str = TEMPLATE, max_gap: int = 6):
        super().__init__()
        self.first, *self.segments = template.split(GAP)
        self.ctx = lm.context(self.first)
        self.max_gap = max_gap
        self.observed = 0   # segments observed so far
        self.left = None    # tokens left in the current gap (None: before the first gap)

    async def draw_gap(self):
        n = await self.sample(ppl.Geometric(0.4))  # gap length - 1
        self.left = min(n + 1, self.max_gap)

    async def step(self):
        if self.left is None:  # the first step: the first gap's length (if there is a gap)
            if not self.segments:
                self.finish()
                return
            await self.draw_gap()
        if self.left > 0:      # a token of the gap
            await self.sample(self.ctx.next_token().where(GAP_TOKENS))
            self.left -= 1
            return
        await self.ctx.observe_text(self.segments[self.observed])
        self.observed += 1
        if self.observed == len(self.segments):
            self.finish()
        else:
            await self.draw_gap()  # the next gap's length, in the same step

    def result_key(self):
        return self.first + self.ctx.text


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0"]))
