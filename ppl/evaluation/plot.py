"""``metric_vs_compute.png``: a metric against the compute it cost.

One line per method through its particle counts: the x axis is the mean
next-token requests per run (log scale), the y axis the metric's mean, with
its 95% bootstrap interval as error bars; each point is labelled with its
``N``. Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

__all__ = ["plot_png"]


def _points(rows: Sequence[dict], method: str, name: str):
    pts = [r for r in rows if r["method"] == method and not math.isnan(r[f"{name}_mean"])
           and not math.isnan(r["requests"])]
    return sorted(pts, key=lambda r: r["particles"])


def plot_png(rows: Sequence[dict], name: str, title: str = "") -> bytes | None:
    """The plot of metric ``name`` as PNG bytes; ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = _points(rows, method, name)
        if not pts:
            continue
        x = [max(r["requests"], 1.0) for r in pts]
        y = [r[f"{name}_mean"] for r in pts]
        err = [[m - r[f"{name}_lo"] for m, r in zip(y, pts)], [r[f"{name}_hi"] - m for m, r in zip(y, pts)]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
        for xi, yi, r in zip(x, y, pts):
            ax.annotate(f"N={r['particles']}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("next-token requests per run (log scale)")
    ax.set_ylabel(f"{name} (mean, 95% bootstrap CI)")
    ax.set_title(title or f"{name} against compute")
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
