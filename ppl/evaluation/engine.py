"""Where an evaluation's runs go: the engines of :func:`ppl.map`.

Every configuration of an evaluation is one map over the inputs with the
same ``engine``, ``num_workers``, ``address`` and ``threads_per_worker``
(the names and checks are ``ppl.map``'s own: :class:`Engine` only passes
them on).

- ``engine="local"``: each configuration is one ``ppl.map``; ``lm`` is the
  loaded model. The runs share it, with its caches, and a metric that takes
  ``lm`` receives it.
- ``engine="ray"``: ``lm`` is a zero-argument function returning the model
  (as for ``ppl.map``). One pool of Ray workers
  (:class:`~ppl.runtime.many.ray_engine.RayPool`) serves every
  configuration: each worker builds its model from ``lm`` once, and each
  configuration's runs go to those workers with its settings. Ray is
  started (or the cluster at ``address`` joined) and the workers started
  when the first configuration with runs left starts; the workers are
  stopped at the evaluation's end (or when it raises), and Ray too if the
  evaluation started it. A metric that takes ``lm`` receives one model built
  in this process with ``lm()``, once, at the same moment: nothing is built
  when every run is already done.

The compute counter ``tokens_computed`` of a run is its own only when
nothing else used the model while it went on (``max_concurrent=1``). In
this process it is the growth of the model's counters from one outcome to
the next; from a Ray worker it is the model's counters in the run's own
``result.stats`` (the growth while the run went on, on that worker's model,
which ran nothing else meanwhile). With more runs at once it is left out.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ArgumentError, ModelLoadError
from ..mapping import map as map_inputs
from ..mapping import ray_pool
from ..runtime.lm import LanguageModel
from .metrics import wants_lm

__all__ = ["Engine", "own_tokens"]

#: a model's cumulative counter of tokens computed (a CachedTransformer's name, then the ToyLM's)
_TOKENS = ("tokens_computed", "rows")


def _counter(stats: dict) -> float | None:
    return next((float(stats[k]) for k in _TOKENS if k in stats), None)


def _model_tokens(lm) -> float | None:
    """The loaded model's cumulative count of tokens computed (``None``: no such counter)."""
    return _counter(lm.stats()) if lm is not None and callable(getattr(lm, "stats", None)) else None


def own_tokens(outcome, before: float | None, after: float | None, remote: bool) -> float | None:
    """One run's tokens computed, when nothing else ran meanwhile: the growth
    ``after - before`` of the local model's counter, or (``remote``) the
    models' counters in the run's ``result.stats``; ``None`` if unknown."""
    if outcome.result is None:
        return None
    if not remote:
        return None if before is None or after is None else after - before
    counts = [_counter(c) for source, c in outcome.result.stats.items() if source != "scheduler"]
    counts = [c for c in counts if c is not None and math.isfinite(c)]
    return math.fsum(counts) if counts else None


class Engine:
    """An evaluation's engine: the maps of its configurations, the model its
    metric receives, and (Ray) one pool of workers for all of them."""

    def __init__(self, name: str, lm, workers: dict):
        self.name, self.lm, self.workers = name, lm, workers
        self.remote = name == "ray"
        self._started = False  # the workers and the metric's model are set up
        self._pool: Any = None  # Ray's workers (a RayPool, made by check)
        self._metric_lm: Any = None

    def check(self, program, inputs: list, metric, max_concurrent: int) -> None:
        """Every check of ``ppl.map`` (the engine, its workers' settings, the
        inputs, ``lm``), once, before anything runs: a map with every input
        skipped, made and never iterated (nothing starts). With Ray, a metric
        that takes ``lm`` needs ``lm`` to be a factory too; the pool of
        workers is made (not started)."""
        map_inputs(program, inputs, lm=self.lm, engine=self.name, max_concurrent=max_concurrent,
                   skip=frozenset(range(len(inputs))), **self.workers)
        lm = self.lm
        if self.remote and wants_lm(metric) and (lm is None or isinstance(lm, LanguageModel) or not callable(lm)):
            got = "nothing" if lm is None else f"{type(lm).__name__} {lm!r}"
            raise ArgumentError(
                f"the metric {_name(metric)} takes lm: with engine='ray' it gets a model built in this process "
                f"with lm(), so lm= must be a zero-argument function returning the language model, got {got}"
            )
        if self.remote:
            self._pool = ray_pool(program, inputs, lm, max_concurrent=max_concurrent, **self.workers)

    def local_tokens(self) -> float | None:
        """The cumulative tokens computed of the model in this process (``None`` with Ray)."""
        return None if self.remote else _model_tokens(self.lm)

    def outcomes(self, program, inputs: list, **settings):
        """One configuration's runs (``settings``: ``ppl.map``'s ``method``,
        ``n_particles``, ``seed``, ``max_concurrent``, ``ids``, ``skip`` and
        the method's options): a ``ppl.map`` here, or a map on the pool's
        workers (after :meth:`start`). Its ``close()`` stops it."""
        if not self.remote:
            return map_inputs(program, inputs, lm=self.lm, engine=self.name, **self.workers, **settings)
        from ..runtime.many.ray_engine import RayMap

        return RayMap(None, inputs, pool=self._pool, **settings)

    def start(self, metric) -> None:
        """Before the first configuration with runs left: build the metric's
        model (once), then start or join Ray (unless it is initialised) and
        start the workers."""
        if self._started:
            return
        if not self.remote:
            self._metric_lm, self._started = self.lm, True
            return
        if wants_lm(metric):
            self._metric_lm = _build(self.lm, metric)
        self._pool.start()
        self._started = True

    def metric_lm(self):
        """The model a metric that takes ``lm`` receives (after :meth:`start`)."""
        return self._metric_lm

    def close(self) -> None:
        """Stop the workers, and the Ray this evaluation started (if it did)."""
        if self._pool is not None:
            self._pool.close()


def _name(metric) -> str:
    return getattr(metric, "__name__", repr(metric))


def _build(factory, metric):
    try:
        return factory()
    except Exception as exc:
        raise ModelLoadError(f"the metric {_name(metric)} takes lm, built in this process with lm(), "
                             f"which raised {type(exc).__name__}: {exc}") from exc
