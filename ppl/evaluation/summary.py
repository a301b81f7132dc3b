"""The summary of an evaluation: one row per configuration ``(method, N)``.

A row holds the runs (inputs x replicates) and how they ended (``ok``,
``died``: every particle died, ``errors``: the run raised), and for every
metric ``NAME``: ``NAME_mean`` with its 95% bootstrap interval
``NAME_lo``/``NAME_hi`` over the inputs (:mod:`.bootstrap`; each input's
value is its mean over replicates) and ``NAME_n``, the inputs with a value.
The compute is the mean per run: ``forward_passes`` (the
scheduler's batches, one forward pass each), ``requests`` (the next-token
distributions the run's particles asked for: its particle-steps, whatever
batching and caching saved), ``tokens_computed`` (positions the model
actually computed; the ToyLM counts rows) and ``wall_s`` (seconds). With
runs going one at a time these are each run's own; with
``max_concurrent > 1`` a run's counters include the forward passes it
shared with the others. The model's prefix and log-prob caches live across
the whole evaluation, so ``tokens_computed`` counts only what no earlier run
(or metric) had computed, and depends on the order of the configurations;
``requests`` does not, and is the plot's axis. A run that
raised has no counters and is left out of those means. On Ray
(:mod:`.engine`) a run's ``tokens_computed`` is its worker's model's growth
in its own ``stats``; a cache there holds only what that worker ran before
in the same configuration, so with a caching model the column depends on
how inputs fell to workers (the one column a rerun may not repeat).

``summary.csv`` holds every column but ``wall_s``: what a rerun of the same
evaluation reproduces exactly. ``summary.md`` is the table with the wall
time.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

import numpy as np

from .bootstrap import bootstrap_mean

#: the compute columns, means per run
COMPUTE = ("forward_passes", "requests", "tokens_computed")

__all__ = ["COMPUTE", "compute_of", "metric_names_of", "summarise", "to_csv", "to_markdown"]

_OK, _DIED = "ok", "all particles died"


def metric_names_of(records: Sequence[dict]) -> list[str]:
    """The metric names of the records, in first-seen order."""
    names: dict[str, None] = {}
    for r in records:
        for k in r.get("metrics") or {}:
            names.setdefault(k, None)
    return list(names)


def compute_of(record: dict) -> dict[str, float]:
    """The compute of one run (``nan`` for a run without counters):
    ``forward_passes`` and ``requests`` (the scheduler's batches and the
    next-token requests its particles made), ``tokens_computed`` (the run's own measurement, else the models'
    counters in its ``stats``)."""
    stats = record.get("stats") or {}
    if not stats:
        return dict.fromkeys(COMPUTE, math.nan)
    scheduler = stats.get("scheduler", {})
    tokens = record.get("tokens_computed")
    if tokens is None:
        tokens = sum(c.get("tokens_computed", c.get("rows", 0)) for s, c in stats.items() if s != "scheduler")
    return {"forward_passes": float(scheduler.get("batches", math.nan)),
            "requests": float(scheduler.get("rows_requested", math.nan)), "tokens_computed": float(tokens)}


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return float(np.mean(xs)) if xs else math.nan


def _row(method: str, n: int, records: list[dict], ids: list, replicates: int, names: list[str],
         seed: int) -> dict:
    statuses = [r["status"] for r in records]
    row = {"method": method, "particles": n, "runs": len(records), "ok": statuses.count(_OK),
           "died": statuses.count(_DIED), "errors": len(records) - statuses.count(_OK) - statuses.count(_DIED)}
    where = {i: k for k, i in enumerate(ids)}
    for name in names:
        table = np.full((len(ids), replicates), np.nan)
        for r in records:
            value = (r.get("metrics") or {}).get(name)
            if value is not None:
                table[where[r["input_id"]], r["replicate"]] = value
        ci = bootstrap_mean(table, seed=seed)
        row.update({f"{name}_mean": ci.mean, f"{name}_lo": ci.lo, f"{name}_hi": ci.hi, f"{name}_n": ci.n})
    compute = [compute_of(r) for r in records]
    for key in COMPUTE:
        row[key] = _mean([c[key] for c in compute])
    row["wall_s"] = _mean([float(r.get("wall_time") or 0.0) for r in records if r.get("stats")])
    return row


def summarise(records: Sequence[dict], configs, ids: Sequence, names: Sequence[str], *, seed: int = 0) -> list[dict]:
    """One row per ``(method, N)`` of ``configs``, in their order."""
    keys: dict[tuple[str, int], None] = {}
    for c in configs:
        keys.setdefault((c.method, c.n_particles), None)
    replicates = 1 + max((c.replicate for c in configs), default=0)
    by_key: dict[tuple[str, int], list[dict]] = {k: [] for k in keys}
    for r in records:
        key = (r.get("method"), r.get("n_particles"))
        if key in by_key:
            by_key[key].append(r)
    return [_row(m, n, by_key[(m, n)], list(ids), replicates, list(names), seed) for m, n in keys]


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def to_csv(rows: Sequence[dict]) -> str:
    """The rows as CSV, without the wall time (a rerun gives the same bytes)."""
    if not rows:
        return ""
    columns = [k for k in rows[0] if k != "wall_s"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row[k]) for k in columns])
    return buf.getvalue()


def _ci(row: dict, name: str) -> str:
    mean, lo, hi = row[f"{name}_mean"], row[f"{name}_lo"], row[f"{name}_hi"]
    if math.isnan(mean):
        return "–"
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def table(rows: Sequence[dict], names: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The summary as a header and text cells (for Markdown and HTML)."""
    header = ["method", "N", *[f"{n} (95% CI)" for n in names], "ok / died / errors",
              "forward passes", "requests", "tokens computed", "wall s"]
    cells = []
    for row in rows:
        cells.append([row["method"], str(row["particles"]), *[_ci(row, n) for n in names],
                      f"{row['ok']} / {row['died']} / {row['errors']}", _count(row["forward_passes"]),
                      _count(row["requests"]), _count(row["tokens_computed"]), "–" if math.isnan(row["wall_s"]) else f"{row['wall_s']:.2f}"])
    return header, cells


def _count(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.1f}"


def to_markdown(rows: Sequence[dict], names: Sequence[str]) -> str:
    """The summary as a Markdown table (compute and wall time: means per run)."""
    header, cells = table(rows, names)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"
