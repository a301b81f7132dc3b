"""A SQL query over a given table, as a ``@ppl.program`` function (the
decorator form of examples/sql.py; the DSL form is examples/sql.steer).

What it shows: a grammar built for the data, reused from the class form
(examples/sql.py): ``sql_grammar()`` turns the table's columns and their
types into a Lark grammar for ``ppl.grammar``, and ``prompt_for`` writes the
few-shot prompt. Each token draw is one SMC step; the query ends at EOS or at
its ";", and running out of tokens first kills the particle, as in the
class's ``step()``: the same Feynman-Kac model, the same run with the same
seed.

Good output: valid queries of the grammar naming only the table's columns,
at best the one that answers the question; finite log Z. It is the class
form's program: with the same seed it gives the class form's results (raw
text, no ``--chat``, see examples/sql.py): three queries filtering on age
alone first (P 0.22 each), the answering ``SELECT name FROM people WHERE age >
30 AND city = 'Paris';`` fourth (P 0.16), log Z -1.8916 in 29 steps.

Run: ppl run examples/sql_fn.py --particles 8 --expand 3 --seed 0
"""

from __future__ import annotations

from pathlib import Path

import ppl
from ppl.program_files import load_module

# The class form's module, loaded once per process (as --import loads it).
sql = load_module(Path(__file__).with_name("sql.py"))


@ppl.program
async def sql_query(lm, question: str = sql.QUESTION, max_tokens: int = 40):
    ctx = lm.context(sql.prompt_for(question), constraint=ppl.grammar(sql.sql_grammar()))
    for _ in range(max_tokens):
        tok = await ppl.sample(ctx.next_token())
        if tok.is_eos or ctx.text.endswith(";"):
            return ctx.text.strip()
    ppl.condition(False)  # out of tokens before the query ended
