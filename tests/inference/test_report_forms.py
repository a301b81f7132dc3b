"""The page and the history show every particle's text at every step for the
three program forms (class, @ppl.program, .steer), mark what each step
added, and draw the lineage; checked in the recorded data and in headless
Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.chromium import needs_chromium, render
from support.toy_programs import VOCAB, Lipogram, lipogram_fn, toy_lm

import ppl
from ppl import dsl

STEER = Path(__file__).resolve().parents[1] / "dsl" / "steer"
LETTERS = set(VOCAB[:3])


def _forms():
    lm = toy_lm()
    return {"class": Lipogram(lm), "program": lipogram_fn(lm), "steer": dsl.load(STEER / "lipogram.steer")(lm)}


@pytest.mark.parametrize("form", ["class", "program", "steer"])
def test_history_shows_running_texts_for_every_form(form):
    r = ppl.infer(_forms()[form], method="steer", n_particles=4, expand=2, seed=1, history=True)
    first = r.history[0]["particles"]
    # after step 1 every live candidate holds one letter (a running particle, not a placeholder)
    running = [p for p in first if not p["done"]]
    assert running and all(p["text"] in LETTERS for p in running), first
    assert all("running>" not in p["text"] for rec in r.history for p in rec["particles"])
    for rec, prev in zip(r.history[1:], r.history):
        for p in rec["particles"]:
            parent_text = prev["particles"][prev["kept"][p["parent"]]]["text"]
            if p["added"]:  # what this step appended to the parent's text
                assert p["text"] == parent_text + p["added"]
            elif not p["done"]:
                pytest.fail(f"a running particle added nothing: {p}")


def test_display_text_of_each_form_while_running():
    import asyncio

    import numpy as np

    for form, model in _forms().items():
        particle = model.clone()
        if form == "class":
            assert particle.display_text() == ""  # nothing drawn yet: its only context
        asyncio.run(particle.advance(np.random.default_rng(0)))
        assert particle.display_text() in LETTERS, form
        if form == "class":  # recording the context changes nothing of what str() shows
            assert str(particle) == particle.ctx.text and particle.contexts() == [particle.ctx]


def test_a_class_with_its_own_str_keeps_it():
    class Shout(Lipogram):
        def __str__(self):
            return self.ctx.text.upper() + "!"

    r = ppl.infer(Shout(toy_lm()), method="steer", n_particles=3, expand=2, seed=0, history=True)
    assert all(p["text"].endswith("!") for rec in r.history for p in rec["particles"])


def test_page_header_names_program_model_prompt_and_settings():
    lm = toy_lm()

    @ppl.program
    async def prompted(lm):
        ctx = lm.context("ab")
        for _ in range(3):
            tok = await ppl.sample(ctx.next_token())
            if tok.is_eos:
                break
        return ctx.text

    r = ppl.infer(prompted(lm), method="steer", n_particles=3, expand=2, seed=0, history=True)
    assert r.n_steps >= 2
    # finished program particles hold no context (it would keep its cache pinned), only its origin
    assert all(p.display_context() is None and p.display_origin()[1] == "ab" for p in r.particles)
    page = r.to_html()
    header = page.split('<dl class="run">')[1].split("</dl>")[0]
    assert "prompted" in header and "ToyLM" in header and "<dd class=\"mono\">ab</dd>" in header
    assert "smc_steer (n_particles=3, expand=2, seed=0)" in header
    summary = r._repr_html_()
    assert "<style>" in summary and "ESS last" in summary and "<svg" in summary


@needs_chromium
def test_page_shows_text_for_all_three_forms_in_chromium(tmp_path):
    for form, model in _forms().items():
        r = ppl.infer(model, method="steer", n_particles=4, expand=2, seed=1, history=True)
        path = tmp_path / f"{form}.html"
        r.to_html(path)
        dom, errors, log = render(path, tmp_path / "profile")
        assert 'data-ready="1"' in dom, log[-2000:]
        rows = dom.split('<tbody id="step-rows">')[1].split("</tbody>")[0]
        assert rows.count("<tr") == len(r.history[-1]["particles"]), form
        texts = [cell.split("</td>")[0] for cell in rows.split('<td class="text">')[1:]]
        assert texts and all("running&gt;" not in t for t in texts) and any(texts), (form, texts)
        lineage = dom.split('id="lineage-svg"')[1].split("</svg>")[0]
        assert lineage.count('class="node"') == sum(len(rec["particles"]) for rec in r.history), form
        assert 'class="cursor"' in dom and ">step</text>" in dom  # charts: axis label, current step
        assert not errors, (form, errors)
    # the middle step of the .steer run: its candidates' new letters are highlighted
    middle = json.loads(path.read_text().split('id="ppl-data">')[1].split("</script>")[0])["history"]
    assert any(p["added"] for rec in middle for p in rec["particles"])
