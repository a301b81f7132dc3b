"""An arithmetic expression, in a grammar, that evaluates to a target number.

What it shows: a grammar constraint (``grammar/arithmetic.lark``, read with
``ppl.grammars.read("arithmetic")``, with a newline added after the expression
so that the model can end its line) that keeps every particle a well-formed
expression, a hard ``condition`` at the end (the value must equal the
target, and there must be at least one operator) and a ``twist`` along the
way: the text so far is cut back to a complete expression (trailing
operators dropped, open parentheses closed) and the twist is
``-2 log(1 + |value - target|)``, so resampling favours partial expressions
whose value is already near the target ("12 + 1" is nearer 24 than
"1 + 1"; a text without an operator counts as 0). Twists are taken back at the end: they shape the intermediate
targets, not the final one, which is the model's distribution over valid
expressions equal to the target.

Good output: expressions such as "12 + 12" or "6 * 4" that evaluate to
exactly the target (24 by default); finite log Z. Particles that end on the
wrong value die, so with few particles the run can end with all particles
dead ("all particles died"): rerun with more particles or another seed. At
the documented settings one expression survives, "(1 + 23) * 1" (P 1.0):
exactly 24, but padded with a "* 1", not the simple answer a person would
give. The prompt is a raw completion ("A: 24 ="), not a chat message: sent
as an instruction under the chat template (``--chat``) the model wrote long
sums of fractions and every one of the 8 particles died.

Run: ppl run examples/arithmetic.py --particles 8 --expand 3 --seed 0
Also written as examples/arithmetic_fn.py (@ppl.program) and
examples/arithmetic.steer (the DSL: this file's grammar, final test and
twist imported as the builtins ``expression_grammar``, ``hits_target`` and
``closeness_to_target``): the same model, the same run for a seed.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

import ppl

PROMPT = "Q: Write a sum or a product that equals {target}.\nA: {target} ="
# The shipped grammar, with a newline after the expression: the model ends a
# line far more readily than it emits EOS.
GRAMMAR = ppl.grammars.read("arithmetic").replace("?start: sum", 'start: sum "\\n"')
OPERATOR = re.compile(r"[0-9)]\s*[-+*/]")


@lru_cache(maxsize=1)
def _parser():
    from lark import Lark, Transformer

    class Evaluate(Transformer):
        def number(self, items):
            return float(items[0])

        def add(self, items):
            return items[0] + items[1]

        def sub(self, items):
            return items[0] - items[1]

        def mul(self, items):
            return items[0] * items[1]

        def div(self, items):
            return items[0] / items[1]

        def neg(self, items):
            return -items[0]

    return Lark(ppl.grammars.read("arithmetic"), parser="lalr", transformer=Evaluate())


@lru_cache(maxsize=100_000)
def evaluate(text: str) -> float | None:
    """The value of ``text`` as an expression of the arithmetic grammar, or
    None (not a complete expression, or a division by zero)."""
    from lark.exceptions import LarkError

    if not text.strip():
        return None
    try:
        value = _parser().parse(text.rstrip("\n"))
    except (LarkError, ZeroDivisionError):
        return None
    return float(value)


def partial_value(text: str) -> float | None:
    """The value of the longest complete expression ``text`` can be cut back
    to: trailing operators and "(" dropped, open parentheses closed
    ("(5 + 11 + " is read as "(5 + 11)")."""
    t = text.rstrip()
    while t and t[-1] in "+-*/( ":
        t = t[:-1].rstrip()
    return evaluate(t + ")" * max(0, t.count("(") - t.count(")")))


def hits(text: str, target: float) -> bool:
    """A complete expression with at least one operator whose value is ``target``."""
    value = evaluate(text)
    return value is not None and OPERATOR.search(text) is not None and math.isclose(value, target, abs_tol=1e-9)


def closeness(text: str, target: float) -> float:
    """The twist of a partial expression: ``-2 log(1 + |v - target|)``, ``v``
    its :func:`partial_value`, or 0 when it has no operator yet (a bare
    "24" is not an answer); ``|v - target|`` is capped at 1e6."""
    value = partial_value(text)
    if value is None or OPERATOR.search(text) is None:
        value = 0.0
    return -2.0 * math.log1p(min(abs(value - target), 1e6))


@ppl.builtin(name="expression_grammar", replace=True, pure=True)
def _grammar_builtin() -> str:
    """``GRAMMAR``'s text as a builtin of the steer language, for
    examples/arithmetic.steer (``--import examples/arithmetic.py``), which
    constrains its context with ``grammar(expression_grammar())``."""
    return GRAMMAR


# The final test and the twist, as the builtins hits_target and closeness_to_target.
ppl.builtin(hits, name="hits_target", replace=True)
ppl.builtin(closeness, name="closeness_to_target", replace=True)


class Arithmetic(ppl.Model):
    """An expression of the arithmetic grammar equal to ``target``."""

    def __init__(self, lm, target: int = 24, prompt: str | None = None, max_tokens: int = 20):
        super().__init__()
        text = (PROMPT if prompt is None else prompt).format(target=target)
        self.ctx = lm.context(text, constraint=ppl.grammar(GRAMMAR))
        self.target, self.left = float(target), max_tokens

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        self.left -= 1
        text = self.ctx.text
        if tok.is_eos or text.endswith("\n") or self.left == 0:
            self.condition(hits(text, self.target))
            self.finish()
            return
        self.twist(closeness(text, self.target))

    def result_key(self):
        return self.ctx.text.strip()


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0"]))
