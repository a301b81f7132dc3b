"""The style sheet and the script of the HTML page (:mod:`.html`), inline
and self-contained: no fonts, libraries or anything else from the network.

The script reads the run's JSON (``#ppl-data``) and draws, for the step
chosen with the slider (or the arrow keys, or a click on the lineage):

- two charts, ESS and the running log Z estimate per step, with axes, tick
  labels and the current step marked;
- the lineage: one column per step, one dot per candidate, a line from each
  candidate to the particle it was cloned from; kept candidates are filled,
  dropped ones hollow, dead ones red, finished ones green; the lines of the
  lineages that reach the final population are drawn dark;
- the step's candidates: weight, state, whether selection kept them, and
  their text with what this step added highlighted.
"""

CSS = """
:root{--fg:#1d2430;--muted:#5b6575;--line:#e3e7ee;--accent:#2f6fd0;--kept:#1f8a4c;--dead:#c0392b;--done:#7a52b3}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:var(--fg);background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:20px 24px 60px}
h1{font-size:1.35em;margin:.2em 0 .1em}h2{font-size:1.08em;margin:1.6em 0 .5em}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:12px 0}
dl.run{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:0}
dl.run dt{color:var(--muted)}dl.run dd{margin:0;word-break:break-word}
.mono,.text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.text{white-space:pre-wrap;word-break:break-word}
table{border-collapse:collapse;width:100%}
td,th{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{background:var(--accent);height:9px;display:inline-block;border-radius:2px;vertical-align:middle}
tr.dropped{opacity:.5}.dead{color:var(--dead)}.kept{color:var(--kept)}.done{color:var(--done)}
mark{background:#ffe28a;border-radius:2px;padding:0 1px}
.meta{color:var(--muted)}.legend span{margin-right:14px;white-space:nowrap}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg{background:#fff;border:1px solid var(--line);border-radius:6px}
svg text{font:11px system-ui,sans-serif;fill:#444}
#controls{display:flex;gap:10px;align-items:center;margin:.5em 0;flex-wrap:wrap}
#controls input[type=range]{flex:1;min-width:240px}
button{font:inherit;padding:2px 10px;border:1px solid #c9d0db;border-radius:5px;background:#fff;cursor:pointer}
#lineage-wrap{overflow-x:auto}#tip{position:fixed;pointer-events:none;background:#1d2430;color:#fff;
padding:4px 8px;border-radius:4px;font-size:12px;max-width:420px;white-space:pre-wrap;display:none;z-index:9}
tr.picked td{background:#eef4ff}
"""

JS = r"""
const data=JSON.parse(document.getElementById('ppl-data').textContent);
const steps=data.history||[];
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function fmt(v){return v===null||v===undefined?'-inf':(Math.abs(v)>=1000||Math.abs(v)<0.01&&v!==0?v.toExponential(2):v.toFixed(3));}
function ticks(lo,hi,n){const span=hi-lo,raw=span/n,mag=Math.pow(10,Math.floor(Math.log10(raw))),
  step=[1,2,5,10].map(m=>m*mag).find(s=>span/s<=n)||mag*10,out=[];
  for(let v=Math.ceil(lo/step)*step;v<=hi+1e-9*step;v+=step)out.push(+v.toPrecision(12));return out;}
let current=steps.length-1;
function chart(id,values,label,marks){
  const el=document.getElementById(id);if(!el)return;
  const W=540,H=200,L=52,R=14,T=24,B=38,finite=values.filter(v=>v!==null&&isFinite(v));
  if(!finite.length){el.innerHTML='<p class="meta">'+label+': no finite values</p>';return;}
  let lo=Math.min(...finite),hi=Math.max(...finite);if(hi===lo){hi+=1;lo-=1;}
  const n=values.length,x=i=>L+(W-L-R)*(n>1?i/(n-1):0.5),y=v=>T+(H-T-B)*(1-(v-lo)/(hi-lo));
  let s='<svg width="'+W+'" height="'+H+'" role="img" aria-label="'+label+'">';
  s+='<text x="'+L+'" y="15" font-weight="600">'+label+'</text>';
  ticks(lo,hi,4).forEach(v=>{s+='<line x1="'+L+'" x2="'+(W-R)+'" y1="'+y(v)+'" y2="'+y(v)+'" stroke="#eef0f4"/>'+
    '<text x="'+(L-6)+'" y="'+(y(v)+4)+'" text-anchor="end">'+(+v.toPrecision(4))+'</text>';});
  ticks(1,Math.max(n,2),Math.min(8,n)).filter(v=>Number.isInteger(v)&&v<=n).forEach(v=>{
    s+='<line x1="'+x(v-1)+'" x2="'+x(v-1)+'" y1="'+(H-B)+'" y2="'+(H-B+4)+'" stroke="#888"/>'+
      '<text x="'+x(v-1)+'" y="'+(H-B+16)+'" text-anchor="middle">'+v+'</text>';});
  s+='<line x1="'+L+'" x2="'+(W-R)+'" y1="'+(H-B)+'" y2="'+(H-B)+'" stroke="#888"/>'+
     '<line x1="'+L+'" x2="'+L+'" y1="'+T+'" y2="'+(H-B)+'" stroke="#888"/>'+
     '<text x="'+((L+W-R)/2)+'" y="'+(H-6)+'" text-anchor="middle">step</text>';
  let d='';values.forEach((v,i)=>{if(v!==null&&isFinite(v))d+=(d?'L':'M')+x(i).toFixed(1)+','+y(v).toFixed(1);});
  s+='<path d="'+d+'" fill="none" stroke="#2f6fd0" stroke-width="2"/>';
  (marks||[]).forEach(t=>{const v=values[t-1];if(v!==null&&isFinite(v))s+='<circle cx="'+x(t-1)+'" cy="'+y(v)+'" r="3" fill="#c0392b"/>';});
  s+='<line class="cursor" x1="'+x(current)+'" x2="'+x(current)+'" y1="'+T+'" y2="'+(H-B)+'" stroke="#e67e22" stroke-width="2" stroke-dasharray="4 3"/>';
  const cv=values[current];if(cv!==null&&isFinite(cv))s+='<circle cx="'+x(current)+'" cy="'+y(cv)+'" r="4.5" fill="#e67e22"/>'+
    '<text x="'+Math.min(x(current)+6,W-R-60)+'" y="'+(T+12)+'" fill="#e67e22">step '+(current+1)+': '+(+cv.toPrecision(4))+'</text>';
  el.innerHTML=s+'</svg>';
}
function survivors(){  // which candidates of each step are ancestors of the final population
  const alive=steps.map(()=>new Set());if(!steps.length)return alive;
  let cur=new Set(steps[steps.length-1].kept);
  for(let t=steps.length-1;t>=0;t--){alive[t]=cur;const next=new Set();
    cur.forEach(j=>{const p=steps[t].particles[j].parent;if(t>0)next.add(steps[t-1].kept[p]);});cur=next;}
  return alive;
}
const alive=survivors();
function lineage(){
  const el=document.getElementById('lineage');if(!el||!steps.length)return;
  const M=Math.max(...steps.map(s=>s.particles.length),steps[0].particles.reduce((m,p)=>Math.max(m,p.parent+1),0));
  const rowH=Math.max(4,Math.min(16,440/M)),colW=Math.max(8,Math.min(70,1060/(steps.length+1))),L=34,T=22;
  const W=L+colW*(steps.length)+20,H=T+rowH*M+10,y=j=>T+rowH*(j+0.5),x=t=>L+colW*t;
  let s='<svg id="lineage-svg" width="'+W+'" height="'+H+'">';
  s+='<rect id="lin-cursor" x="0" y="'+(T-6)+'" width="'+colW+'" height="'+(rowH*M+12)+'" fill="#fff4e5"/>';
  s+='<text x="4" y="14">step</text>';
  const every=Math.ceil(steps.length/20);
  steps.forEach((st,t)=>{if((t+1)%every===0||t===0)s+='<text x="'+x(t+1)+'" y="14" text-anchor="middle">'+st.step+'</text>';
    st.particles.forEach((p,j)=>{const pj=t>0?steps[t-1].kept[p.parent]:p.parent,on=alive[t].has(j);
      s+='<line x1="'+x(t)+'" y1="'+y(pj)+'" x2="'+x(t+1)+'" y2="'+y(j)+'" stroke="'+(on?'#2f3b52':'#c8ced8')+
        '" stroke-width="'+(on?1.6:0.7)+'"/>';});});
  const r=Math.max(1.6,Math.min(5,rowH/2.6));
  for(let j=0;j<(steps[0].particles.reduce((m,p)=>Math.max(m,p.parent+1),0));j++)
    s+='<circle cx="'+x(0)+'" cy="'+y(j)+'" r="'+r+'" fill="#9aa5b5"/>';
  steps.forEach((st,t)=>{const kept=new Set(st.kept);st.particles.forEach((p,j)=>{
    const col=p.dead?'#c0392b':(p.done?'#7a52b3':'#2f6fd0'),k=kept.has(j);
    s+='<circle class="node" data-t="'+t+'" data-j="'+j+'" cx="'+x(t+1)+'" cy="'+y(j)+'" r="'+r+'" fill="'+(k?col:'#fff')+
      '" stroke="'+col+'" stroke-width="1.2"/>';});});
  el.innerHTML=s+'</svg>';
  const svg=document.getElementById('lineage-svg'),tip=document.getElementById('tip');
  svg.addEventListener('mousemove',e=>{const n=e.target.closest('.node');if(!n){tip.style.display='none';return;}
    const p=steps[+n.dataset.t].particles[+n.dataset.j];tip.style.display='block';
    tip.style.left=(e.clientX+12)+'px';tip.style.top=(e.clientY+12)+'px';
    tip.textContent='step '+steps[+n.dataset.t].step+', candidate '+n.dataset.j+' (log w '+fmt(p.log_weight)+')\n'+p.text;});
  svg.addEventListener('mouseleave',()=>{tip.style.display='none';});
  svg.addEventListener('click',e=>{const n=e.target.closest('.node');if(n){show(+n.dataset.t,+n.dataset.j);}});
  window._lin={x:x,colW:colW};
}
function textCell(p){
  const t=p.text||'',a=p.added||'';
  if(a&&t.endsWith(a))return esc(t.slice(0,t.length-a.length))+'<mark title="added at this step">'+esc(a)+'</mark>';
  return esc(t);
}
function show(k,picked){
  if(!steps[k])return;current=k;const s=steps[k];
  document.getElementById('step').value=k;
  document.getElementById('step-label').textContent='step '+s.step+' of '+steps.length+' · '+s.particles.length+
    ' candidates · ESS '+s.ess.toFixed(2)+' · log Z estimate '+fmt(s.log_Z);
  const lw=s.particles.map(p=>p.log_weight===null?-Infinity:p.log_weight),m=Math.max(...lw);
  const w=lw.map(v=>isFinite(v)?Math.exp(v-m):0),tot=w.reduce((a,b)=>a+b,0)||1;
  const kept={};s.kept.forEach(i=>kept[i]=(kept[i]||0)+1);
  let rows='';
  s.particles.forEach((p,i)=>{const W=w[i]/tot,cls=(kept[i]?'':'dropped')+(i===picked?' picked':'');
    const state=p.dead?'<span class="dead" title="'+esc(p.death?p.death.kind+': '+p.death.detail:'')+'">dead'+
      (p.death?' ('+esc(p.death.kind)+')':'')+'</span>':(p.done?'<span class="done">finished</span>':'running');
    rows+='<tr class="'+cls+'"><td class="num">'+i+'</td><td class="num">'+p.parent+'</td>'+
      '<td class="num">'+fmt(p.log_weight)+'</td><td class="num"><span class="bar" style="width:'+(70*W).toFixed(1)+
      'px"></span> '+W.toFixed(3)+'</td><td>'+state+'</td><td class="'+(kept[i]?'kept':'')+'">'+
      (kept[i]?('kept'+(kept[i]>1?' ×'+kept[i]:'')):'dropped')+'</td><td class="text">'+textCell(p)+'</td></tr>';});
  document.getElementById('step-rows').innerHTML=rows;
  chart('ess-chart',steps.map(s=>s.ess),'ESS of the candidates, per step',data.method==='smc_steer'?[]:data.resampled_at);
  chart('logz-chart',steps.map(s=>s.log_Z),'log Z estimate, per step');
  const c=document.getElementById('lin-cursor');if(c&&window._lin)c.setAttribute('x',window._lin.x(k+1)-window._lin.colW/2);
}
if(steps.length){
  const slider=document.getElementById('step');slider.max=steps.length-1;
  slider.addEventListener('input',()=>show(+slider.value));
  document.getElementById('prev').onclick=()=>show(Math.max(0,current-1));
  document.getElementById('next').onclick=()=>show(Math.min(steps.length-1,current+1));
  document.addEventListener('keydown',e=>{if(e.key==='ArrowLeft')show(Math.max(0,current-1));
    if(e.key==='ArrowRight')show(Math.min(steps.length-1,current+1));});
  const h=location.hash.match(/step=(\d+)/),first=h?Math.min(steps.length,Math.max(1,+h[1]))-1:steps.length-1;
  lineage();show(first);
}
document.body.dataset.ready='1';
"""
