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
     "particles": [{"text", "added", "parent", "log_weight", "done", "dead", "death"}, ...],
     "kept": [candidate index, ...], "kept_log_weights": [...]}

``text`` is the particle's :func:`particle_text` (the end of it, beyond
``max_text`` characters), ``added`` what this step appended to its parent's
text (``""`` when the text did not just grow), ``death`` why it died
(``{"step", "kind", "detail"}``) or None. ``parent`` indexes the previous
step's ``kept`` list (the population the step started from); ``kept`` may
repeat an index where resampling duplicated it.

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


def particle_text(particle) -> str:
    """What a report shows of a particle: its ``display_text()`` when it has
    one (a running particle's current text, for every program form), else
    its string form."""
    display = getattr(particle, "display_text", None)
    return display() if callable(display) else str(particle)


def _added(text: str, parent_text: str | None) -> str:
    """What ``text`` appended to ``parent_text`` (``""`` if it is not an extension)."""
    if parent_text is None or len(text) <= len(parent_text) or not text.startswith(parent_text):
        return ""
    return text[len(parent_text):]


def _death_record(particle):
    death = getattr(particle, "death", None) if getattr(particle, "dead", False) else None
    if death is None:
        return None
    return {"step": getattr(death, "step", None), "kind": getattr(death, "kind", "unknown"),
            "detail": getattr(death, "detail", "")}


class HistoryRecorder:
    """Collects one record per step; ``steps`` is the list of records."""

    def __init__(self, max_text: int = 400):
        self.steps: list[dict] = []
        self.max_text = max_text
        self._population: list[str] | None = None  # full texts of the last kept population

    def _short(self, text: str) -> str:
        return text if len(text) <= self.max_text else "..." + text[-self.max_text:]

    def __call__(self, info: dict) -> None:
        log_w = np.asarray(info["log_weights"], dtype=np.float64)
        texts = [particle_text(p) for p in info["candidates"]]
        before = self._population
        records = []
        for p, parent, lw, text in zip(info["candidates"], info["parents"], log_w, texts):
            parent_text = before[parent] if before is not None and 0 <= parent < len(before) else None
            records.append({
                "text": self._short(text),
                "added": self._short(_added(text, parent_text)),
                "parent": int(parent),
                "log_weight": _num(lw),
                "done": bool(p.done),
                "dead": bool(getattr(p, "dead", False)),
                "death": _death_record(p),
            })
        self._population = [texts[k] for k in info["kept"]]
        self.steps.append({
            "step": info["step"],
            "ess": float(info["ess"]),
            "log_Z": _num(logsumexp(log_w) - math.log(len(log_w))),
            "particles": records,
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
    """One status line on ``stream`` (stderr), rewritten after every step::

        step 12/4096 | 8 particles: 5 running, 3 finished, 0 dead | ESS 7.1 of 24 candidates | 41 particle-steps/s

    ``running`` counts the particles of the next population that are not
    finished (they take another step), ``dead`` those whose weight is zero;
    ``ESS`` is over this step's candidates, before selection. ``step_limit``
    (when known, e.g. a ``.steer`` program's ``max_steps``) is shown after
    the step."""

    def __init__(self, stream=None, step_limit: int | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.step_limit = step_limit
        self.t0, self.shown, self.width = time.perf_counter(), False, 0

    def __call__(self, info: dict) -> None:
        elapsed = time.perf_counter() - self.t0
        rate = info.get("particle_steps", 0) / elapsed if elapsed > 0 else 0.0
        step = f"{info['step']}" + (f"/{self.step_limit}" if self.step_limit else "")
        candidates = info.get("candidates", ())
        kept = [candidates[i] for i in info.get("kept", ())]
        dead = sum(bool(getattr(p, "dead", False)) for p in kept)
        running = info["live"]
        finished = len(kept) - running - dead
        line = (f"step {step} | {info['n_particles']} particles: {running} running, {finished} finished, "
                f"{dead} dead | ESS {info['ess']:.1f} of {len(candidates)} candidates | "
                f"{rate:.1f} particle-steps/s")
        self.stream.write("\r" + line.ljust(self.width))
        self.width = max(self.width, len(line))
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
