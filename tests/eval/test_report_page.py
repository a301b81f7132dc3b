"""The evaluation's report renders in headless Chromium without console errors.

What "without console errors" means here: while the page loads and its
script runs, nothing calls ``console.error``, no exception goes uncaught, no
promise rejection goes unhandled and no resource (the embedded plot) fails
to load; and the page's own script runs to the end (``data-ready="1"``).
The page is rendered with a capturing script first in its head
(:mod:`support.chromium`).
Two negative controls show the check can fail: a corrupted plot and a
script that throws.
"""

from __future__ import annotations

import importlib.util

import pytest
from conftest import Lip
from support.chromium import needs_chromium, render
from support.toy_programs import toy_lm

from ppl.evaluation import evaluate, expectation

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="the plot needs matplotlib (the plot extra)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ev")
    ev = evaluate(Lip, [{}, {"banned": "b"}], lm=toy_lm(),
                  metric=lambda i, r: {"length": expectation(len)(i, r)},
                  methods=("lcd", "is", "steer"), particles=(1, 3), expand=2, output=folder)
    return folder, ev


@needs_chromium
@needs_matplotlib
def test_report_renders_without_console_errors(report, tmp_path):
    folder, ev = report
    dom, errors, stderr = render(folder / "report.html", tmp_path / "profile")
    assert 'data-ready="1"' in dom, stderr[-2000:]
    assert not errors, errors
    summary = dom.split('<table id="summary">')[1].split("</table>")[0]
    assert summary.count("<tr>") == 1 + len(ev.rows)
    assert dom.count('<section class="input">') == 2


@needs_chromium
@needs_matplotlib
def test_a_broken_plot_is_a_console_error(report, tmp_path):
    """The negative control: the same page with its image data corrupted."""
    folder, _ = report
    page = (folder / "report.html").read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    dom, errors, _ = render(broken, tmp_path / "profile")
    assert 'data-ready="1"' in dom
    assert any("the plot did not decode" in e for e in errors), errors
    assert any(e.startswith("failed load: IMG") for e in errors), errors


@needs_chromium
@needs_matplotlib
def test_a_throwing_script_is_a_console_error(report, tmp_path):
    folder, _ = report
    page = (folder / "report.html").read_text()
    thrower = tmp_path / "thrower.html"
    thrower.write_text(page.replace("</body>", "<script>undefinedFunction();</script></body>", 1))
    _, errors, _ = render(thrower, tmp_path / "profile")
    assert any("undefinedFunction" in e for e in errors), errors


def test_the_page_asks_for_nothing_outside_itself(report):
    page = (report[0] / "report.html").read_text()
    for attr in ('src="http', "src='http", 'href="http', "@import", "url(http"):
        assert attr not in page
    assert page.count("<script") == 1
