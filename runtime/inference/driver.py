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
requests are batched. The loop ends when every particle is done. All weights
stay in log space; the result's ``log_Z`` is ``log((1/N) sum_i w_i)``, the log
of the unbiased estimate of ``Z = E_M[prod_t G_t]``.
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

__all__ = ["Algorithm", "Extension", "Selection", "positive_int", "run"]


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
                f"{name} raised {type(outcome).__name__} at step {step}: {outcome}",
                model=name,
                step=step,
            ) from outcome


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


def _since(before: dict, after: dict) -> dict:
    """The cumulative counters' growth from ``before`` to ``after`` (gauges as
    they are now): on a shared scheduler, the work done while a run went on,
    shared with the runs that went on with it."""
    out = {}
    for source, counters in after.items():
        old = before.get(source, {})
        out[source] = {k: v - old[k] if k in CUMULATIVE and k in old else v for k, v in counters.items()}
    return out


@dataclass
class _Run:
    """The state of one run of the loop."""

    particles: list
    ess: list[float] = field(default_factory=list)
    resampled_at: list[int] = field(default_factory=list)
    step: int = 0


async def run(model, algorithm: Algorithm, n_particles: int, *, seed=None, observer=None,
              history: bool = False, scheduler: Scheduler | None = None) -> InferenceResult:
    """Run ``algorithm`` on ``N = n_particles`` clones of ``model`` until every
    particle is done. ``observer(info)`` is called after every step (see
    :mod:`ppl.runtime.observers`); ``history=True`` records every step's
    particles in ``result.history`` (for ``result.to_html``).

    ``seed`` is anything ``numpy.random.default_rng`` takes (an int, a
    ``SeedSequence``). ``scheduler`` shares one batching scheduler with other
    runs in the same event loop (``ppl.map``); the result's counters are then
    the growth of the shared counters while this run was going."""
    N = positive_int(n_particles, "n_particles")
    _check_model(model)
    observer, recorder = with_history(observer, history)
    report = StepReporter(observer, N)
    rng = np.random.default_rng(seed)
    scheduler = scheduler if scheduler is not None else Scheduler()
    t0 = time.perf_counter()
    before = _counters(scheduler)
    state = _Run([model.clone() for _ in range(N)])
    with scheduler.joined():
        while not all(p.done for p in state.particles):
            state.step += 1
            ext = algorithm.extend(state.particles)
            await _advance_all(scheduler, ext.to_step, rng, state.step)
            weights = Weights(np.array([c.log_weight for c in ext.candidates]))
            state.ess.append(weights.ESS)
            sel = algorithm.select(ext.candidates, weights, rng)
            state.particles = sel.particles
            if sel.resampled:
                state.resampled_at.append(state.step)
            report(state.step, len(ext.to_step), ext.candidates, ext.parents, np.array(weights.lw),
                   sel.kept, sel.log_weights, weights.ESS)
    return InferenceResult(
        history=recorder.steps if recorder is not None else None,
        method=algorithm.name,
        particles=list(state.particles),
        log_weights=[p.log_weight for p in state.particles],
        ess=state.ess,
        resampled_at=state.resampled_at,
        n_steps=state.step,
        wall_time=time.perf_counter() - t0,
        stats=_since(before, _counters(scheduler)),
        settings={"n_particles": N, **algorithm.settings, "seed": seed},
    )
