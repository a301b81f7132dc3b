"""Distributions a steering program samples from and observes.

- :mod:`.base`: the protocol (``sample``, ``log_prob``, ``log_mass``,
  ``propose``) and how the primitives weigh with it;
- :mod:`.simple`: ``Categorical``, ``Bernoulli``, ``Geometric``;
- :mod:`.next_token`: ``ctx.next_token()`` and ``.where(C)``, over
  :class:`Token` values;
- :mod:`.awrs`: ``.where_checked(pred)``, an expensive predicate on the
  whole text, sampled by adaptive weighted rejection sampling;
- :mod:`.text`: ``TextContinuation(ctx)``, a whole text observed at once.
"""

from .awrs import CheckedNextToken, awrs, awrs_draw
from .base import Distribution
from .next_token import ConditionedNextToken, NextToken, NextTokenView, Token
from .simple import Bernoulli, Categorical, Geometric
from .text import TextContinuation

__all__ = [
    "Bernoulli",
    "Categorical",
    "CheckedNextToken",
    "ConditionedNextToken",
    "Distribution",
    "Geometric",
    "NextToken",
    "NextTokenView",
    "TextContinuation",
    "Token",
    "awrs",
    "awrs_draw",
]
