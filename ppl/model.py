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
``await self.intervene(p, x)``          ``x`` is committed to ``p`` (a next token: appended); ``log w`` unchanged
``y = await self.call(sub)``            ``sub``'s primitives, inline (:mod:`ppl.submodel`)
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
from .submodel import call as _call
from .submodel import discard as _discard

__all__ = ["Death", "Model", "Site"]

#: how a particle can die: the kind of primitive whose weight reached zero
DEATH_KINDS = {
    "condition": "condition(False)",
    "constraint": "a constraint that allowed no token (zero mass)",
    "sample": "a proposed value the target gives probability 0",
    "observe": "an observation of probability 0",
    "factor": "factor(-inf)",
    "twist": "twist(-inf)",
    "unknown": "an unrecorded cause",
}


@dataclass(frozen=True)
class Site:
    """One call of a primitive, as the program made it: ``kind`` is
    ``"sample"``, ``"observe"``, ``"intervene"``, ``"condition"``, ``"factor"``
    or ``"twist"``; ``dist`` and ``proposal`` are the distributions (sample,
    observe, intervene), ``value`` the observed or forced value or the score
    (the others)."""

    kind: str
    dist: Any = None
    value: Any = None
    proposal: Any = None


@dataclass(frozen=True)
class Death:
    """Why a particle died: at its ``step`` (its own step count, which is the
    run's step), a primitive of ``kind`` (a key of :data:`DEATH_KINDS`) made
    its weight zero; ``detail`` names the call, e.g. ``condition(False)``."""

    step: int
    kind: str
    detail: str = ""

    def describe(self) -> str:
        return f"step {self.step}: {DEATH_KINDS.get(self.kind, self.kind)} ({self.detail})"


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
    #: why this particle died (a :class:`Death`), or None while it lives
    death: Death | None = None
    _display_context: LMContext | None = None
    _display_origin: tuple | None = None

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

    async def intervene(self, dist, value) -> Any:
        """Set ``dist``'s value to ``value`` without weighting: ``value`` is
        committed as a draw would be (for a next-token distribution, the
        token is appended to its context; for a text continuation, the text)
        and ``log w`` does not change. An intervention changes the generative
        process, not the target's weighting: with a token ``v`` forced after
        the prefix ``s``, the kernel is ``M(s') = 1[s' = s v]``, so the
        target of what follows is ``p(rest | s v)`` with ``v`` in the text,
        where ``observe`` would instead weight by ``p(v | s)``. Returns
        ``value``."""
        self._check_running("intervene()")
        return await self._site(Site("intervene", dist, value=value))

    async def call(self, sub) -> Any:
        """Run the submodel ``sub`` (a :class:`ppl.Submodel`, an unstarted
        ``@ppl.program`` call or a coroutine) inside this step, its
        primitives acting on this particle, and return its result: the same
        Feynman-Kac model as ``sub``'s body written inline (see
        :mod:`ppl.submodel`)."""
        try:
            self._check_running("call()")
        except ModelError:
            _discard(sub)
            raise
        return await _call(sub)

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

    async def apply_potential(self, potential, ctx, *, finished: bool) -> float:
        """Apply a soft ``potential`` to ``ctx``'s text: while the text grows
        (``finished=False``) its prefix score as a twist, when it is done its
        score as a factor (see :mod:`ppl.constraints.potential`). Call it once
        per step; returns the log weight applied."""
        if finished:
            value = await potential(ctx)
            self.factor(value)
        else:
            value = await potential.prefix_score(ctx)
            self.twist(value)
        return value

    def finish(self) -> None:
        """Mark the particle complete; the last twist is taken back."""
        self.done = True
        previous, self._twist_amount = self._twist_amount, 0.0
        if previous not in (0.0, -math.inf):
            self._add(-previous, "finish() taking back the last twist")
        self._release_display_context()

    def _release_display_context(self) -> None:
        """A finished particle shows ``str(self)``: stop holding a context that
        only :meth:`display_text` held (it would keep its cache pinned), and
        keep its model and prompt for :meth:`display_origin`."""
        ctx = self._display_context
        if ctx is not None and all(c is not ctx for c in self.contexts()):
            self._display_origin = (ctx.lm, ctx.prompt)
            self._display_context = None

    # -- the hook: how a site changes the particle --------------------------------
    async def _site(self, site: Site) -> Any:
        """Apply ``site`` to this particle and return the primitive's result.
        Remembers the context the site's distribution is bound to (for
        :meth:`display_text`) and, if the site kills the particle, why."""
        context = getattr(site.dist, "context", None)
        if isinstance(context, LMContext):
            self._display_context = context
        try:
            return await getattr(self, f"_apply_{site.kind}")(site)
        except ParticleDied as died:
            if self.death is None:
                self.death = Death(self._steps, _death_kind(site, died), _short(str(died.args[0]) if died.args else ""))
            raise

    async def _apply_sample(self, site: Site) -> Any:
        dist, proposal = site.dist, site.proposal
        rng = current().rng
        if proposal is None:
            # (x, w) properly weighted for p: exact (x ~ p/|p|, w = |p|) for
            # ordinary distributions, an unbiased estimate of |p| for AWRS
            value, log_w = await dist.propose(rng)
            self._add(float(log_w), lambda: f"sample({dist!r})", zero_mass=True)
        else:
            log_mass_q = float(await proposal.log_mass())
            if log_mass_q == -math.inf:
                self._add(-math.inf, lambda: f"sample(..., proposal={proposal!r})", zero_mass=True)
            value = await proposal.sample(rng)
            log_p = float(await dist.log_prob(value))
            log_q = float(await proposal.log_prob(value)) - log_mass_q
            self._add(log_p - log_q, lambda: f"sample({dist!r}, proposal={proposal!r})")
        dist._commit(value)
        return value

    async def _apply_observe(self, site: Site) -> float:
        dist, value = site.dist, site.value
        log_p = float(await dist.log_prob(value))
        self._add(log_p, lambda: f"observe({dist!r}, {value!r})")
        dist._commit(value)
        return log_p

    async def _apply_intervene(self, site: Site) -> Any:
        site.dist._commit(site.value)
        return site.value

    async def _apply_condition(self, site: Site) -> None:
        if not site.value:
            self._add(-math.inf, "condition(False)")

    async def _apply_factor(self, site: Site) -> None:
        self._add(site.value, lambda: f"factor({site.value!r})")

    async def _apply_twist(self, site: Site) -> None:
        log_w = site.value
        if math.isnan(log_w) or log_w == math.inf:
            raise WeightError(f"twist({log_w!r}) is not a valid log weight (NaN or +inf)")
        previous, self._twist_amount = self._twist_amount, log_w
        if previous == -math.inf:
            return  # already dead; nothing to take back
        self._add(log_w - previous, lambda: f"twist({log_w!r})")

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

    def _add(self, delta: float, primitive, *, zero_mass: bool = False) -> None:
        """Add ``delta`` to the log weight; a weight of zero raises
        :class:`ParticleDied` (``zero_mass``: because a distribution's
        allowed mass was zero, which :meth:`_site` records as a constraint
        that allowed nothing). ``primitive`` names the primitive in those
        messages: a string, or a function giving it (formatted only then,
        not on every site)."""
        if math.isnan(delta) or delta == math.inf:
            raise WeightError(
                f"{_named(primitive)} produced a log weight of {delta!r} "
                "(log weights must be finite or -inf)"
            )
        self.log_weight += delta
        if self.log_weight == -math.inf:
            raise ParticleDied(_named(primitive), "constraint" if zero_mass else None)

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
        if self.death is None:  # died outside any site
            self.death = Death(self._steps, "unknown", "")
        self.dead = True
        self.done = True
        self.log_weight = -math.inf

    def contexts(self) -> list[LMContext]:
        """The language-model contexts held directly by this particle's attributes."""
        return [v for k, v in self.__dict__.items() if isinstance(v, LMContext) and k != "_display_context"]

    def result_key(self):
        """What ``result.posterior()`` groups particles by: the string form."""
        return str(self)

    def display_text(self) -> str:
        """The particle's text as reports show it at every step: ``str(self)``
        when the program's class defines its own ``__str__`` (or once the
        particle finished), else the text of the language-model context its
        most recent primitive drew from or scored (so a running
        ``@ppl.program`` or ``.steer`` particle shows its text too)."""
        if (self.done and not self.dead) or _defines_str(type(self)):
            return str(self)
        context = self.display_context()
        return str(self) if context is None else context.text

    def display_snapshot(self):
        """:meth:`display_text` as of now, decoded later: a zero-argument
        function returning that text. A running particle's text is its
        context's immutable tuple of token ids, kept as it is (nothing
        decoded until asked); a finished one no longer changes. The driver
        keeps a snapshot of each live particle every step and decodes them
        only if every particle dies."""
        if (self.done and not self.dead) and not _defines_str(type(self)):
            return self.__str__
        if _defines_str(type(self)):
            text = str(self)  # a user's __str__ may read state that changes
            return lambda: text
        context = self.display_context()
        if context is None:
            return self.__str__
        lm, ids, start = context.lm, context.prefix_ids, context._n_prompt
        return lambda: lm.decode(ids[start:])

    def display_origin(self) -> tuple | None:
        """``(lm, prompt)`` of the context reports show (kept after the
        particle finished), or None."""
        ctx = self.display_context()
        return (ctx.lm, ctx.prompt) if ctx is not None else self._display_origin

    def display_context(self) -> LMContext | None:
        """The context a report shows: the one this particle's most recent
        primitive was bound to, else its only context, else None."""
        if self._display_context is not None:
            return self._display_context
        contexts = self.contexts()
        return contexts[0] if len(contexts) == 1 else None

    def __repr__(self) -> str:
        """``<Name 'its text' log_weight=..., state>``: the text as reports show it,
        its end kept when long."""
        try:
            text = self.display_text()
        except Exception:  # a user's __str__ must not break a repr
            text = "?"
        if len(text) > 60:
            text = "..." + text[-57:]
        state = "dead" if self.dead else "finished" if self.done else f"step {self._steps}"
        return f"<{type(self).__name__} {text!r} log_weight={self.log_weight:.4g}, {state}>"

    def __str__(self) -> str:
        contexts = self.contexts()
        if len(contexts) == 1:
            return contexts[0].text
        public = {k: v for k, v in self.__dict__.items() if not k.startswith("_")
                  and k not in ("log_weight", "done", "dead", "death")}
        # the whole values: str() is also the default posterior key (result_key), so it must
        # not cut them; error messages shorten (the driver's InferenceError, LMContext's repr)
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in public.items())})"



def _defines_str(cls: type) -> bool:
    """Whether ``__str__`` comes from a user's class: not from :class:`Model`
    or ppl's own program forms (whose ``__str__`` shows a running particle as
    a placeholder)."""
    for klass in cls.__mro__:
        if "__str__" in klass.__dict__:
            return klass is not Model and klass.__module__.split(".")[0] != "ppl" and klass is not object
    return False


def _death_kind(site: Site, died: ParticleDied) -> str:
    """The :data:`DEATH_KINDS` key of a site that killed its particle."""
    if site.kind == "sample":
        return "constraint" if died.args[1:2] == ("constraint",) else "sample"
    return site.kind


def _named(primitive) -> str:
    return primitive if isinstance(primitive, str) else primitive()


def _short(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
