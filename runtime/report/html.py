"""One self-contained HTML page for an inference result (inline CSS and JS,
no network): the posterior, log Z and, when recorded, the run step by step —
every candidate particle's text and weight, which particle it came from,
which ones resampling kept, and ESS and log Z over the steps."""

from __future__ import annotations

import html
import json
import math

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;width:100%}td,th{padding:3px 6px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.text{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-word}
.bar{background:#4a7fd4;height:10px;display:inline-block}
.dropped{opacity:.45}.dead{color:#b33}.kept{color:#2a7}
.meta{color:#555}svg{background:#fafafa;border:1px solid #ddd}
#controls{margin:.5em 0}
.ppl-result td.num{width:5em}
"""

_JS = r"""
const data = JSON.parse(document.getElementById('ppl-data').textContent);
const steps = data.history || [];
function esc(s){return s.replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function chart(id, values, label){
  const el=document.getElementById(id); if(!el) return;
  const W=520,H=140,P=30, xs=values.map((v,i)=>i), finite=values.filter(v=>v!==null&&isFinite(v));
  if(!finite.length){el.innerHTML='<p class="meta">'+label+': no finite values</p>';return;}
  let lo=Math.min(...finite),hi=Math.max(...finite); if(hi===lo){hi+=1;lo-=1;}
  const x=i=>P+(W-2*P)*(values.length>1?i/(values.length-1):0.5), y=v=>H-P+(-(H-2*P))*(v-lo)/(hi-lo);
  let d='';values.forEach((v,i)=>{if(v!==null&&isFinite(v)){d+=(d?'L':'M')+x(i).toFixed(1)+','+y(v).toFixed(1);}});
  el.innerHTML='<svg width="'+W+'" height="'+H+'"><text x="'+P+'" y="14" font-size="12">'+label+
    ' (min '+lo.toPrecision(4)+', max '+hi.toPrecision(4)+')</text><path d="'+d+'" fill="none" stroke="#4a7fd4" stroke-width="2"/></svg>';
}
function showStep(k){
  const s=steps[k]; if(!s) return;
  document.getElementById('step-label').textContent='step '+s.step+' of '+steps.length+
    ' — ESS '+s.ess.toFixed(2)+', log Z estimate '+(s.log_Z===null?'-inf':s.log_Z.toFixed(4));
  const lw=s.particles.map(p=>p.log_weight===null?-Infinity:p.log_weight), m=Math.max(...lw);
  const w=lw.map(v=>isFinite(v)?Math.exp(v-m):0), tot=w.reduce((a,b)=>a+b,0)||1;
  const kept={}; s.kept.forEach(i=>kept[i]=(kept[i]||0)+1);
  let rows='';
  s.particles.forEach((p,i)=>{
    const W=w[i]/tot, cls=kept[i]?'':'dropped';
    const state=p.dead?'<span class="dead">dead</span>':(p.done?'finished':'running');
    rows+='<tr class="'+cls+'"><td class="num">'+i+'</td><td class="num">'+p.parent+'</td>'+
      '<td class="num">'+(p.log_weight===null?'-inf':p.log_weight.toFixed(3))+'</td>'+
      '<td class="num"><span class="bar" style="width:'+(80*W).toFixed(1)+'px"></span> '+W.toFixed(3)+'</td>'+
      '<td>'+state+'</td><td class="'+(kept[i]?'kept':'')+'">'+(kept[i]?('kept'+(kept[i]>1?' ×'+kept[i]:'')):'dropped')+'</td>'+
      '<td class="text">'+esc(p.text)+'</td></tr>';
  });
  document.getElementById('step-rows').innerHTML=rows;
}
if(steps.length){
  const slider=document.getElementById('step');
  slider.max=steps.length-1; slider.value=steps.length-1;
  slider.addEventListener('input',()=>showStep(+slider.value));
  showStep(steps.length-1);
  chart('ess-chart', steps.map(s=>s.ess), 'ESS per step');
  chart('logz-chart', steps.map(s=>s.log_Z), 'log Z estimate per step');
}
document.body.dataset.ready='1';
"""


def _fmt(x: float) -> str:
    return "-inf" if x == -math.inf else f"{x:.4f}"


def render_summary(result) -> str:
    """The posterior table and the headline numbers, as an HTML fragment."""
    rows = "".join(
        f'<tr><td class="num">{p:.4f}</td><td class="text">{html.escape(repr(k))}</td></tr>'
        for k, p in list(result.posterior().items())[:50]
    ) or '<tr><td colspan="2">every particle died</td></tr>'
    return (
        f'<div class="ppl-result"><p class="meta">{html.escape(result.method)} · '
        f"N={result.n_particles} · {result.n_steps} steps · log Z = {_fmt(result.log_Z)} · "
        f"status: {html.escape(result.status)} · {result.wall_time:.2f} s</p>"
        f"<table><tr><th>P</th><th>result</th></tr>{rows}</table></div>"
    )


def render_html(result) -> str:
    """The whole page (see the module docstring)."""
    data = json.dumps(result.to_dict(), default=str).replace("</", "<\\/")
    if result.history:
        steps_html = (
            '<h2>Steps</h2><div id="controls"><input type="range" id="step" min="0" value="0" '
            'style="width:60%"> <span id="step-label"></span></div>'
            '<div id="ess-chart"></div><div id="logz-chart"></div>'
            "<table><thead><tr><th>#</th><th>parent</th><th>log w</th><th>W</th><th>state</th>"
            '<th>resampling</th><th>text</th></tr></thead><tbody id="step-rows"></tbody></table>'
        )
    else:
        steps_html = ('<p class="meta">This run did not record its steps; run with '
                      "<code>history=True</code> (or <code>ppl run --html</code>) to see them.</p>")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>ppl run</title>"
        f"<style>{_CSS}</style></head><body><h1>ppl inference result</h1>"
        f"{render_summary(result)}{steps_html}"
        f'<script type="application/json" id="ppl-data">{data}</script>'
        f"<script>{_JS}</script></body></html>"
    )
