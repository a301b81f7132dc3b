"""What one input's run gave.

A run either returns an :class:`~ppl.runtime.result.InferenceResult`
(whose ``status`` is ``"ok"`` or ``"all particles died"``) or raises; a run
that raises becomes an outcome with ``status = "error"`` and the error's
message (which names the program and the step), and the other runs go on.

:meth:`RunOutcome.record` is the plain-JSON line a data-set run writes:
``id``, ``args``, ``status``, ``log_Z`` (``null`` for ``-inf`` or an error),
the ``top`` results with their normalised weights, ``n_steps``,
``wall_time``, the runtime's counters, and ``error``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["ERROR", "RunOutcome"]

#: the status of a run that raised
ERROR = "error"


def _number(x: float | None):
    return None if x is None or not math.isfinite(x) else float(x)


def _plain(value: Any):
    """``value`` as JSON can hold it (strings for what it cannot)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


@dataclass
class RunOutcome:
    """Input ``index`` (its ``id``, its arguments ``input``) and what its run
    gave: ``result`` (``None`` if it raised), ``error`` (the message, if it
    raised), ``wall_time`` in seconds."""

    index: int
    id: Any
    input: dict
    result: Any = None
    error: str | None = None
    wall_time: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``"ok"``, ``"all particles died"`` or ``"error"``."""
        return ERROR if self.result is None else self.result.status

    @property
    def log_Z(self) -> float | None:
        return None if self.result is None else self.result.log_Z

    def detached(self) -> "RunOutcome":
        """This outcome with its result detached from the program states (see
        :meth:`~ppl.runtime.result.InferenceResult.detached`): what a worker
        process sends back."""
        if self.result is None:
            return self
        return replace(self, result=self.result.detached())

    def record(self, top: int = 5) -> dict:
        """The JSON line of this run (see the module docstring)."""
        r = self.result
        out = {"id": _plain(self.id), "args": _plain(self.input), "status": self.status}
        if r is None:
            out.update(log_Z=None, top=[], n_steps=None, stats={}, error=self.error)
        else:
            posterior = list(r.posterior().items())[:top]
            out.update(
                log_Z=_number(r.log_Z),
                top=[{"value": _plain(k), "weight": float(w)} for k, w in posterior],
                n_steps=r.n_steps,
                stats={source: {k: _plain(v) for k, v in counters.items() if not isinstance(v, (list, dict))}
                       for source, counters in r.stats.items()},
                error=None,
            )
        out["wall_time"] = round(self.wall_time, 6)
        out.update(self.extra)
        return out

    def __repr__(self) -> str:
        log_z = "error" if self.result is None else f"log_Z={self.result.log_Z:.4f}"
        return f"<RunOutcome #{self.index} id={self.id!r} {self.status} {log_z}>"
