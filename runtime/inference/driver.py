"""The one inference loop.

A *particle* is any object with ``log_weight`` (float), ``done`` (bool),
``clone()`` and ``async advance(rng)`` (apply one ``M_t`` and ``G_t``, adding
``log G_t`` to ``log_weight``; a dead particle sets ``done`` and
``log_weight = -inf``); see :mod:`ppl.runtime.particle`. :class:`ppl.Model`
is one.

:func:`run` owns what every algorithm shares: the population (``N`` clones
of the model), the random generator, the batching
:class:`~ppl.runtime.scheduler.Scheduler`, the per-step report to the
observer, and the result. An :class:`Algorithm` supplies only what differs,
in two pure-ish steps per iteration:

1. ``extend(particles)``: the candidates of this iteration, which of them
   take a step, and each candidate's parent (SMC steering clones every live
   particle ``K`` times; standard SMC and IS step every live particle once);
2. ``select(candidates, weights, rng)``: the next population of ``N`` and
   its log weights (without-replacement resampling, adaptive resampling, or
   nothing).

Every step of every stepping candidate runs as a coroutine, and their model
requests are batched. The loop ends when every particle is done, or after
``max_steps`` steps (``None``: no limit), whichever comes first; the result's
``status`` says which (``"ok"``, ``"all particles died"`` or ``"max_steps"``,
with ``result.n_unfinished`` the particles still running). All weights stay
in log space; the result's ``log_Z`` is ``log((1/N) sum_i w_i)``, the log of
the unbiased estimate of ``Z = E_M[prod_t G_t]`` (after a ``max_steps`` stop
it estimates the normaliser of the intermediate target reached, not ``Z``).

When every particle dies, the result keeps ``last_alive_step`` (the last step
after which a particle was still alive; the last one died at the next step)
and ``last_alive_texts`` (the texts of the live particles of that population).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from ppl.errors import ArgumentError, ArgumentTypeError, InferenceError

from ..observers import StepReporter, with_history
from ..resampling import Weights
from ..result import InferenceResult
from ..scheduler import Scheduler

__all__ = ["Algorithm", "Extension", "Selection", "optional_positive_int", "positive_int", "run"]


@dataclass
class Extension:
    """What ``Algorithm.extend`` returns: the candidates (in order), their
    parents' indices in the population, and the candidates that step."""

    candidates: list
    parents: list[int]
    to_step: list


@dataclass
class Selection:
    """What ``Algorithm.select`` returns: the next population, which
    candidates it came from (``kept``, repeats where duplicated), its log
    weights, and whether this was a resampling."""

    particles: list
    kept: list[int]
    log_weights: np.ndarray
    resampled: bool = False


class Algorithm(Protocol):
    """What an inference method plugs into :func:`run`."""

    name: str
    settings: dict

    def extend(self, particles: list) -> Extension: ...

    def select(self, candidates: list, weights: Weights, rng: np.random.Generator) -> Selection: ...


def positive_int(value, name: str) -> int:
    """``value`` as an ``int >= 1``; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def optional_positive_int(value, name: str) -> int | None:
    """``None``, or ``value`` as an ``int >= 1`` (see :func:`positive_int`)."""
    return None if value is None else positive_int(value, name)


def particle_text(particle) -> str:
    """A particle's text for reports: ``display_text()`` where it has one (a
    running particle's current text), else ``str()``; never raises."""
    try:
        display = getattr(particle, "display_text", None)
        return str(display() if callable(display) else particle)
    except Exception as exc:  # a user's __str__ must not end the run
        return f"<{type(particle).__name__}: str() raised {type(exc).__name__}>"


def _snapshot(particle):
    """A zero-argument function giving the particle's text as it is now:
    ``display_snapshot()`` where the particle has one (nothing decoded yet),
    else its :func:`particle_text` now."""
    try:
        snap = getattr(particle, "display_snapshot", None)
        if callable(snap):
            return snap()
    except Exception:  # a user's __str__ must not end the run
        pass
    text = particle_text(particle)
    return lambda: text


def _decoded(snapshot) -> str:
    try:
        return str(snapshot())
    except Exception as exc:
        return f"<str() raised {type(exc).__name__}>"


def _check_model(model) -> None:
    for attr in ("clone", "advance"):
        if not callable(getattr(model, attr, None)):
            raise ArgumentTypeError(
                f"expected a steering program (a ppl.Model instance), got {model!r} "
                f"of type {type(model).__name__} without .{attr}()"
            )


async def _advance_all(scheduler: Scheduler, particles: Sequence, rng: np.random.Generator, step: int) -> None:
    """One step of every particle in ``particles``, batched; errors become
    :class:`InferenceError` naming the model and the step."""
    outcomes = await scheduler.gather([p.advance(rng) for p in particles])
    for p, outcome in zip(particles, outcomes):
        if isinstance(outcome, BaseException):
            name = getattr(p, "program_name", None) or type(p).__name__
            raise InferenceError(
                f"{name} raised {type(outcome).__name__} at step {step}: {_short(str(outcome))}",
                model=name,
                step=step,
            ) from outcome


def _short(text: str, width: int = 300) -> str:
    """``text`` cut to ``width`` characters, head ... tail (the whole exception
    stays chained): a message must not carry a long prompt."""
    if len(text) <= width:
        return text
    half = (width - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


def _counters(scheduler: Scheduler) -> dict:
    out = {"scheduler": scheduler.stats.as_dict()}
    for lm in scheduler.models.values():
        out[lm.name] = lm.stats()
    return out


#: counters that only grow (the rest are gauges: sizes, means, maxima)
CUMULATIVE = frozenset({
    "batches", "rows_requested", "rows_sent",  # the scheduler
    "forward_passes", "requests", "tokens_requested", "tokens_computed", "tokens_stored",
    "tokens_reused", "cache_hits", "evictions",  # the CachedTransformer
    "calls", "rows",  # the ToyLM
})


def _since(before: dict, after: dict, first: dict) -> dict:
    """The cumulative counters' growth from ``before`` to ``after`` (gauges as
    they are now): on a shared scheduler, the work done while a run went on,
    shared with the runs that went on with it. A model the scheduler had not
    seen when the run began counts from when it first saw it (``first``), not
    from the model's creation."""
    out = {}
    for source, counters in after.items():
        old = before.get(source) or first.get(source, {})
        out[source] = {k: v - old[k] if k in CUMULATIVE and k in old else v for k, v in counters.items()}
    return out


@dataclass
class _Run:
    """The state of one run of the loop."""

    particles: list
    ess: list[float] = field(default_factory=list)
    resampled_at: list[int] = field(default_factory=list)
    step: int = 0
    last_alive_step: int = 0
    last_alive: list = field(default_factory=list)  # a text snapshot per live particle

    def note_alive(self) -> None:
        """Remember the population if it still has a live particle: a cheap
        snapshot of each one's text (:func:`_snapshot`), decoded only if every
        particle dies."""
        live = [p for p in self.particles if not getattr(p, "dead", False)]
        if live:
            self.last_alive_step = self.step
            self.last_alive = [_snapshot(p) for p in live]

    def result(self, method: str, **info) -> InferenceResult:
        died = not any(not getattr(p, "dead", False) for p in self.particles)
        return InferenceResult(
            method=method,
            particles=list(self.particles),
            log_weights=[p.log_weight for p in self.particles],
            ess=self.ess,
            resampled_at=self.resampled_at,
            n_steps=self.step,
            last_alive_step=self.last_alive_step if died else None,
            last_alive_texts=[_decoded(snap) for snap in self.last_alive] if died else [],
            **info,
        )


async def run(model, algorithm: Algorithm, n_particles: int, *, seed=None, observer=None,
              history: bool = False, scheduler: Scheduler | None = None,
              max_steps: int | None = None) -> InferenceResult:
    """Run ``algorithm`` on ``N = n_particles`` clones of ``model`` until every
    particle is done, or for at most ``max_steps`` steps (``None``: no limit;
    the result's ``status`` is then ``"max_steps"`` if some particle was still
    running). ``observer(info)`` is called after every step (see
    :mod:`ppl.runtime.observers`); ``history=True`` records every step's
    particles in ``result.history`` (for ``result.to_html``).

    ``seed`` is anything ``numpy.random.default_rng`` takes (an int, a
    ``SeedSequence``). ``scheduler`` shares one batching scheduler with other
    runs in the same event loop (``ppl.map``); the result's counters are then
    the growth of the shared counters while this run was going."""
    N = positive_int(n_particles, "n_particles")
    limit = optional_positive_int(max_steps, "max_steps")
    _check_model(model)
    observer, recorder = with_history(observer, history)
    report = StepReporter(observer, N)
    rng = np.random.default_rng(seed)
    scheduler = scheduler if scheduler is not None else Scheduler()
    t0 = time.perf_counter()
    before = _counters(scheduler)
    state = _Run([model.clone() for _ in range(N)])
    state.note_alive()
    with scheduler.joined():
        while not all(p.done for p in state.particles) and (limit is None or state.step < limit):
            state.step += 1
            ext = algorithm.extend(state.particles)
            await _advance_all(scheduler, ext.to_step, rng, state.step)
            weights = Weights(np.array([c.log_weight for c in ext.candidates]))
            state.ess.append(weights.ESS)
            sel = algorithm.select(ext.candidates, weights, rng)
            state.particles = sel.particles
            state.note_alive()
            if sel.resampled:
                state.resampled_at.append(state.step)
            report(state.step, len(ext.to_step), ext.candidates, ext.parents, np.array(weights.lw),
                   sel.kept, sel.log_weights, weights.ESS)
    return state.result(
        algorithm.name,
        history=recorder.steps if recorder is not None else None,
        wall_time=time.perf_counter() - t0,
        stats=_since(before, _counters(scheduler), scheduler.first_stats),
        settings={"n_particles": N, **algorithm.settings, "seed": seed,
                  **({"max_steps": limit} if limit is not None else {})},
    )
