"""Why particles died: a tally kept while a run goes on, and its summary.

A particle whose weight reaches zero is dead. The language records why on
the particle as ``particle.death``, an object with ``step`` (the step it died
at), ``kind`` (the primitive: ``"condition"``, ``"constraint"`` (a
distribution with no allowed token), ``"sample"``, ``"observe"``,
``"factor"``, ``"twist"`` or ``"unknown"``) and ``detail`` (the call). This
module only reads those attributes (duck typing: the engine does not import
the language).

:class:`DeathTally` is an observer (see :mod:`ppl.runtime.observers`): after
every step it counts each candidate's death once, and keeps the texts of the
last population that still had a live candidate. :func:`summarise` turns a
result (and the tally, if one ran) into a :class:`DeathSummary`: how many
died of what, the step at which the last live particle died, and the last
live texts; ``lines()`` is what the command line prints when every particle
died.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .observers import particle_text

__all__ = ["DeathSummary", "DeathTally", "summarise"]


def _death(particle):
    return getattr(particle, "death", None) if getattr(particle, "dead", False) else None


class DeathTally:
    """Counts deaths by kind over a run (each dead candidate once) and keeps
    the texts of the last step that had a live candidate (at most
    ``keep_texts`` of them, the heaviest first)."""

    def __init__(self, keep_texts: int = 5):
        self.keep_texts = keep_texts
        self.by_kind: Counter = Counter()
        self.example: dict[str, str] = {}
        self.last_death_step: int | None = None
        self.last_alive_step: int | None = None
        self.last_alive_texts: list[str] = []
        self._seen: dict[int, object] = {}  # id -> death (kept alive so ids stay unique)

    def __call__(self, info: dict) -> None:
        live = []
        for particle, log_w in zip(info["candidates"], info["log_weights"]):
            death = _death(particle)
            if death is None:
                if not getattr(particle, "dead", False):
                    live.append((float(log_w), particle))
                continue
            if id(death) not in self._seen:
                self._seen[id(death)] = death
                kind = getattr(death, "kind", "unknown")
                self.by_kind[kind] += 1
                self.example.setdefault(kind, getattr(death, "detail", ""))
                self.last_death_step = info["step"]
        if live:
            live.sort(key=lambda pair: -pair[0])
            self.last_alive_step = info["step"]
            self.last_alive_texts = [particle_text(p) for _, p in live[: self.keep_texts]]


@dataclass
class DeathSummary:
    """What killed a run's particles: ``by_kind`` counts deaths per kind
    (over the whole run with a tally, else over the final particles),
    ``example`` one call per kind, ``last_death_step`` the step at which the
    last live particle died (None when some survived), ``last_alive_step``
    and ``last_alive_texts`` the last population that had a live particle."""

    by_kind: Counter = field(default_factory=Counter)
    example: dict = field(default_factory=dict)
    all_died: bool = False
    last_death_step: int | None = None
    last_alive_step: int | None = None
    last_alive_texts: list = field(default_factory=list)

    @property
    def n_dead(self) -> int:
        return sum(self.by_kind.values())

    @property
    def main_cause(self) -> str | None:
        """The kind that killed the most particles."""
        return self.by_kind.most_common(1)[0][0] if self.by_kind else None

    def to_dict(self) -> dict:
        return {"all_died": self.all_died, "n_dead": self.n_dead, "by_kind": dict(self.by_kind),
                "main_cause": self.main_cause, "example": dict(self.example),
                "last_death_step": self.last_death_step, "last_alive_step": self.last_alive_step,
                "last_alive_texts": list(self.last_alive_texts)}

    def lines(self) -> list[str]:
        """A few lines for a person: when, of what, and the last live texts."""
        out = []
        if self.all_died and self.last_death_step is not None:
            out.append(f"the last live particle died at step {self.last_death_step}")
        if self.by_kind:
            main = self.main_cause
            out.append(f"most were killed by {main}: {self.example.get(main) or main} "
                       f"({self.by_kind[main]} of {self.n_dead} deaths)")
            if len(self.by_kind) > 1:
                causes = ", ".join(f"{kind} {n}" for kind, n in self.by_kind.most_common())
                out.append(f"deaths by primitive: {causes}")
        if self.last_alive_texts:
            out.append(f"last live texts (step {self.last_alive_step}):")
            counts = Counter(self.last_alive_texts)
            out.extend(f"  {text!r}" + (f"  (x{n})" if n > 1 else "") for text, n in counts.items())
        return out


def summarise(result, tally: DeathTally | None = None) -> DeathSummary:
    """The :class:`DeathSummary` of ``result``, from ``tally`` when it watched
    the run, else from the final particles' deaths; the result's own
    ``last_alive_step`` / ``last_alive_texts`` are used when it has them."""
    particles = list(result.particles)
    all_died = bool(particles) and all(getattr(p, "dead", False) for p in particles)
    summary = DeathSummary(all_died=all_died)
    if tally is not None:
        summary.by_kind, summary.example = Counter(tally.by_kind), dict(tally.example)
        summary.last_alive_step, summary.last_alive_texts = tally.last_alive_step, list(tally.last_alive_texts)
        summary.last_death_step = tally.last_death_step if all_died else None
    else:
        deaths = [d for d in map(_death, particles) if d is not None]
        for d in deaths:
            summary.by_kind[d.kind] += 1
            summary.example.setdefault(d.kind, getattr(d, "detail", ""))
        if all_died and deaths:
            summary.last_death_step = max(d.step for d in deaths)
    step = getattr(result, "last_alive_step", None)
    texts = getattr(result, "last_alive_texts", None)
    if step is not None and texts:
        summary.last_alive_step, summary.last_alive_texts = step, list(texts)
    return summary
