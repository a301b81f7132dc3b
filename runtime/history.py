"""A step-by-step record of an inference run, for visualisation.

:class:`HistoryRecorder` is an observer (see ``runtime/smc.py``): after every
step it snapshots each candidate particle's text, log weight and state, which
earlier particle it came from, and which candidates resampling kept. Only
plain data is stored, so the record survives the particles' later changes
and serialises to JSON.

Each step record::

    {"step": t, "ess": ..., "log_Z": log((1/M) sum_j w_j) over the M candidates,
     "particles": [{"text", "parent", "log_weight", "done", "dead"}, ...],
     "kept": [candidate index, ...], "kept_log_weights": [...]}

``parent`` indexes the previous step's ``kept`` list (the population the step
started from); ``kept`` may repeat an index where resampling duplicated it.
"""

from __future__ import annotations

import math

import numpy as np

from .resampling import logsumexp


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
