"""Constrained generation on the default model (SmolLM2-135M-Instruct): every
finished particle satisfies its constraint. Marked slow (loads the model)."""

from __future__ import annotations

import importlib
import json
import math
import re

import lark
import pytest

import ppl
from ppl import awrs
from ppl.constraints import choice, grammar, json_schema, regex

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm(default_lm):
    return default_lm


class Generate(ppl.Model):
    """Draw from the constrained context until EOS; a text still incomplete
    after ``max_tokens`` tokens is dropped."""

    def __init__(self, lm, prompt, constraint, max_tokens):
        super().__init__()
        self.ctx = lm.context(prompt, constraint=constraint)
        self.left = max_tokens

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        self.left -= 1
        if tok.is_eos:
            self.finish()
        elif self.left == 0:
            self.condition(False)
            self.finish()


def finished_texts(result):
    out = [p.ctx.text for p, lw in zip(result.particles, result.log_weights) if lw > -math.inf]
    assert out, "no particle finished"
    for p, lw in zip(result.particles, result.log_weights):
        if lw > -math.inf:
            assert p.ctx.finished and p.ctx.accepting
    return out


def run(lm, prompt, constraint, max_tokens, seed=0):
    return ppl.infer(Generate(lm, prompt, constraint, max_tokens), method="steer", n_particles=4, expand=2, seed=seed)


def test_regex(lm):
    pattern = r"[0-9]{3}-[0-9]{4}"
    for text in finished_texts(run(lm, "Call me at ", regex(pattern), 12)):
        assert re.fullmatch(pattern, text), text


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def _validate(doc):
    try:
        import jsonschema
    except ImportError:  # a hand check of the same schema
        assert isinstance(doc, dict) and set(doc) == {"name", "age"}
        assert isinstance(doc["name"], str) and len(doc["name"]) <= 10
        assert isinstance(doc["age"], int) and not isinstance(doc["age"], bool) and 0 <= doc["age"] <= 120
    else:
        jsonschema.validate(doc, SCHEMA)


def test_json_schema(lm):
    texts = finished_texts(run(lm, "A person, as JSON: ", json_schema(SCHEMA), 24))
    for text in texts:
        _validate(json.loads(text))


ANSWER = 'start: "The answer is " NUMBER "."\nNUMBER: /[0-9]{1,3}/\n'


def test_grammar(lm):
    parser = lark.Lark(ANSWER)
    for text in finished_texts(run(lm, "What is 6 times 7? ", grammar(ANSWER), 12)):
        parser.parse(text)


def test_shipped_grammar_and_choice(lm):
    """The shipped arithmetic grammar intersected with a length bound (so that
    the text must end within a few tokens)."""
    parser = lark.Lark(importlib.import_module("ppl.grammars").read("arithmetic"))
    both = [grammar("arithmetic"), regex(r"[0-9+*/() -]{1,6}")]
    texts = finished_texts(run(lm, "Write a short sum: ", both, 10, seed=1))
    for text in texts:
        parser.parse(text)
        assert len(text) <= 6
    for text in finished_texts(run(lm, "Is the sky blue? Answer:", choice([" yes", " no"]), 4)):
        assert text in (" yes", " no")


def test_awrs_on_the_default_model(lm):
    """No word longer than five letters, checked only on the tokens AWRS draws."""

    def short_words(text):
        return all(len(w) <= 5 for w in re.findall(r"[A-Za-z]+", text))

    evaluations = []

    class Short(ppl.Model):
        def __init__(self):
            super().__init__()
            self.ctx = lm.context("The cat")
            self.left = 8

        async def step(self):
            d = awrs(self.ctx.next_token(), short_words)
            tok = await self.sample(d)
            evaluations.append(d.evaluations)
            self.left -= 1
            if tok.is_eos or self.left == 0:
                self.finish()

    r = ppl.infer(Short(), method="steer", n_particles=4, expand=2, seed=0)
    for p, lw in zip(r.particles, r.log_weights):
        if lw > -math.inf:
            assert short_words(p.ctx.text), p.ctx.text
    assert sum(evaluations) / len(evaluations) < 0.01 * lm.vocab_size
