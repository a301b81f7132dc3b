"""The one result type every inference algorithm returns."""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ppl.errors import ArgumentError

from .resampling import Weights

ALL_DIED = "all particles died"
OK = "ok"
MAX_STEPS = "max_steps"


def _default_key(particle):
    result_key = getattr(particle, "result_key", None)
    return result_key() if callable(result_key) else str(particle)


def _portable(value):
    """``value`` if it can travel between processes (pickle), else its ``repr``."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        pickle.dumps(value)
    except Exception:
        return repr(value)
    return value


@dataclass(frozen=True)
class ParticleRecord:
    """A particle without its program state: what a result is summarised by.

    ``value`` is the particle's ``result_key()`` (what :meth:`InferenceResult.posterior`
    groups by), ``text`` its string form; ``log_weight``, ``done`` and
    ``dead`` as on the particle. Holding no language-model context (and so no
    model), it pickles small: a worker process sends these back."""

    value: Any
    text: str
    log_weight: float
    done: bool = True
    dead: bool = False

    @classmethod
    def of(cls, particle) -> "ParticleRecord":
        return cls(_portable(_default_key(particle)), str(particle), float(particle.log_weight),
                   bool(getattr(particle, "done", True)), bool(getattr(particle, "dead", False)))

    def result_key(self):
        return self.value

    def __str__(self) -> str:
        return self.text


@dataclass
class InferenceResult:
    """Weighted particles approximating the target ``P``, and how they were got.

    - ``particles``: the final particles (program states);
    - ``log_weights``: their log weights ``log w_i`` (float64, ``-inf`` = dead);
    - ``weights``: normalised weights ``W_i = w_i / sum_j w_j`` (zeros if all died);
    - ``log_Z``: ``log((1/N) sum_i w_i)``, the log of the unbiased estimate of
      ``Z``; ``-inf`` when every particle died;
    - ``ess``: effective sample size after each step, before any resampling;
    - ``resampled_at``: the steps after which the population was resampled;
    - ``status``: ``"ok"`` (every particle finished, some alive),
      ``"all particles died"``, or ``"max_steps"`` (the run stopped at its
      step limit with ``n_unfinished`` particles still running: their
      weights, and ``log_Z``, are those of the intermediate target reached);
      :meth:`describe_status` says it in words;
    - ``last_alive_step``, ``last_alive_texts``: when every particle died,
      the last step after which a particle was still alive (``0``: before
      the first step; the last live particle died at the next step) and the
      texts of that population's live particles; ``None`` and ``[]`` otherwise;
    - ``stats``: the scheduler's and the language models' counters;
    - ``history``: per-step records when run with ``history=True`` (see
      :mod:`ppl.runtime.observers`), else ``None``.
    """

    method: str
    particles: list
    log_weights: np.ndarray
    ess: list[float] = field(default_factory=list)
    resampled_at: list[int] = field(default_factory=list)
    n_steps: int = 0
    wall_time: float = 0.0
    stats: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    history: list | None = None
    last_alive_step: int | None = None
    last_alive_texts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        w = Weights(self.log_weights)
        self.log_weights = np.asarray(self.log_weights, dtype=np.float64)
        self.weights = np.array(w.W)
        self.log_Z = w.log_mean
        if self.log_Z == -math.inf:
            self.status = ALL_DIED
        else:
            self.status = MAX_STEPS if self.n_unfinished else OK

    @property
    def n_unfinished(self) -> int:
        """How many particles were still running when the run stopped (non-zero
        only when it stopped at ``max_steps``)."""
        return sum(1 for p in self.particles if not getattr(p, "done", True))

    def describe_status(self) -> str:
        """The status in words, e.g. ``"stopped at max_steps=50: 3 of 16
        particles unfinished"``."""
        if self.status == MAX_STEPS:
            limit = self.settings.get("max_steps", self.n_steps)
            return (f"stopped at max_steps={limit}: {self.n_unfinished} of {self.n_particles} "
                    "particles unfinished")
        if self.status == ALL_DIED:
            return f"all particles died (the last live one at step {self.last_alive_step + 1})" \
                if self.last_alive_step is not None else "all particles died"
        return f"finished after {self.n_steps} steps"

    @property
    def n_particles(self) -> int:
        return len(self.particles)

    def posterior(self, key: Callable[[Any], Any] | None = None) -> dict:
        """Normalised weight summed by ``key(particle)``, most probable first;
        empty if all died. The default key is the particle's ``result_key()``
        (a program's return value, a class model's string form), or its
        string form; unhashable keys are replaced by their ``repr``."""
        key = key or _default_key
        totals: dict = {}
        for p, w in zip(self.particles, self.weights):
            if w > 0:
                k = key(p)
                try:
                    hash(k)
                except TypeError:
                    k = repr(k)
                totals[k] = totals.get(k, 0.0) + float(w)
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def detached(self) -> "InferenceResult":
        """The same result with every particle replaced by its
        :class:`ParticleRecord` (value, text, log weight, done, dead): it holds
        no program state, context or model, so it pickles small. ``weights``,
        ``log_Z``, ``ess``, ``stats``, :meth:`posterior` (with the default key)
        and :meth:`to_dict` are those of the original."""
        records = [p if isinstance(p, ParticleRecord) else ParticleRecord.of(p) for p in self.particles]
        copy = replace(self, particles=records, log_weights=self.log_weights.copy())
        # as the method set them (``lcd`` estimates log Z otherwise than from the weights)
        copy.log_Z, copy.status = self.log_Z, self.status
        return copy

    def sample(self, k: int = 1, rng: np.random.Generator | None = None) -> list:
        """``k`` particles drawn with replacement by their normalised weights."""
        if self.status == ALL_DIED:
            raise ArgumentError("cannot sample from a result whose particles all died")
        rng = rng if rng is not None else np.random.default_rng()
        return [self.particles[i] for i in rng.choice(len(self.particles), size=k, p=self.weights)]

    def to_dict(self) -> dict:
        def num(x: float):
            return None if not math.isfinite(x) else float(x)

        return {
            "method": self.method,
            "settings": self.settings,
            "status": self.status,
            "n_unfinished": self.n_unfinished,
            "last_alive_step": self.last_alive_step,
            "last_alive_texts": list(self.last_alive_texts),
            "log_Z": num(self.log_Z),
            "n_steps": self.n_steps,
            "wall_time": self.wall_time,
            "ess": [float(e) for e in self.ess],
            "resampled_at": list(self.resampled_at),
            "particles": [
                {"value": str(p), "log_weight": num(lw), "weight": float(w)}
                for p, lw, w in zip(self.particles, self.log_weights, self.weights)
            ],
            "posterior": {str(k): v for k, v in self.posterior().items()},
            "stats": self.stats,
            "history": self.history,
        }

    def to_html(self, path=None) -> str:
        """A self-contained HTML page of the run (no network needed): the final
        posterior and, when the run recorded its history, every step's
        particles, weights and resampling, and ESS and log Z over the steps.
        Writes it to ``path`` when given; returns the HTML."""
        from .report.html import render_html

        page = render_html(self)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(page)
        return page

    def plot(self, path=None):
        """ESS and the weight distribution per step (needs matplotlib); see
        :func:`ppl.runtime.report.plots.plot`."""
        from .report.plots import plot

        return plot(self, path)

    def _repr_html_(self) -> str:
        from .report.html import render_summary

        return render_summary(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The result as strict JSON (``-inf`` log weights become ``null``)."""
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def __repr__(self) -> str:
        return (
            f"<InferenceResult {self.method} N={self.n_particles} steps={self.n_steps} "
            f"log_Z={self.log_Z:.4f} status={self.status!r}>"
        )
