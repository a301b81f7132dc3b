"""Steering programs written as classes: subclass :class:`Model`.

One call of ``step()`` applies one Feynman-Kac kernel ``M_t`` and potential
``G_t``. The primitives change the particle's log weight ``log w``:

=====================================  =========================================
``x = await self.sample(p)``            ``x ~ p/|p|``;  ``log w += log |p|``
``x = await self.sample(p, proposal=q)`` ``x ~ q/|q|``;  ``log w += log p(x) - log q(x) + log |q|``
``await self.observe(p, x)``            ``log w += log p(x)``
``self.condition(b)``                   ``log w += log 1[b]``
``self.factor(l)``                      ``log w += l``
``self.twist(l)``                       ``log w += l - l_prev`` (the previous twist is taken back)
``self.finish()``                       the particle is done; the last twist is taken back
=====================================  =========================================

(``|p|`` is ``1`` for ordinary distributions and ``p(C)`` for a next-token
distribution conditioned with ``.where(C)``; a distribution that can only
estimate its mass, like AWRS's ``.where_checked``, multiplies the weight by an
unbiased estimate of it, through ``dist.propose(rng)``.) Weights stay in log space; a
particle whose weight reaches zero (``-inf``) is dead: its step stops at once
and it is never stepped again. A NaN or ``+inf`` increment raises
:class:`~ppl.errors.WeightError` naming the primitive.

Cloning (for resampling and for the ``K`` children of SMC steering) copies the
particle's attributes (``copy.deepcopy``), except what is a value: the
language model, constraints, potentials and distributions return themselves
from ``__deepcopy__`` and are shared; language-model contexts copy only their
handle and share their token sequence and constraint state. Attributes named
in ``shared_attributes`` are shared by reference, not copied.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Awaitable

import numpy as np

from .context import LMContext
from .errors import ModelError, WeightError
from .running import ParticleDied, current, running

__all__ = ["Model", "Site"]


@dataclass(frozen=True)
class Site:
    """One call of a primitive, as the program made it: ``kind`` is
    ``"sample"``, ``"observe"``, ``"condition"``, ``"factor"`` or ``"twist"``;
    ``dist`` and ``proposal`` are the distributions (sample, observe),
    ``value`` the observed value or the score (the others)."""

    kind: str
    dist: Any = None
    value: Any = None
    proposal: Any = None


def _now(site_result: Awaitable) -> Any:
    """Run a site that never waits (condition, factor, twist) to completion,
    synchronously, and return its result."""
    coro = site_result.__await__()
    try:
        next(coro)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise ModelError("a condition/factor/twist site waited on something; scored sites must not wait")


class Model:
    """Base class of steering programs written as classes.

    Subclass it, call ``super().__init__()``, and write ``async def step(self)``;
    call ``self.finish()`` when the particle is complete. ``async def start(self)``,
    if defined, runs once before the first step.

    Every primitive becomes a :class:`Site` handed to one hook,
    :meth:`_site`, which applies it (the weight rule of the module
    docstring). Program forms that must interpret primitives differently
    (``@ppl.program``'s record and replay) override that one method.
    """

    #: attribute names shared by reference between clones (e.g. a scoring model)
    shared_attributes: tuple[str, ...] = ()

    # Defaults that also cover a subclass that forgot super().__init__().
    log_weight: float = 0.0
    done: bool = False
    dead: bool = False
    _twist_amount: float = 0.0
    _started: bool = False
    _steps: int = 0

    def __init__(self) -> None:
        self.log_weight = 0.0
        self.done = False
        self.dead = False
        self._twist_amount = 0.0
        self._started = False
        self._steps = 0

    # -- what the user writes ------------------------------------------------
    async def start(self) -> None:
        """Runs once, before the first step. Override if needed."""

    async def step(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define `async def step(self)`")

    # -- primitives: each one site through the hook ---------------------------
    async def sample(self, dist, proposal=None) -> Any:
        """Draw a value; see the module docstring for the weight."""
        self._check_running("sample()")
        return await self._site(Site("sample", dist, proposal=proposal))

    async def observe(self, dist, value) -> float:
        """Score ``value`` under ``dist``; returns the log-probability added."""
        self._check_running("observe()")
        return await self._site(Site("observe", dist, value=value))

    def condition(self, ok) -> None:
        """Keep the particle only if ``ok`` holds (weight times ``1[ok]``)."""
        self._check_running("condition()")
        _now(self._site(Site("condition", value=bool(ok))))

    def factor(self, log_w: float) -> None:
        """Multiply the weight by ``exp(log_w)``."""
        self._check_running("factor()")
        _now(self._site(Site("factor", value=float(log_w))))

    def twist(self, log_w: float) -> None:
        """Add ``log_w`` to the log weight now and take back the previous twist:
        intermediate targets change, the final target does not."""
        self._check_running("twist()")
        _now(self._site(Site("twist", value=float(log_w))))

    def finish(self) -> None:
        """Mark the particle complete; the last twist is taken back."""
        self.done = True
        previous, self._twist_amount = self._twist_amount, 0.0
        if previous not in (0.0, -math.inf):
            self._add(-previous, "finish() taking back the last twist")

    # -- the hook: how a site changes the particle --------------------------------
    async def _site(self, site: Site) -> Any:
        """Apply ``site`` to this particle and return the primitive's result."""
        return await getattr(self, f"_apply_{site.kind}")(site)

    async def _apply_sample(self, site: Site) -> Any:
        dist, proposal = site.dist, site.proposal
        rng = current().rng
        if proposal is None:
            # (x, w) properly weighted for p: exact (x ~ p/|p|, w = |p|) for
            # ordinary distributions, an unbiased estimate of |p| for AWRS
            value, log_w = await dist.propose(rng)
            self._add(float(log_w), f"sample({dist!r})")
        else:
            log_mass_q = float(await proposal.log_mass())
            if log_mass_q == -math.inf:
                self._add(-math.inf, f"sample(..., proposal={proposal!r})")
            value = await proposal.sample(rng)
            log_p = float(await dist.log_prob(value))
            log_q = float(await proposal.log_prob(value)) - log_mass_q
            self._add(log_p - log_q, f"sample({dist!r}, proposal={proposal!r})")
        dist._commit(value)
        return value

    async def _apply_observe(self, site: Site) -> float:
        dist, value = site.dist, site.value
        log_p = float(await dist.log_prob(value))
        self._add(log_p, f"observe({dist!r}, {value!r})")
        dist._commit(value)
        return log_p

    async def _apply_condition(self, site: Site) -> None:
        if not site.value:
            self._add(-math.inf, "condition(False)")

    async def _apply_factor(self, site: Site) -> None:
        self._add(site.value, f"factor({site.value!r})")

    async def _apply_twist(self, site: Site) -> None:
        log_w = site.value
        if math.isnan(log_w) or log_w == math.inf:
            raise WeightError(f"twist({log_w!r}) is not a valid log weight (NaN or +inf)")
        previous, self._twist_amount = self._twist_amount, log_w
        if previous == -math.inf:
            return  # already dead; nothing to take back
        self._add(log_w - previous, f"twist({log_w!r})")

    # -- the step boundary (only programs written as functions suspend) ------------
    def _at_token_site(self) -> bool:
        """Before a token primitive of the module-level API: whether this
        particle must first wait for its next step. A class program's step is
        its ``step()``: never."""
        return False

    def _resumed_at_token_site(self) -> None:
        """Called when a particle suspended by :meth:`_at_token_site` resumes."""

    # -- machinery --------------------------------------------------------------
    def _check_running(self, primitive: str) -> None:
        state = current()
        if state is None or state.particle is not self:
            raise ModelError(
                f"{type(self).__name__}.{primitive} was called outside this particle's "
                "running step: primitives only work inside step() (or start()) while "
                "inference runs the program"
            )

    def _add(self, delta: float, primitive: str) -> None:
        if math.isnan(delta) or delta == math.inf:
            raise WeightError(
                f"{primitive} produced a log weight of {delta!r} "
                "(log weights must be finite or -inf)"
            )
        self.log_weight += delta
        if self.log_weight == -math.inf:
            raise ParticleDied(primitive)

    def clone(self) -> "Model":
        """A copy that shares language-model state (see the module docstring)."""
        new = object.__new__(type(self))
        shared = {k: v for k, v in self.__dict__.items() if k in self.shared_attributes}
        rest = {k: v for k, v in self.__dict__.items() if k not in self.shared_attributes}
        new.__dict__.update(copy.deepcopy(rest))
        new.__dict__.update(shared)
        return new

    async def advance(self, rng: np.random.Generator) -> None:
        """Run one step (preceded by ``start`` the first time) as this particle.
        Used by the inference algorithms."""
        with running(self, rng):
            try:
                if not self._started:
                    self._started = True
                    await self.start()
                if not self.done:
                    self._steps += 1
                    await self.step()
            except ParticleDied:
                self._die()

    def _die(self) -> None:
        self.dead = True
        self.done = True
        self.log_weight = -math.inf

    def contexts(self) -> list[LMContext]:
        """The language-model contexts held directly by this particle's attributes."""
        return [v for v in self.__dict__.values() if isinstance(v, LMContext)]

    def result_key(self):
        """What ``result.posterior()`` groups particles by: the string form."""
        return str(self)

    def __str__(self) -> str:
        contexts = self.contexts()
        if len(contexts) == 1:
            return contexts[0].text
        public = {k: v for k, v in self.__dict__.items() if not k.startswith("_")
                  and k not in ("log_weight", "done", "dead")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in public.items())})"

