"""An arithmetic expression equal to a target, as a ``@ppl.program`` function
(the decorator form of examples/arithmetic.py; the DSL form is
examples/arithmetic.steer).

What it shows: the class form's program written as generation code. The
context carries the grammar constraint (the shipped arithmetic grammar plus
a final newline), so every token keeps the text a prefix of a well-formed
expression; after each token the function sets the class form's twist,
``-2 log(1 + |value - target|)`` on the text cut back to a complete
expression, and when the expression ends (a newline, EOS or ``max_tokens``
tokens) it conditions on the value being the target, with at least one
operator. The grammar, the evaluator and the twist are the class form's own
(imported from examples/arithmetic.py). Each token draw with what follows it
is one SMC step, as in the class's ``step()``: the same Feynman-Kac model, so
with the same seed the same run.

Good output: expressions equal to the target (24); particles that end on
another value die. At the documented settings it gives what the class form
gives: one expression survives, "(1 + 23) * 1" (P 1.0), log Z -16.4006, in
20 steps (raw text, no ``--chat``: see examples/arithmetic.py for why).

Run: ppl run examples/arithmetic_fn.py --particles 8 --expand 3 --seed 0
"""

from __future__ import annotations

from pathlib import Path

import ppl
from ppl.program_files import load_module

# The class form's module, imported once per process as `ppl run` and --import import it.
_CLASS_FORM = load_module(Path(__file__).with_name("arithmetic.py"))
PROMPT, GRAMMAR = _CLASS_FORM.PROMPT, _CLASS_FORM.GRAMMAR
hits, closeness = _CLASS_FORM.hits, _CLASS_FORM.closeness


@ppl.program
async def arithmetic(lm, target: int = 24, prompt: str | None = None, max_tokens: int = 20):
    text = (PROMPT if prompt is None else prompt).format(target=target)
    ctx = lm.context(text, constraint=ppl.grammar(GRAMMAR))
    target, left = float(target), max_tokens
    while True:
        tok = await ppl.sample(ctx.next_token())
        left -= 1
        if tok.is_eos or ctx.text.endswith("\n") or left == 0:
            ppl.condition(hits(ctx.text, target))
            return ctx.text.strip()
        ppl.twist(closeness(ctx.text, target))
