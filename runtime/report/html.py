"""One self-contained HTML page for an inference result (inline CSS and
script, no network): what was run (program, model, prompt, settings), the
posterior and log Z and, when the run recorded its history, the run step by
step — ESS and log Z charts with the chosen step marked, the lineage of the
candidates (which particle each came from, which selection kept, which
reached the end), and every candidate's text with the part its step added
highlighted (see :mod:`.page_script`).

What was run comes from ``run`` (the command line's ``run`` section of
``--json``) when given, else from the result: the program's name, the model
and prompt of a particle's language-model context (read by duck typing:
``display_origin()`` or ``contexts()``), and the result's settings.
"""

from __future__ import annotations

import html
import json
import math

from ..observers import particle_text
from .page_script import CSS, JS

_SUMMARY_CSS = """
.ppl-result{font:13px/1.4 system-ui,sans-serif;color:#1d2430;max-width:900px}
.ppl-result .meta{color:#5b6575;margin:.2em 0 .5em}
.ppl-result table{border-collapse:collapse;width:100%}
.ppl-result td,.ppl-result th{padding:3px 8px;border-bottom:1px solid #e3e7ee;text-align:left;vertical-align:top}
.ppl-result td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;width:6em}
.ppl-result td.text{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word}
.ppl-result .bar{background:#2f6fd0;height:8px;display:inline-block;border-radius:2px;margin-right:4px}
.ppl-result svg{vertical-align:middle}
"""


def _fmt(x: float) -> str:
    return "-inf" if x == -math.inf else f"{x:.4f}"


def _sparkline(values, width: int = 140, height: int = 26) -> str:
    """A small inline SVG of ``values`` (the ESS per step)."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return ""
    lo, hi = 0.0, max(finite) or 1.0
    n = len(values)
    points = " ".join(f"{2 + (width - 4) * i / (n - 1):.1f},{height - 2 - (height - 4) * (v - lo) / (hi - lo):.1f}"
                      for i, v in enumerate(values) if math.isfinite(v))
    return (f'<svg width="{width}" height="{height}" aria-label="ESS per step"><polyline points="{points}" '
            f'fill="none" stroke="#2f6fd0" stroke-width="1.5"/></svg>')


def render_summary(result) -> str:
    """The posterior table and the headline numbers (ESS included), as a
    styled HTML fragment (notebooks show it as the result's ``_repr_html_``)."""
    post = list(result.posterior().items())
    rows = "".join(
        f'<tr><td class="num"><span class="bar" style="width:{60 * p:.0f}px"></span>{p:.4f}</td>'
        f'<td class="text">{html.escape(k if isinstance(k, str) else repr(k))}</td></tr>'
        for k, p in post[:50]
    ) or '<tr><td colspan="2">every particle died</td></tr>'
    more = f'<p class="meta">... and {len(post) - 50} more results</p>' if len(post) > 50 else ""
    ess = ""
    if result.ess:
        ess = (f" · ESS last {result.ess[-1]:.1f}, lowest {min(result.ess):.1f} "
               f"{_sparkline(result.ess)}")
    return (
        f'<div class="ppl-result"><style>{_SUMMARY_CSS}</style><p class="meta">'
        f"{html.escape(result.method)} · N={result.n_particles} · {result.n_steps} steps · "
        f"log Z = {_fmt(result.log_Z)} · status: {html.escape(str(result.status))} · "
        f"{result.wall_time:.2f} s{ess}</p>"
        f"<table><tr><th>P</th><th>result</th></tr>{rows}</table>{more}</div>"
    )


def _origin_of(particles):
    """``(lm, prompt)`` of the first particle that knows its context's (duck
    typed: ``display_origin()``, else its first ``contexts()``), or None."""
    for p in particles:
        get = getattr(p, "display_origin", None)
        origin = get() if callable(get) else None
        if origin is None and callable(getattr(p, "contexts", None)):
            ctxs = p.contexts()
            origin = (ctxs[0].lm, ctxs[0].prompt) if ctxs else None
        if origin is not None:
            return origin
    return None


def describe_run(result, run: dict | None = None) -> list[tuple[str, str]]:
    """``(label, value)`` rows of what was run, for the page's header."""
    run = run or {}
    first = result.particles[0] if result.particles else None
    program = run.get("program") or {}
    name = program.get("name") or getattr(first, "program_name", None) or type(first).__name__
    origin = _origin_of(result.particles)
    model = (run.get("model") or {}).get("name") or (getattr(origin[0], "name", None) if origin else None)
    rows = [("program", f"{name}" + (f"  ({program['path']})" if program.get("path") else "")),
            ("model", str(model or "none"))]
    if origin is not None:
        prompt = str(origin[1])
        rows.append(("prompt", prompt if len(prompt) <= 600 else prompt[:600] + " ..."))
    if run.get("arguments"):
        rows.append(("arguments", ", ".join(f"{k}={v!r}" for k, v in run["arguments"].items())))
    settings = ", ".join(f"{k}={v}" for k, v in result.settings.items() if v is not None)
    rows.append(("method", f"{result.method} ({settings})"))
    for key in ("threads", "device", "dtype"):
        if run.get(key) is not None:
            rows.append((key, str(run[key])))
    if run.get("versions"):
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in run["versions"].items() if v)))
    return rows


def _header(result, run) -> str:
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd class=\"{'mono' if k == 'prompt' else ''}\">"
                   f"{html.escape(v)}</dd>" for k, v in describe_run(result, run))
    return f'<div class="card"><dl class="run">{rows}</dl></div>'


def _deaths(result) -> str:
    counts: dict[str, int] = {}
    for record in result.history or []:
        for p in record["particles"]:
            if p.get("death") and p["death"].get("step") == record["step"]:
                counts[p["death"]["kind"]] = counts.get(p["death"]["kind"], 0) + 1
    if not counts:
        return ""
    text = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f'<p class="meta">candidates that died, by the primitive that killed them: {html.escape(text)}</p>'


_STEPS = (
    '<h2>Steps</h2><div class="card"><div id="controls"><button id="prev" title="previous step (←)">◀</button>'
    '<input type="range" id="step" min="0" value="0"><button id="next" title="next step (→)">▶</button>'
    '<span id="step-label"></span></div><div class="charts"><div id="ess-chart"></div>'
    '<div id="logz-chart"></div></div></div>'
    '<h2>Lineage</h2><div class="card"><p class="legend meta"><span>● kept by selection</span>'
    '<span>○ dropped</span><span style="color:#c0392b">● dead</span><span style="color:#7a52b3">● finished</span>'
    '<span><b>dark lines</b>: ancestors of the final particles</span><span>click a dot for its step</span></p>'
    '<p class="meta">Each column is a step and each dot one of its candidates; a line joins a candidate to '
    'the particle it was cloned from.</p>'
    '<div id="lineage-wrap"><div id="lineage"></div></div></div>'
    '<h2>Candidates of the step</h2><div class="card"><p class="legend meta"><span><mark>highlighted</mark>: '
    "what this step added</span><span>W: normalised weight among the step's candidates</span></p>"
    "<table><thead><tr><th>#</th><th>parent</th><th>log w</th><th>W</th><th>state</th>"
    '<th>selection</th><th>text</th></tr></thead><tbody id="step-rows"></tbody></table></div>'
)


def render_html(result, run: dict | None = None) -> str:
    """The whole page (see the module docstring)."""
    data = result.to_dict()
    data["particles"] = [{**record, "text": particle_text(p)} for record, p in zip(data["particles"], result.particles)]
    payload = json.dumps(data, default=str).replace("</", "<\\/")
    if result.history:
        steps_html = _deaths(result) + _STEPS
    else:
        steps_html = ('<p class="meta">This run did not record its steps; run with '
                      "<code>history=True</code> (or <code>ppl run --html</code>) to see them.</p>")
    title = html.escape(describe_run(result, run)[0][1].split("  (")[0])
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>ppl: {title}</title>"
        f"<style>{CSS}</style></head><body><main><h1>ppl inference result: {title}</h1>"
        f"{_header(result, run)}<h2>Results</h2><div class=\"card\">{render_summary(result)}</div>{steps_html}"
        f'<div id="tip"></div><script type="application/json" id="ppl-data">{payload}</script>'
        f"<script>{JS}</script></main></body></html>"
    )
