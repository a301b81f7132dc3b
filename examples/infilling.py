"""Infilling: fixed text segments with generated gaps between them.

What it shows: observing text the program did not generate. The template's
first segment is the prompt; after it, the program alternates a gap (a number
of tokens drawn from a geometric prior, each token sampled from the model)
with the next fixed segment, which it *observes* (``ctx.observe_text``): the
particle's weight is multiplied by the model's probability of that segment
after the gap. SMC steering then keeps the gaps that make the following text
likely, so the gaps fit what comes after them, not only what came before —
something left-to-right sampling cannot do.

Good output: the template with its gaps filled by a few words each that make
the whole text read naturally ("Once upon a time, a little girl lived in a
small house. Every morning, she went to the well."). Every result contains every
segment, in order, verbatim. What the default model gives at the documented
settings is weaker: the segments are all there, but the best result (P 0.70)
is "Once upon a time, a little 20-year-old lived in a 101-story tower. Every
morning, she studied and performed." — grammatical, odd. The template is
text to continue, not an instruction, so it is sent as raw text: under the
chat template (``--chat``) the first segment became a user message and the
gaps were filled with unrelated text ("a little To make a text transformer
lived in a 1027."); 16 particles instead of 8 gave no better gaps.

Run: ppl run examples/infilling.py --particles 8 --expand 3 --seed 0
Also written as examples/infilling_class.py (a ppl.Model subclass) and
examples/infilling.steer (the DSL, with this file's gap tokens imported as
the builtin ``gap_tokens``): the same model, the same run for a seed.
"""

from __future__ import annotations

import re

import ppl

TEMPLATE = "Once upon a time, a little ___ lived in a ___. Every morning, she ___."
GAP = "___"


# Tokens allowed in a gap: no newline, no EOS, no special tokens.
GAP_TOKENS = ppl.lacks("\n") & ppl.no_special() & ppl.not_eos()


@ppl.builtin(name="gap_tokens", returns="constraint", replace=True, pure=True)
def _gap_tokens_builtin():
    """``GAP_TOKENS`` as a builtin of the steer language (a token constraint),
    for examples/infilling.steer (``--import examples/infilling.py``)."""
    return GAP_TOKENS


def fills(template: str, text: str) -> bool:
    """``text`` is ``template`` with each gap replaced by non-empty text
    without newlines."""
    parts = [re.escape(s) for s in template.split(GAP)]
    return re.fullmatch("[^\n]+?".join(parts), text, flags=re.S) is not None


@ppl.program
async def infill(lm, template: str = TEMPLATE, max_gap: int = 6):
    first, *segments = template.split(GAP)
    ctx = lm.context(first)
    for segment in segments:
        n = await ppl.sample(ppl.Geometric(0.4))  # gap length - 1
        for _ in range(min(n + 1, max_gap)):
            await ppl.sample(ctx.next_token().where(GAP_TOKENS))
        await ctx.observe_text(segment)
    return first + ctx.text


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0"]))
