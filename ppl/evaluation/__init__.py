"""Evaluating steering programs: sweeps of methods and particle counts over a
data set, with metrics, bootstrap intervals, compute, a plot and a report.

``ppl.evaluate(program, inputs, metric=..., methods=("lcd", "is", "smc",
"steer"), particles=(1, 4, 16), output=DIR)`` (:mod:`.sweep`) and ``ppl eval``
(:mod:`ppl.cli_eval`); the metrics in :mod:`.metrics`, the interval in
:mod:`.bootstrap`, the table in :mod:`.summary`, the files in :mod:`.write`,
:mod:`.plot` and :mod:`.report`; where the runs go (this process or Ray
workers, ``engine=``) in :mod:`.engine`.
"""

from .bootstrap import Interval, bootstrap_mean
from .metrics import any_satisfies, expectation, resolve_metric, top, valid
from .sweep import (
    DEFAULT_METHODS,
    DEFAULT_PARTICLES,
    Config,
    Evaluation,
    configurations,
    evaluate,
)

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_PARTICLES",
    "Config",
    "Evaluation",
    "Interval",
    "any_satisfies",
    "bootstrap_mean",
    "configurations",
    "evaluate",
    "expectation",
    "resolve_metric",
    "top",
    "valid",
]
