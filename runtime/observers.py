"""Observers: what an inference run reports after every step, and the
collectors that turn it into a history or a progress line. The algorithms
never print or write files; they call one ``observer(info)`` per step.

``info`` (built by :class:`StepReporter`) holds ``step``, ``n_particles``,
``live``, ``ess``, ``particle_steps`` (cumulative), ``candidates`` (the
particles after this step's moves, before resampling), ``parents`` (for each
candidate, its index in the previous population), ``log_weights`` (the
candidates' log weights before resampling), ``kept`` (candidate indices
forming the next population, repeated where resampling duplicated) and
``kept_log_weights``.

:class:`HistoryRecorder` snapshots each step for visualisation: every
candidate particle's text, log weight and state, which earlier particle it
came from, and which candidates resampling kept. Only plain data is stored,
so the record survives the particles' later changes and serialises to JSON.
Each step record::

    {"step": t, "ess": ..., "log_Z": log((1/M) sum_j w_j) over the M candidates,
     "particles": [{"text", "parent", "log_weight", "done", "dead"}, ...],
     "kept": [candidate index, ...], "kept_log_weights": [...]}

``parent`` indexes the previous step's ``kept`` list (the population the step
started from); ``kept`` may repeat an index where resampling duplicated it.

:class:`Progress` is one status line on a terminal, rewritten every step.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, Sequence

import numpy as np

from .resampling import logsumexp

Observer = Callable[[dict], None]


def _num(x: float):
    return float(x) if math.isfinite(x) else None


class HistoryRecorder:
    """Collects one record per step; ``steps`` is the list of records."""

    def __init__(self, max_text: int = 400):
        self.steps: list[dict] = []
        self.max_text = max_text

    def _text(self, particle) -> str:
        text = str(particle)
        return text if len(text) <= self.max_text else "..." + text[-self.max_text:]

    def __call__(self, info: dict) -> None:
        log_w = np.asarray(info["log_weights"], dtype=np.float64)
        self.steps.append({
            "step": info["step"],
            "ess": float(info["ess"]),
            "log_Z": _num(logsumexp(log_w) - math.log(len(log_w))),
            "particles": [
                {
                    "text": self._text(p),
                    "parent": int(parent),
                    "log_weight": _num(lw),
                    "done": bool(p.done),
                    "dead": bool(getattr(p, "dead", False)),
                }
                for p, parent, lw in zip(info["candidates"], info["parents"], log_w)
            ],
            "kept": [int(k) for k in info["kept"]],
            "kept_log_weights": [_num(x) for x in np.asarray(info["kept_log_weights"], dtype=np.float64)],
        })


class StepReporter:
    """Builds each step's ``info`` and hands it to ``observer`` (if any);
    counts the particle-steps taken."""

    def __init__(self, observer: Observer | None, n_particles: int):
        self.observer, self.n, self.particle_steps = observer, n_particles, 0

    def __call__(self, step: int, stepped: int, candidates: Sequence, parents: Sequence[int],
                 log_w, kept: Sequence[int], kept_log_w, ess: float) -> None:
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


def with_history(observer: Observer | None, history: bool) -> tuple[Observer | None, HistoryRecorder | None]:
    """The observer to run (the user's, a history recorder when ``history``
    is asked for, or both) and the recorder."""
    recorder = HistoryRecorder() if history else None
    if recorder is None:
        return observer, None
    if observer is None:
        return recorder, recorder

    def both(info: dict) -> None:
        recorder(info)
        observer(info)

    return both, recorder


class Progress:
    """One status line on ``stream`` (stderr), rewritten after every step."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.t0, self.shown = time.perf_counter(), False

    def __call__(self, info: dict) -> None:
        elapsed = time.perf_counter() - self.t0
        rate = info.get("particle_steps", 0) / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"\rstep {info['step']:4d} | live {info['live']:4d}/{info['n_particles']} | "
            f"ESS {info['ess']:7.2f} | {rate:8.1f} particle-steps/s"
        )
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
