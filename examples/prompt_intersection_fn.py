"""Prompt intersection as a ``@ppl.program`` function (the decorator form of
examples/prompt_intersection.py; the DSL form is
examples/prompt_intersection.steer).

What it shows: each token is sampled from the first prompt's context and
observed on the second's, so the target is proportional to
``p(s | prompt_a) * p(s | prompt_b)``. In this form a step ends before each
language-model primitive, so resampling happens between the sample and the
observe as well; the target is the same.

Good output: a continuation likely under both prompts; both contexts hold
the same text.

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
        tok = await ppl.sample(a.next_token().where(PLAIN))
        await ppl.observe(b.next_token(), tok)
        if tok.is_eos or tok.text.rstrip().endswith((".", ",")):
            break
    return a.text
