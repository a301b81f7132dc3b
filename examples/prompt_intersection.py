"""Prompt intersection: one continuation that two different prompts must
both explain.

What it shows: two contexts on the same model, driven by one token stream.
Each token is sampled from the first context and *observed* on the second,
so the particle's weight is multiplied by the second context's probability
of the same token. The target is proportional to
``p(s | prompt 1) * p(s | prompt 2)``: texts that are likely continuations of
both prompts. Greedy or beam search on one prompt cannot do this, and
sampling from one prompt rarely finds the overlap.

Good output: a continuation that fits both prompts, e.g. for "My favourite
physicist is" and "My favourite writer is", a person known for both (the
classic answer is Richard Feynman, who wrote popular books); a 135M model
often settles for a generic phrase that suits both. Both contexts hold the
same generated text in every particle. At the documented settings every
result is " Neil deGrassez" (or "deGrassex") with a comma or a full stop: a
misspelt Neil deGrasse Tyson, an astrophysicist who writes popular books, so
a fair answer. The prompts are sentence starts sent as raw text: asked as
questions under the chat template (``--chat``, "Who is your favourite
physicist?" and "Who is your favourite writer?"), the replies the two prompts
share are hedges ("That's a tough one.", "That's a question that has been
debated for centuries."), even with a system message asking for a name.

Run: ppl run examples/prompt_intersection.py --particles 8 --expand 3 --seed 0
Also written as examples/prompt_intersection_fn.py and
examples/prompt_intersection.steer.
"""

from __future__ import annotations

import ppl


# No special tokens except EOS, no newline.
PLAIN = ppl.lacks("\n") & ppl.no_special()


class PromptIntersection(ppl.Model):
    """Sample from ``prompt_a``'s context, observe the same token on ``prompt_b``'s."""

    def __init__(self, lm, prompt_a: str = "My favourite physicist is probably",
                 prompt_b: str = "My favourite writer is probably", n: int = 12):
        super().__init__()
        self.a = lm.context(prompt_a)
        self.b = lm.context(prompt_b)
        self.left = n

    async def step(self):
        tok = await self.sample(self.a.next_token().where(PLAIN))
        await self.observe(self.b.next_token(), tok)
        self.left -= 1
        if tok.is_eos or self.left == 0 or tok.text.rstrip().endswith((".", ",")):
            self.finish()

    def result_key(self):
        return self.a.text


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0"]))
