"""Run histories and the HTML page."""

from __future__ import annotations

import json

import pytest
from support.chromium import needs_chromium, render
from support.toy_programs import Scored, lipogram_fn, toy_lm

import ppl


@pytest.mark.parametrize("method,kw", [("steer", {"expand": 3}), ("smc", {"ess_threshold": 1.0}), ("is", {})])
def test_history_records_every_step(method, kw):
    r = ppl.infer(Scored(toy_lm()), method=method, n_particles=5, seed=4, history=True, **kw)
    assert len(r.history) == r.n_steps
    population = 5
    for record in r.history:
        parts = record["particles"]
        assert all(0 <= p["parent"] < population for p in parts)
        assert len(record["kept"]) == 5 and all(0 <= k < len(parts) for k in record["kept"])
        if method == "steer":
            assert len(set(record["kept"])) == 5  # without replacement
        population = len(record["kept"])
    last = r.history[-1]
    assert [last["particles"][k]["text"] for k in last["kept"]] == [str(p) for p in r.particles]
    assert json.loads(r.to_json())["history"][0]["step"] == 1


def test_no_history_by_default():
    r = ppl.infer(Scored(toy_lm()), method="is", n_particles=3, seed=0)
    assert r.history is None
    assert "did not record its steps" in r.to_html()


class Nasty(ppl.Model):
    async def step(self):
        self.finish()

    def __str__(self):
        return "</script><b>not bold</b>"


def test_html_escapes_particle_text(tmp_path):
    r = ppl.infer(Nasty(), method="is", n_particles=2, history=True)
    page = r.to_html(tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text() == page
    assert "</script><b>" not in page and "&lt;/script&gt;&lt;b&gt;" in page
    assert page.count("<script") == 2 and "http" not in page.split("<body>")[1]
    assert "ppl inference result" in r._repr_html_() or "log Z" in r._repr_html_()


@needs_chromium
def test_page_renders_in_headless_chromium(tmp_path):
    r = ppl.infer(lipogram_fn(toy_lm()), method="steer", n_particles=4, expand=2, seed=1, history=True)
    path = tmp_path / "run.html"
    r.to_html(path)
    dom, errors, log = render(path, tmp_path / "profile")
    assert 'data-ready="1"' in dom, log[-2000:]
    rows = dom.split('<tbody id="step-rows">')[1].split("</tbody>")[0]
    assert rows.count("<tr") == len(r.history[-1]["particles"])
    assert "<svg" in dom
    assert not errors, errors


@needs_chromium
def test_a_throwing_page_script_is_caught(tmp_path):
    """The negative control of the check above: the same page, its script
    made to throw, reports the error."""
    r = ppl.infer(lipogram_fn(toy_lm()), method="steer", n_particles=2, expand=2, seed=1, history=True)
    page = r.to_html()
    thrower = tmp_path / "thrower.html"
    thrower.write_text(page.replace("</body>", "<script>undefinedFunction();</script></body>", 1))
    _, errors, _ = render(thrower, tmp_path / "profile")
    assert any("undefinedFunction" in e for e in errors), errors


@pytest.mark.parametrize("history", [True, False])
def test_plot(tmp_path, history):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    r = ppl.infer(Scored(toy_lm()), method="steer", n_particles=6, expand=3, seed=2, history=history)
    fig = r.plot(tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    ess_axis, weight_axis = fig.axes
    assert list(ess_axis.lines[0].get_ydata()) == pytest.approx(r.ess)
    assert "every step" in weight_axis.get_title() or "candidates" in weight_axis.get_title()
