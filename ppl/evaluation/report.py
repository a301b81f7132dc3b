"""``report.html``: one self-contained page of an evaluation (no network).

It holds the summary table, the plot (a PNG embedded as base64) and, per
input, each method's answer: the most probable output of the method's run
with the largest particle count (replicate 0), its normalised weight and
the run's metrics. Every text is escaped. A small inline script checks that
the plot decoded (a ``console.error`` otherwise) and then marks the page
``data-ready="1"``: what the headless-browser test reads.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence

from .summary import table

__all__ = ["answers", "render_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
code, .out { font-family: ui-monospace, monospace; white-space: pre-wrap; }
.missing { color: #999; }
"""

_SCRIPT = """
(function () {
  var imgs = document.querySelectorAll("img");
  var pending = imgs.length;
  function done() { document.body.setAttribute("data-ready", "1"); }
  function check(img) {
    if (!(img.naturalWidth > 0)) { console.error("the plot did not decode: " + img.alt); }
    pending -= 1;
    if (pending <= 0) { done(); }
  }
  if (pending === 0) { done(); }
  imgs.forEach(function (img) {
    if (img.complete) { check(img); }
    else { img.addEventListener("load", function () { check(img); });
           img.addEventListener("error", function () { check(img); }); }
  });
})();
"""


def answers(records: Sequence[dict], ids: Sequence, methods: Sequence[str]) -> dict:
    """``{input_id: {method: record}}``: each method's run with the largest
    ``N`` at replicate 0 (the run whose answer the report shows)."""
    out: dict = {i: {} for i in ids}
    for r in records:
        if r.get("replicate", 0) != 0 or r.get("input_id") not in out:
            continue
        best = out[r["input_id"]].get(r["method"])
        if best is None or r["n_particles"] > best["n_particles"]:
            out[r["input_id"]][r["method"]] = r
    return {i: {m: out[i][m] for m in methods if m in out[i]} for i in ids}


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _table_html(rows, names) -> str:
    header, cells = table(rows, names)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in cells)
    return f'<table id="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _answer_cells(record: dict) -> str:
    metrics = ", ".join(f"{k} = {v:.4g}" for k, v in (record.get("metrics") or {}).items())
    top = record.get("top") or []
    if top:
        out = f'<span class="out">{_e(json.dumps(top[0]["value"], ensure_ascii=False))}</span>'
        weight = f'{top[0]["weight"]:.3f}'
    else:
        out, weight = f'<span class="missing">{_e(record.get("status"))}</span>', "–"
    return (f"<td>{_e(record['method'])} (N={record['n_particles']})</td><td>{out}</td>"
            f"<td>{weight}</td><td>{_e(metrics)}</td>")


def _inputs_html(records, ids, methods) -> str:
    parts = []
    for input_id, by_method in answers(records, ids, methods).items():
        args = next((r.get("args") for r in by_method.values()), {})
        rows = "".join(f"<tr>{_answer_cells(r)}</tr>" for r in by_method.values())
        parts.append(
            f'<section class="input"><h3>{_e(input_id)}</h3><p><code>{_e(json.dumps(args, ensure_ascii=False))}'
            f"</code></p><table><thead><tr><th>method</th><th>most probable output</th><th>weight</th>"
            f"<th>metrics</th></tr></thead><tbody>{rows}</tbody></table></section>")
    return "\n".join(parts)


def render_report(evaluation, ids: Sequence, methods: Sequence[str], png: bytes | None, title: str) -> str:
    """The page as a string."""
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        plot = f'<img id="plot" alt="metric against compute" src="data:image/png;base64,{data}">'
    else:
        plot = '<p class="missing">no plot: matplotlib is not installed (pip install "ppl-steer[plot]")</p>'
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n<h1>{_e(title)}</h1>\n"
        f"<h2>Summary</h2>\n<p>Means over the inputs with 95% bootstrap intervals; compute and wall time "
        f"are means per run.</p>\n{_table_html(evaluation.rows, evaluation.metric_names)}\n"
        f"<h2>Metric against compute</h2>\n{plot}\n"
        f"<h2>Answers per input</h2>\n{_inputs_html(evaluation.records, ids, methods)}\n"
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )
