"""Constraints: token-level masks, sequence constraints with state, and
soft potentials.

- :mod:`.token`: ``lacks``, ``contains``, ``matches_token``, ``token_predicate``,
  ``no_special``, ``not_eos``:
  boolean masks over a vocabulary, for ``ctx.next_token().where(...)``;
- :mod:`.sequence`: ``regex``, ``grammar``, ``json_schema``, ``choice``:
  languages of whole texts, attached to a context with
  ``lm.context(prompt, constraint=...)`` or ``ctx.constrain(...)``;
- :mod:`.potential`: ``potential(fn)``: a function of the text as a log weight.

(An expensive predicate on the whole text, ``ctx.next_token().where_checked(pred)``
or ``ppl.awrs(...)``, is a distribution sampled by AWRS: see
:mod:`ppl.distributions.awrs`.)
"""

from .potential import Potential, potential
from .sequence import (
    ConstraintError,
    ConstraintState,
    SequenceConstraint,
    choice,
    grammar,
    json_schema,
    llg_tokenizer,
    regex,
)
from .token import (
    TokenConstraint,
    as_token_constraint,
    contains,
    lacks,
    matches_token,
    no_special,
    not_eos,
    token_predicate,
)

__all__ = [
    "ConstraintError",
    "ConstraintState",
    "Potential",
    "SequenceConstraint",
    "TokenConstraint",
    "as_token_constraint",
    "choice",
    "contains",
    "grammar",
    "json_schema",
    "lacks",
    "llg_tokenizer",
    "matches_token",
    "no_special",
    "not_eos",
    "potential",
    "regex",
    "token_predicate",
]
