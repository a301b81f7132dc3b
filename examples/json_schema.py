"""JSON that validates against a schema.

What it shows: a sequence constraint compiled from a JSON schema
(``ppl.json_schema``, via llguidance). The context restricts every token to
those that keep the text a viable prefix of some valid document, and allows
EOS only once the document is complete; each particle's weight is multiplied
by the probability mass the model put on the viable tokens. The target is the
model's distribution over valid documents, so SMC steering returns the
documents *the model* finds most likely, instead of whatever greedy masking
stumbles into (masking alone is biased: it never pays for the mass it cut).

Good output: JSON objects with exactly the schema's fields, sensible values
for the prompt's person ({"name": "Marie Curie", "age": 66, "job":
"scientist"}), every one parsing and validating; finite log Z. The prompt is
sent as a user message under the model's chat template (``--chat``): fed as
raw text, the instruction-tuned model invented the facts ({"name":
"Jaafrida Khosla", "age": 72, ...}). The name must match a pattern (a
capital letter, then letters, spaces, dots, apostrophes or hyphens): without
it the chat run wrote "<NAME>Marie Curie", a placeholder from the model's
training data. At the documented settings every particle ends on the good
output above (P 1.0).

Run: ppl run examples/json_schema.py --particles 8 --expand 3 --seed 0 --chat
Also written as examples/json_schema_fn.py (@ppl.program) and
examples/json_schema.steer (the DSL: the schema taken from this file through
the builtin ``record_schema``).
"""

from __future__ import annotations

import json
import re

import ppl

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24, "pattern": "^[A-Z][A-Za-z .'-]*$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "job": {"enum": ["scientist", "writer", "painter", "musician", "athlete"]},
    },
    "required": ["name", "age", "job"],
    "additionalProperties": False,
}


@ppl.builtin(replace=True, pure=True)
def record_schema() -> str:
    """``SCHEMA`` as JSON text, a builtin of the steer language for
    examples/json_schema.steer (``json_schema(record_schema())``)."""
    return json.dumps(SCHEMA)


PROMPT = "Marie Curie was a physicist and chemist who died aged 66. As JSON:\n"


def validates(text: str, schema: dict = SCHEMA) -> bool:
    """``text`` parses as JSON and satisfies ``schema`` (the subset used here:
    object, required, additionalProperties, string maxLength and pattern,
    integer bounds, enum)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    if not isinstance(doc, dict) or set(doc) - set(schema["properties"]):
        return False
    if any(k not in doc for k in schema.get("required", ())):
        return False
    for key, rule in schema["properties"].items():
        if key not in doc:
            continue
        v = doc[key]
        if "enum" in rule and v not in rule["enum"]:
            return False
        if rule.get("type") == "string" and not (isinstance(v, str) and len(v) <= rule.get("maxLength", 10**9)):
            return False
        if "pattern" in rule and not re.search(rule["pattern"], v):
            return False
        if rule.get("type") == "integer" and not (
            isinstance(v, int) and not isinstance(v, bool)
            and rule.get("minimum", -10**18) <= v <= rule.get("maximum", 10**18)
        ):
            return False
    return True


class JSONRecord(ppl.Model):
    """A JSON document valid under ``SCHEMA``, generated after the prompt."""

    def __init__(self, lm, prompt: str = PROMPT, max_tokens: int = 60):
        super().__init__()
        self.ctx = lm.context(prompt, constraint=ppl.json_schema(SCHEMA))
        self.left = max_tokens

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        self.left -= 1
        if tok.is_eos:
            self.finish()
        else:
            self.condition(self.left > 0)  # out of tokens before the document closed

    def result_key(self):
        return self.ctx.text


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0", "--chat"]))
