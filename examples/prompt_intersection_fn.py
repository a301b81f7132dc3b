"""Prompt intersection as a ``@ppl.program`` function (the decorator form of
examples/prompt_intersection.py; the DSL form is
examples/prompt_intersection.steer).

What it shows: each token is sampled from the first prompt's context and
observed on the second's, so the target is proportional to
``p(s | prompt_a) * p(s | prompt_b)``. In a function every language-model
primitive would start a step of its own; ``async with ppl.step():`` keeps the
sample and the observe of one token in one step, so resampling sees both, as
in the class form's ``step()``: the two forms are the same Feynman-Kac model
and give the same results run for run with the same seed.

Good output: a continuation likely under both prompts; both contexts hold
the same text. At the documented settings it gives exactly what the class
form gives (" Neil deGrassez." and two variants; see there, also for why the
prompts are raw text, not ``--chat``).

Run: ppl run examples/prompt_intersection_fn.py --particles 8 --expand 3 --seed 0
"""

from __future__ import annotations

import ppl


PLAIN = ppl.lacks("\n") & ppl.no_special()


@ppl.program
async def intersect(lm, prompt_a: str = "My favourite physicist is probably",
                    prompt_b: str = "My favourite writer is probably", n: int = 12):
    a, b = lm.context(prompt_a), lm.context(prompt_b)
    for _ in range(n):
        async with ppl.step():  # one SMC step: the token on `a` and its score on `b`
            tok = await ppl.sample(a.next_token().where(PLAIN))
            await ppl.observe(b.next_token(), tok)
        if tok.is_eos or tok.text.rstrip().endswith((".", ",")):
            break
    return a.text
