"""JSON that validates against a schema, as a ``@ppl.program`` function (the
decorator form of examples/json_schema.py; the DSL form is
examples/json_schema.steer).

What it shows: a sequence constraint on a context: ``ppl.json_schema`` of
the class form's ``SCHEMA`` (imported from examples/json_schema.py)
restricts every token to viable prefixes of valid documents, and the weight
pays for the mass the mask removed. Each token draw is one SMC step; EOS
(allowed only once the document is complete) returns the document, and
running out of tokens first kills the particle (``ppl.condition(False)``),
as in the class's ``step()``: the same Feynman-Kac model, the same run with
the same seed.

Good output: JSON objects with exactly the schema's fields, each parsing and
validating, with the prompt's facts; finite log Z. It is the class form's
program: with the same seed and flags (``--chat``, see examples/json_schema.py)
it gives the class form's result, every particle on {"name": "Marie Curie",
"age": 66, "job": "scientist"} (P 1.0), log Z -28.3396 in 24 steps.

Run: ppl run examples/json_schema_fn.py --particles 8 --expand 3 --seed 0 --chat
"""

from __future__ import annotations

from pathlib import Path

import ppl
from ppl.program_files import load_module

# The class form's module, loaded once per process (as --import loads it).
record = load_module(Path(__file__).with_name("json_schema.py"))


@ppl.program
async def json_record(lm, prompt: str = record.PROMPT, max_tokens: int = 60):
    ctx = lm.context(prompt, constraint=ppl.json_schema(record.SCHEMA))
    for _ in range(max_tokens):
        tok = await ppl.sample(ctx.next_token())
        if tok.is_eos:
            return ctx.text
    ppl.condition(False)  # out of tokens before the document closed
