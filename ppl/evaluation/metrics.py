"""Metrics: what one run of an evaluation scores.

A metric is ``metric(input, result) -> float`` or a dict of named floats;
``input`` is the run's argument dict, ``result`` its
:class:`~ppl.runtime.result.InferenceResult` (a run whose every particle
died is still scored: its posterior is empty; a run that raised is not
scored at all, and counted as an error). A metric that declares a
parameter named ``lm`` also receives the evaluation's language model
(``metric(input, result, lm=lm)``), for metrics that score outputs with it;
with ``engine="ray"`` that is one model built in the driver with ``lm()``
(see :mod:`.engine`).

The built-ins score the *outputs* of a run, the keys of
``result.posterior()`` (a program's return value, a class model's text),
with their normalised weights ``W_i``:

- :func:`top`: ``f(x*)`` for the most probable output ``x*`` (``nan`` if none);
- :func:`expectation`: the posterior expectation ``sum_i W_i f(x_i)``
  (``nan`` if every particle died);
- :func:`any_satisfies`: ``1`` if some output with ``W_i > 0`` satisfies
  ``pred``, else ``0`` (best-of-N);
- :func:`valid`: ``1`` if the run ended with a live particle (and its top
  output satisfies ``pred``, when given), else ``0``.

:func:`resolve_metric` turns the command line's ``--metric`` into one:
a built-in name without arguments (``valid``), or ``MODULE:FUNCTION``
where ``MODULE`` is an importable module or a ``.py`` file.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ArgumentError, UsageError

__all__ = ["BUILTIN_METRICS", "any_satisfies", "expectation", "resolve_metric", "score", "top", "valid",
           "wants_lm"]


def _outputs(result) -> list[tuple[Any, float]]:
    return list(result.posterior().items())


def top(f: Callable[[Any], float]) -> Callable:
    """The metric ``f(x*)``, ``x*`` the run's most probable output."""

    def top_metric(input: dict, result) -> float:
        outputs = _outputs(result)
        return float(f(outputs[0][0])) if outputs else math.nan

    top_metric.__name__ = f"top({getattr(f, '__name__', 'f')})"
    return top_metric


def expectation(f: Callable[[Any], float]) -> Callable:
    """The metric ``sum_i W_i f(x_i)``: ``f``'s posterior expectation under the run's weights."""

    def expectation_metric(input: dict, result) -> float:
        outputs = _outputs(result)
        if not outputs:
            return math.nan
        return float(math.fsum(w * float(f(x)) for x, w in outputs))

    expectation_metric.__name__ = f"expectation({getattr(f, '__name__', 'f')})"
    return expectation_metric


def any_satisfies(pred: Callable[[Any], bool]) -> Callable:
    """The metric ``1`` if some output of positive weight satisfies ``pred``, else ``0``."""

    def any_metric(input: dict, result) -> float:
        return float(any(pred(x) for x, w in _outputs(result) if w > 0))

    any_metric.__name__ = f"any_satisfies({getattr(pred, '__name__', 'pred')})"
    return any_metric


def valid(pred: Callable[[Any], bool] | None = None) -> Callable:
    """The metric ``1`` if the run has a live particle (whose top output
    satisfies ``pred``, when given), else ``0``."""

    def valid_metric(input: dict, result) -> float:
        outputs = _outputs(result)
        if not outputs:
            return 0.0
        return float(pred is None or bool(pred(outputs[0][0])))

    valid_metric.__name__ = "valid"
    return valid_metric


#: built-ins the command line names without arguments
BUILTIN_METRICS: dict[str, Callable[[], Callable]] = {"valid": valid}


def wants_lm(metric: Callable) -> bool:
    """Whether ``metric`` takes the language model (a parameter named ``lm``)."""
    try:
        return "lm" in inspect.signature(metric).parameters
    except (TypeError, ValueError):
        return False


def score(metric: Callable, input: dict, result, lm=None) -> dict[str, float]:
    """``metric``'s value for one run as a dict of named floats (a single
    float is named ``"metric"``; ``True``/``False`` count as 1/0);
    ``ArgumentError`` for anything else."""
    value = metric(input, result, lm=lm) if wants_lm(metric) else metric(input, result)
    name = getattr(metric, "__name__", "metric")
    if isinstance(value, dict):
        items = value.items()
    else:
        items = [("metric", value)]
    out = {}
    for key, v in items:
        if isinstance(v, str) or not hasattr(v, "__float__"):
            raise ArgumentError(f"metric {name} returned {type(v).__name__} {v!r} for {key!r}; "
                                "a metric returns a float or a dict of named floats")
        out[str(key)] = float(v)
    return out


def _load(module_name: str):
    if module_name.endswith(".py"):
        from ..program_files import load_module

        path = Path(module_name)
        if not path.is_file():
            raise UsageError(f"--metric {module_name}: no such file")
        return load_module(path)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--metric: cannot import {module_name!r} ({exc})") from None


def resolve_metric(spec: str | Callable) -> Callable:
    """A metric from a callable, a built-in name or ``MODULE:FUNCTION``."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise UsageError(f"a metric is a function or MODULE:FUNCTION, got {spec!r}")
    if spec in BUILTIN_METRICS:
        return BUILTIN_METRICS[spec]()
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        names = ", ".join(BUILTIN_METRICS)
        raise UsageError(f"--metric {spec}: expected MODULE:FUNCTION (a module or a .py file and a "
                         f"function in it) or a built-in metric ({names})")
    fn = getattr(_load(module_name), attr, None)
    if not callable(fn):
        raise UsageError(f"--metric {spec}: {module_name} has no function {attr!r}")
    return fn
