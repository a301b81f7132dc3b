"""The files of an evaluation's output folder, written from its records:
``summary.csv``, ``summary.md``, ``metric_vs_compute.png`` (with
matplotlib) and ``report.html``. ``results.jsonl`` is written run by run
by :mod:`.sweep`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ArgumentError
from .plot import plot_png
from .report import render_report
from .summary import to_csv, to_markdown

__all__ = ["write_outputs"]


def _write(path: Path, data: str | bytes) -> Path:
    try:
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    except OSError as exc:
        raise ArgumentError(f"{path}: cannot be written ({exc})") from None
    return path


def write_outputs(folder: Path, evaluation, configs: Sequence, ids: Sequence, *, plot: bool = True,
                  title: str = "ppl evaluation") -> dict[str, Path]:
    """Write the summary files, the plot and the report; return their paths by name."""
    methods = list(dict.fromkeys(c.method for c in configs))
    names = evaluation.metric_names
    files = {
        "results": folder / "results.jsonl",
        "summary.csv": _write(folder / "summary.csv", to_csv(evaluation.rows)),
        "summary.md": _write(folder / "summary.md", to_markdown(evaluation.rows, names)),
    }
    png = plot_png(evaluation.rows, names[0]) if plot and names else None
    if png is not None:
        files["plot"] = _write(folder / "metric_vs_compute.png", png)
    files["report"] = _write(folder / "report.html", render_report(evaluation, ids, methods, png, title))
    return files
