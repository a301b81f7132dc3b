"""A SQL query over a given table, in a grammar built from the table's schema.

What it shows: a grammar written *for the data*: the table's columns and
their types become the grammar's alternatives (numeric columns compare with
numbers, text columns with quoted strings), so every particle is a query
that only names real columns and compares them with values of the right
type. The grammar is Lark text handed to ``ppl.grammar`` (llguidance masks
the tokens); the weights make the target the model's own distribution over
such queries, so the question in the prompt decides which query wins.

Good output, for the default question: ``SELECT name FROM people WHERE age >
30 AND city = 'Paris';`` or close variants, each one a valid query of the
grammar naming only the table's columns; finite log Z. At the documented
settings every result is a valid query, but the three most probable (P 0.22
each) filter on age alone, one with ``age < 30``; the query that answers the
question comes fourth (P 0.16). The prompt is a few-shot completion ending in
"SQL:", sent as raw text: under the chat template (``--chat``) the results
were much the same, the answering query fifth (P 0.10).

Run: ppl run examples/sql.py --particles 8 --expand 3 --seed 0
Also written as examples/sql_fn.py (@ppl.program) and examples/sql.steer
(the DSL: the grammar and the prompt built by this file, imported as the
builtins ``sql_grammar`` and ``prompt_for``).
"""

from __future__ import annotations

import ppl

TABLE = "people"
COLUMNS = {"name": "TEXT", "age": "INTEGER", "city": "TEXT", "salary": "INTEGER"}
QUESTION = "What are the names of the people older than 30 who live in Paris?"


def sql_grammar(table: str = TABLE, columns: dict = COLUMNS) -> str:
    """A Lark grammar of ``SELECT ... FROM table [WHERE ...] [ORDER BY ...]
    [LIMIT n];`` over these columns, with a leading space (it follows "SQL:")."""
    def alts(names):
        return " | ".join(f'"{n}"' for n in names)

    numeric = [c for c, t in columns.items() if t.upper() in ("INTEGER", "INT", "REAL", "NUMBER")]
    text = [c for c, t in columns.items() if c not in numeric]
    conditions = []
    if numeric:
        conditions.append('num_col " " COMPARE " " NUMBER')
    if text:
        conditions.append('text_col " " EQUALITY " " STRING')
    rules = [
        f'start: " SELECT " columns " FROM {table}" where? order? limit? ";"',
        'columns: "*" | column (", " column)*',
        f"column: {alts(columns)}",
        'where: " WHERE " condition ((" AND " | " OR ") condition)*',
        f"condition: {' | '.join(conditions)}",
        'order: " ORDER BY " column (" ASC" | " DESC")?',
        'limit: " LIMIT " NUMBER',
        'COMPARE: "<=" | ">=" | "!=" | "=" | "<" | ">"',
        'EQUALITY: "=" | "!="',
        "NUMBER: /[0-9]{1,7}/",
        "STRING: /'[A-Za-z ]{1,20}'/",
    ]
    if numeric:
        rules.append(f"num_col: {alts(numeric)}")
    if text:
        rules.append(f"text_col: {alts(text)}")
    return "\n".join(rules) + "\n"


def prompt_for(question: str, table: str = TABLE, columns: dict = COLUMNS) -> str:
    """The few-shot prompt: the table and its columns, a worked example (for
    the default table), the question, then "SQL:" for the model to continue."""
    cols = ", ".join(f"{c} {t}" for c, t in columns.items())
    example = "Question: Who earns more than 5000?\nSQL: SELECT name FROM people WHERE salary > 5000;\n"
    return f"Table: {table}({cols})\n{example if table == TABLE else ''}Question: {question}\nSQL:"


@ppl.builtin(name="sql_grammar", replace=True, pure=True)
def _sql_grammar_builtin() -> str:
    """``sql_grammar()`` over ``TABLE`` and ``COLUMNS``, as a builtin of the
    steer language for examples/sql.steer (``--import examples/sql.py``)."""
    return sql_grammar()


@ppl.builtin(name="prompt_for", replace=True, pure=True)
def _prompt_for_builtin(question: str) -> str:
    """``prompt_for(question)`` over ``TABLE`` and ``COLUMNS``, as a builtin of
    the steer language."""
    return prompt_for(question)


def valid_query(text: str, table: str = TABLE, columns: dict = COLUMNS) -> bool:
    """``text`` is a sentence of :func:`sql_grammar` (checked by lark)."""
    from lark import Lark
    from lark.exceptions import LarkError

    try:
        Lark(sql_grammar(table, columns), parser="earley").parse(text)
    except LarkError:
        return False
    return True


class SQLQuery(ppl.Model):
    """A query over ``TABLE`` answering ``question``; ends at ";"."""

    def __init__(self, lm, question: str = QUESTION, max_tokens: int = 40):
        super().__init__()
        self.ctx = lm.context(prompt_for(question), constraint=ppl.grammar(sql_grammar()))
        self.left = max_tokens

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        self.left -= 1
        if tok.is_eos or self.ctx.text.endswith(";"):
            self.finish()
        else:
            self.condition(self.left > 0)

    def result_key(self):
        return self.ctx.text.strip()


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0"]))
