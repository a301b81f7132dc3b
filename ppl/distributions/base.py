"""The distribution protocol.

Every distribution denotes a non-negative measure ``mu`` over its values and
offers three async methods:

- ``sample(rng)``: draw ``x`` from the normalised measure ``mu / |mu|``;
- ``log_prob(x)``: ``log mu(x)`` (``-inf`` outside the support);
- ``log_mass()``: ``log |mu|``, which is ``0`` for an ordinary (normalised)
  distribution.

The primitives use them as the Feynman-Kac weights require:

- ``sample(p)`` draws ``x ~ p / |p|`` and multiplies the weight by ``|p|``
  (through ``propose``, which distributions that can only *estimate* their
  mass override);
- ``sample(p, proposal=q)`` draws ``x ~ q / |q|`` and multiplies the weight by
  ``p(x) / (q(x) / |q|)``;
- ``observe(p, x)`` multiplies the weight by ``p(x)``.

Distributions over what comes next on a language-model context (the next
token, a whole text) set ``extends_context``: settling on a value
(``_commit``) appends it to the context, and in a ``@ppl.program`` each such
primitive is one step.

Distributions are values: immutable once built, shared between particles
(``copy.deepcopy`` returns the object itself), except those bound to a
context, which copy only their context handle.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["ContextBound", "Distribution", "draw_index"]


class Distribution:
    """Base class; subclasses implement ``sample`` and ``log_prob`` and, when
    the measure is not normalised, ``log_mass``."""

    #: whether settling on a value extends a language-model context
    extends_context: bool = False

    async def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    async def log_prob(self, value: Any) -> float:
        raise NotImplementedError

    async def log_mass(self) -> float:
        return 0.0

    async def propose(self, rng: np.random.Generator) -> tuple[Any, float]:
        """``(x, log w)`` with ``x`` and ``w`` properly weighted for the measure:
        ``E[w f(x)] = sum_x mu(x) f(x)``. The default is exact: ``x ~ mu/|mu|``,
        ``w = |mu|`` (and ``(None, -inf)`` for a zero measure, without sampling).
        Distributions that can only *estimate* their mass (AWRS) override it."""
        log_w = float(await self.log_mass())
        if log_w == -math.inf:
            return None, -math.inf
        return await self.sample(rng), log_w

    def _commit(self, value: Any) -> None:
        """Called once a primitive has settled on ``value`` for this
        distribution (context-bound distributions extend their context here)."""

    def signature(self) -> tuple:
        """What a replaying ``@ppl.program`` compares to detect that it took
        another path than the run it replays (cheap: no model calls)."""
        return (type(self).__name__,)

    def __deepcopy__(self, memo):
        return self  # a value: shared by every particle

    def __copy__(self):
        return self


class ContextBound(Distribution):
    """A distribution over what comes next on one context: it extends the
    context when a primitive commits a value, it is valid only while the
    context has not moved on, and a cloned particle's copy follows the
    clone's own context handle (``copy.deepcopy`` copies only the handle)."""

    extends_context = True

    def __init__(self, context):
        self.context = context
        self._prefix = context.prefix_ids

    def __deepcopy__(self, memo):
        new = self.__copy__()
        new.context = copy.deepcopy(self.context, memo)
        return new

    def __copy__(self):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def _check_current(self) -> None:
        if self.context.prefix_ids is not self._prefix:
            raise ModelError(
                f"{self._what_it_is} was used after its context moved on "
                f"(context is now {self.context!r}); {self._remedy}"
            )

    _what_it_is = "a distribution on a context"
    _remedy = "make a new one from the context"


def draw_index(p: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw of an index from probabilities ``p`` (sum 1)."""
    cdf = np.cumsum(p)
    i = int(np.searchsorted(cdf, rng.uniform() * cdf[-1], side="right"))
    return min(i, len(p) - 1)
