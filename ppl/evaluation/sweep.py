"""``ppl.evaluate``: one program, a data set, a sweep of inference configurations.

An evaluation is many :func:`ppl.map` s sharing one loaded model: one per
configuration ``(method, N, replicate)``. Replicate ``r`` of every
configuration is ``ppl.map(..., seed=seed + r)``, so input ``i`` of
replicate ``r`` runs with ``run_seed(seed + r, i)`` whatever the method
(common random numbers across configurations), and ``ppl.infer(model_i,
method=m, n_particles=N, seed=run_seed(seed + r, i))`` reproduces it alone.

Every finished run is scored by the metric (:mod:`.metrics`) and appended
at once as one line of ``DIR/results.jsonl`` (its id is
``METHOD/N=N/seed=R/INPUT_ID``); a rerun of the same evaluation skips the
runs already there (resuming, as ``ppl run --inputs`` does). The summary,
the plot and the report are then computed from the file's records.

Runs go one at a time by default (``max_concurrent=1``): a run's counters
(forward passes, tokens computed) and wall time are then its own. With
``max_concurrent > 1`` runs share forward passes, and each run's counters
count the shared passes (an overestimate of its own compute).

``engine="ray"`` (with ``num_workers``, ``address``, ``threads_per_worker``:
``ppl.map``'s) runs every configuration's map on one pool of Ray workers,
each loading the model once for the whole evaluation, ``lm`` being then a
zero-argument function returning the model (see :mod:`.engine`);
``max_concurrent`` is then per worker. The records are those of the local
engine: a run's seed does not depend on where it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ..errors import ArgumentError, PPLError
from ..runtime.inference import lcd as _lcd  # noqa: F401 - registers the method "lcd"
from ..runtime.inference.registry import get_method
from ..runtime.many.local import check_settings
from ..runtime.many.output import ResultsFile, record_of
from .engine import Engine, own_tokens
from .metrics import resolve_metric, score, wants_lm
from .summary import metric_names_of, summarise
from .write import write_outputs

__all__ = ["DEFAULT_METHODS", "DEFAULT_PARTICLES", "Config", "Evaluation", "configurations", "evaluate"]

DEFAULT_METHODS = ("lcd", "is", "smc", "steer")
DEFAULT_PARTICLES = (1, 4, 16)


@dataclass(frozen=True)
class Config:
    """One configuration of the sweep: a method, a particle count, a replicate."""

    method: str
    n_particles: int
    replicate: int = 0

    def run_id(self, input_id) -> str:
        return f"{self.method}/N={self.n_particles}/seed={self.replicate}/{input_id}"


def configurations(methods: Sequence[str], particles: Sequence[int], seeds: int) -> list[Config]:
    """Every ``(method, N, replicate)``, in the order they run."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ArgumentError(f"seeds (replicates per configuration) must be an integer >= 1, got {seeds!r}")
    if not methods or not particles:
        raise ArgumentError("an evaluation needs at least one method and one particle count")
    for m in methods:
        get_method(m)  # an unknown method fails here, listing the registered ones
    for n in particles:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ArgumentError(f"particle counts are integers >= 1, got {n!r}")
    return [Config(m, n, r) for r in range(seeds) for m in methods for n in particles]


def method_options(method: str, options: dict) -> dict:
    """The options in ``options`` that ``method`` takes (``expand`` for ``steer`` ...)."""
    takes = get_method(method).options
    return {k: v for k, v in options.items() if k in takes}


@dataclass
class Evaluation:
    """What :func:`evaluate` gives: every run's ``records`` (those of an
    earlier, resumed evaluation included), the summary ``rows`` (see
    :mod:`.summary`) and the ``files`` written (by name)."""

    records: list[dict]
    rows: list[dict]
    metric_names: list[str]
    files: dict[str, Path] = field(default_factory=dict)
    ran: int = 0


def _record(outcome, config: Config, input_id, metric, lm, top: int) -> dict:
    rec = record_of(outcome, top)
    rec.update(input_id=input_id, method=config.method, n_particles=config.n_particles,
               replicate=config.replicate, metrics=None)
    if outcome.result is not None:
        try:
            rec["metrics"] = score(metric, outcome.input, outcome.result, lm=lm)
        except PPLError:
            raise
        except Exception as exc:
            name = getattr(metric, "__name__", repr(metric))
            raise ArgumentError(f"the metric {name} raised {type(exc).__name__} on run {rec['id']}: {exc}") from exc
    return rec


def _run_config(program, inputs, ids, config, out, *, engine: Engine, metric, seed, options, top,
                max_concurrent, on_record) -> int:
    """One map of one configuration (on the engine's workers, with Ray). With one run at a time, nothing
    runs between two outcomes, so the growth of the model's counters from one
    to the next is the run's own (``record["tokens_computed"]``); from a Ray
    worker, the model's growth in the run's own ``stats``."""
    run_ids = [config.run_id(i) for i in ids]
    skip = {r for r in run_ids if r in out.previous}
    if len(skip) == len(run_ids):
        return 0
    engine.start(metric)
    metric_lm = engine.metric_lm() if wants_lm(metric) else None
    by_run = dict(zip(run_ids, ids))
    ran = 0
    outcomes = engine.outcomes(program, inputs, method=config.method, n_particles=config.n_particles,
                               seed=seed + config.replicate, max_concurrent=max_concurrent, ids=run_ids,
                               skip=skip, **method_options(config.method, options))
    try:
        before = engine.local_tokens()
        for outcome in outcomes:
            tokens = own_tokens(outcome, before, engine.local_tokens(), engine.remote)
            rec = _record(outcome, config, by_run[outcome.id], metric, metric_lm, top)
            if max_concurrent == 1 and tokens is not None:
                rec["tokens_computed"] = tokens
            out.append(rec)
            ran += 1
            if on_record is not None:
                on_record(rec)
            before = engine.local_tokens()  # after the metric, which may use the model
    finally:
        outcomes.close()  # the workers (or the runs) of a map left early stop now
    return ran


def _check(program, inputs: list, ids, methods, particles, seeds, opts: dict, engine: Engine, metric,
           max_concurrent: int) -> list[Config]:
    """Every setting, before anything runs (or is written); the configurations."""
    if len(ids) != len(inputs):
        raise ArgumentError(f"{len(ids)} ids for {len(inputs)} inputs")
    if len(set(ids)) != len(ids):
        raise ArgumentError("the inputs' ids must be distinct")
    configs = configurations(methods, particles, seeds)
    for m in dict.fromkeys(methods):
        for n in dict.fromkeys(particles):
            check_settings(m, n, method_options(m, opts))
    engine.check(program, inputs, metric, max_concurrent)
    return configs


def evaluate(program, inputs: Sequence[dict], *, metric: Callable | str, lm=None,
             methods: Sequence[str] = DEFAULT_METHODS, particles: Sequence[int] = DEFAULT_PARTICLES,
             expand: int = 3, seeds: int = 1, seed: int = 0, output: str | Path | None = None,
             ids: Sequence | None = None, max_concurrent: int = 1, top: int = 5,
             options: dict | None = None, on_record: Callable[[dict], Any] | None = None,
             plot: bool = True, engine: str = "local", num_workers: int | None = None,
             address: str | None = None, threads_per_worker: int = 1) -> Evaluation:
    """Run ``program`` on every input under every configuration ``(method, N,
    replicate)`` and score each run with ``metric`` (a function, a built-in
    name or ``"MODULE:FUNCTION"``). ``output=DIR`` writes ``results.jsonl``
    (resumed if there), ``summary.csv``, ``summary.md``,
    ``metric_vs_compute.png`` (when matplotlib is installed and ``plot``)
    and ``report.html``. ``options`` go to the methods that take them
    (``ess_threshold``, ``resampling`` for ``smc``); ``expand`` to ``steer``.
    ``on_record(record)`` is called after every finished run.

    ``engine``, ``num_workers``, ``address`` and ``threads_per_worker`` are
    :func:`ppl.map`'s: with ``engine="ray"`` every configuration runs on
    Ray workers, ``lm`` is a zero-argument function returning the model, and
    a metric that takes ``lm`` gets one model built here with ``lm()`` (see
    :mod:`.engine`). The records are the local engine's, but for the timings
    and, on a model with a prefix cache, ``tokens_computed``."""
    metric = resolve_metric(metric)
    inputs = list(inputs)
    ids = list(range(len(inputs))) if ids is None else list(ids)
    opts = {"expand": expand, **(options or {})}
    where = Engine(engine, lm, {"num_workers": num_workers, "address": address,
                                "threads_per_worker": threads_per_worker})
    configs = _check(program, inputs, ids, methods, particles, seeds, opts, where, metric, max_concurrent)
    out = ResultsFile(Path(output) / "results.jsonl") if output is not None else _Memory()
    with out:
        try:
            ran = sum(_run_config(program, inputs, ids, c, out, engine=where, metric=metric, seed=seed,
                                  options=opts, top=top, max_concurrent=max_concurrent, on_record=on_record)
                      for c in configs)
        finally:
            where.close()
        wanted = {c.run_id(i) for c in configs for i in ids}
        records = [r for r in out.previous.values() if r["id"] in wanted]
    names = metric_names_of(records)
    rows = summarise(records, configs, ids, names, seed=seed)
    evaluation = Evaluation(records, rows, names, ran=ran)
    if output is not None:
        title = f"ppl evaluation: {getattr(program, '__name__', type(program).__name__)}"
        evaluation.files = write_outputs(Path(output), evaluation, configs, ids, plot=plot, title=title)
    return evaluation


class _Memory:
    """Records kept in memory only (an evaluation without ``output``)."""

    def __init__(self):
        self.previous: dict = {}

    def append(self, record: dict) -> None:
        self.previous[record["id"]] = record

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        pass
