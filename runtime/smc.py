"""Inference algorithms for Feynman-Kac models given as steering programs.

A *particle* is any object with ``log_weight`` (float), ``done`` (bool),
``clone()`` and ``async advance(rng)`` (apply one ``M_t`` and ``G_t``, adding
``log G_t`` to ``log_weight``; a dead particle sets ``done`` and
``log_weight = -inf``). :class:`ppl.Model` is one.

All algorithms keep the weights in log space and return an
:class:`~ppl.runtime.result.InferenceResult` whose ``log_Z`` is the log of the
unbiased estimate ``Z_hat = (1/N) sum_i w_i`` of ``Z = E_M[prod_t G_t]``.
Each step of every live particle runs as a coroutine; their language-model
requests are batched by one :class:`~ppl.runtime.scheduler.Scheduler`.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Sequence

import numpy as np

from ppl.errors import InferenceError, NestedEventLoopError

from .resampling import ess as effective_sample_size
from .resampling import get_resampler, logsumexp, normalise, without_replacement
from .history import HistoryRecorder
from .result import InferenceResult
from .scheduler import Scheduler


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_model(model) -> None:
    for attr in ("clone", "advance"):
        if not callable(getattr(model, attr, None)):
            raise TypeError(
                f"expected a steering program (a ppl.Model instance), got {model!r} "
                f"of type {type(model).__name__} without .{attr}()"
            )


async def _advance_all(
    scheduler: Scheduler, particles: Sequence, rng: np.random.Generator, step: int
) -> None:
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


class _Observer:
    """Reports each step to an optional ``observer(info)`` callable (progress
    displays, history recorders): the algorithms themselves never print.

    ``info`` holds ``step``, ``n_particles``, ``live``, ``ess``,
    ``particle_steps`` (cumulative), ``candidates`` (the particles after this
    step's moves, before resampling), ``parents`` (for each candidate, its
    index in the previous population), ``log_weights`` (the candidates' log
    weights before resampling), ``kept`` (candidate indices forming the next
    population, repeated where resampling duplicated) and ``kept_log_weights``.
    """

    def __init__(self, observer, n_particles: int):
        self.observer, self.n, self.particle_steps = observer, n_particles, 0

    def __call__(self, step, stepped, candidates, parents, log_w, kept, kept_log_w, ess) -> None:
        self.particle_steps += stepped
        if self.observer is not None:
            self.observer({
                "step": step,
                "n_particles": self.n,
                "live": sum(not candidates[i].done for i in kept),
                "ess": ess,
                "particle_steps": self.particle_steps,
                "candidates": candidates,
                "parents": parents,
                "log_weights": log_w,
                "kept": kept,
                "kept_log_weights": kept_log_w,
            })


def _observers(observer, history):
    """Combine a user's observer with a history recorder (when asked for)."""
    recorder = HistoryRecorder() if history else None
    if recorder is None:
        return observer, None
    if observer is None:
        return recorder, recorder

    def both(info):
        recorder(info)
        observer(info)

    return both, recorder


def _stats(scheduler: Scheduler) -> dict:
    out = {"scheduler": scheduler.stats.as_dict()}
    for lm in scheduler.models.values():
        out[getattr(lm, "name", None) or type(lm).__name__] = lm.stats()
    return out


def _result(method, particles, ess, resampled, step, t0, scheduler, settings, recorder=None):
    return InferenceResult(
        history=recorder.steps if recorder is not None else None,
        method=method,
        particles=list(particles),
        log_weights=[p.log_weight for p in particles],
        ess=ess,
        resampled_at=resampled,
        n_steps=step,
        wall_time=time.perf_counter() - t0,
        stats=_stats(scheduler),
        settings=settings,
    )


async def smc_steer(
    model, n_particles: int, expand: int, *, seed=None, observer=None, history: bool = False
) -> InferenceResult:
    """SMC steering (the seed's Algorithm 4), with ``N = n_particles`` and
    expansion factor ``K = expand``.

    Each iteration: every unfinished particle ``i`` is cloned ``K`` times and
    each clone takes one step, ``w_{i,k} = w_i G_t N' / (K N)``; a finished
    particle is carried once with ``w_i N' / N`` (``N' = sum_i K_i``). Then
    :func:`~ppl.runtime.resampling.without_replacement` keeps exactly ``N`` of
    the ``N'`` candidates (no duplicates), and the loop repeats until every
    particle is finished. With ``K = 1`` nothing is ever discarded and the
    algorithm is importance sampling.

    ``observer(info)`` is called after every step (see :class:`_Observer`);
    ``history=True`` records every step's particles in ``result.history``
    (for ``result.to_html``).
    """
    N = _positive_int(n_particles, "n_particles")
    K = _positive_int(expand, "expand")
    _check_model(model)
    observer, recorder = _observers(observer, history)
    report = _Observer(observer, N)
    rng = np.random.default_rng(seed)
    scheduler = Scheduler()
    t0 = time.perf_counter()
    particles = [model.clone() for _ in range(N)]
    ess_history: list[float] = []
    resampled: list[int] = []
    step = 0
    while not all(p.done for p in particles):
        step += 1
        n_prime = sum(1 if p.done else K for p in particles)
        candidates, to_step, parents = [], [], []
        for i, p in enumerate(particles):
            if p.done:
                p.log_weight += math.log(n_prime / N)
                candidates.append(p)
                parents.append(i)
                continue
            children = [p] + [p.clone() for _ in range(K - 1)]
            for c in children:
                c.log_weight += math.log(n_prime / (K * N))
            candidates.extend(children)
            to_step.extend(children)
            parents.extend([i] * K)
        await _advance_all(scheduler, to_step, rng, step)
        log_w = np.array([c.log_weight for c in candidates])
        ess_history.append(effective_sample_size(log_w))
        if n_prime > N:
            idx, new_log_w = without_replacement(log_w, N, rng)
            particles = [candidates[i] for i in idx]
            for p, lw in zip(particles, new_log_w):
                p.log_weight = float(lw)
            resampled.append(step)
            kept = idx.tolist()
        else:
            particles, kept, new_log_w = candidates, list(range(len(candidates))), log_w
        report(step, len(to_step), candidates, parents, log_w, kept, new_log_w, ess_history[-1])
    return _result(
        "smc_steer", particles, ess_history, resampled, step, t0, scheduler,
        {"n_particles": N, "expand": K, "seed": seed}, recorder,
    )


async def smc_standard(
    model,
    n_particles: int,
    ess_threshold: float = 0.5,
    resampling: str = "systematic",
    *,
    seed=None,
    observer=None,
    history: bool = False,
) -> InferenceResult:
    """Sequential Monte Carlo with adaptive resampling.

    Each iteration every unfinished particle takes one step (``w_i *= G_t``).
    If the effective sample size ``ESS = (sum w)^2 / sum w^2`` falls below
    ``ess_threshold * N`` (and some particle is unfinished), ``N`` ancestors are
    drawn by the ``resampling`` scheme from ``W = w / sum w`` and every new
    particle gets the weight ``(1/N) sum_j w_j``, which keeps ``Z_hat``
    unbiased. ``ess_threshold = 0`` never resamples; ``1`` always does.
    """
    N = _positive_int(n_particles, "n_particles")
    resampler = get_resampler(resampling)
    if not isinstance(ess_threshold, (int, float)) or not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must be a number in [0, 1], got {ess_threshold!r}")
    _check_model(model)
    observer, recorder = _observers(observer, history)
    report = _Observer(observer, N)
    rng = np.random.default_rng(seed)
    scheduler = Scheduler()
    t0 = time.perf_counter()
    particles = [model.clone() for _ in range(N)]
    ess_history: list[float] = []
    resampled: list[int] = []
    step = 0
    while not all(p.done for p in particles):
        step += 1
        live = [p for p in particles if not p.done]
        await _advance_all(scheduler, live, rng, step)
        log_w = np.array([p.log_weight for p in particles])
        current_ess = effective_sample_size(log_w)
        ess_history.append(current_ess)
        candidates, kept = particles, list(range(N))
        if current_ess > 0.0 and not all(p.done for p in particles) and current_ess < ess_threshold * N:
            log_mean = logsumexp(log_w) - math.log(N)
            kept = [int(a) for a in resampler(normalise(log_w), N, rng)]
            seen: set[int] = set()
            new = []
            for a in kept:
                new.append(particles[a] if a not in seen else particles[a].clone())
                seen.add(a)
            particles = new
            for p in particles:
                p.log_weight = log_mean
            resampled.append(step)
        report(step, len(live), candidates, list(range(N)), log_w, kept,
               np.array([p.log_weight for p in particles]), current_ess)
    return _result(
        "smc_standard", particles, ess_history, resampled, step, t0, scheduler,
        {"n_particles": N, "ess_threshold": ess_threshold, "resampling": resampling, "seed": seed},
        recorder,
    )


async def importance_sampling(
    model, n_particles: int, *, seed=None, observer=None, history: bool = False
) -> InferenceResult:
    """``N`` independent runs of the program, never resampled:
    ``Z_hat = (1/N) sum_i prod_t G_t(particle i)``."""
    N = _positive_int(n_particles, "n_particles")
    _check_model(model)
    observer, recorder = _observers(observer, history)
    report = _Observer(observer, N)
    rng = np.random.default_rng(seed)
    scheduler = Scheduler()
    t0 = time.perf_counter()
    particles = [model.clone() for _ in range(N)]
    ess_history: list[float] = []
    step = 0
    while not all(p.done for p in particles):
        step += 1
        live = [p for p in particles if not p.done]
        await _advance_all(scheduler, live, rng, step)
        log_w = np.array([p.log_weight for p in particles])
        ess_history.append(effective_sample_size(log_w))
        report(step, len(live), particles, list(range(N)), log_w, list(range(N)), log_w, ess_history[-1])
    return _result(
        "importance_sampling", particles, ess_history, [], step, t0, scheduler,
        {"n_particles": N, "seed": seed}, recorder,
    )


METHODS = {"steer": smc_steer, "smc": smc_standard, "is": importance_sampling}


def infer(model, method: str = "steer", **kwargs) -> InferenceResult:
    """Run inference synchronously: ``method`` is ``"steer"`` (:func:`smc_steer`),
    ``"smc"`` (:func:`smc_standard`) or ``"is"`` (:func:`importance_sampling`);
    ``kwargs`` go to it (``n_particles``, ``expand``, ``seed`` ...).

    Inside a running event loop (a notebook, an async application) ``await``
    the algorithm itself instead.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods are: {', '.join(METHODS)}")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        name = METHODS[method].__name__
        raise NestedEventLoopError(
            "ppl.infer() cannot run inside a running event loop (for example in "
            f"Jupyter or an async function); use `await ppl.{name}(model, ...)` instead"
        )
    return asyncio.run(METHODS[method](model, **kwargs))
