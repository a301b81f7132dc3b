"""Rendering a page in headless Chromium and catching its console errors.

Chromium's ``--enable-logging=stderr`` prints every console message at
level INFO whatever its level (``console.error`` included), so its log
cannot tell errors apart. :func:`render` therefore renders a copy of the
page with a capturing script put first in ``<head>`` (:data:`CAPTURE`): it
records every ``console.error`` call, uncaught exception, failed resource
load and unhandled promise rejection in the DOM (``data-console-errors``),
which ``--dump-dom`` prints; uncaught errors in the log are added too.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from pathlib import Path

import pytest


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


needs_chromium = pytest.mark.skipif(chromium() is None,
                                    reason="headless Chromium is not installed (Debian package chromium)")

#: records console.error calls, uncaught errors, failed loads and unhandled rejections in the DOM
CAPTURE = """<script>(function () {
  var seen = [];
  function note(kind, text) {
    seen.push(kind + ": " + text);
    document.documentElement.setAttribute("data-console-errors", JSON.stringify(seen));
  }
  var error = console.error;
  console.error = function () { note("console.error", Array.prototype.join.call(arguments, " ")); return error.apply(console, arguments); };
  window.addEventListener("error", function (e) {
    note(e.target && e.target !== window ? "failed load" : "uncaught", e.message || (e.target && e.target.tagName));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { note("unhandled rejection", String(e.reason)); });
})();</script>"""


def console_errors(dom: str) -> list[str]:
    """The errors :data:`CAPTURE` recorded in a dumped DOM."""
    if 'data-console-errors="' not in dom:
        return []
    raw = dom.split('data-console-errors="')[1].split('"')[0]
    return json.loads(html.unescape(raw))


def render(path: Path, profile: Path) -> tuple[str, list[str], str]:
    """Render a copy of the page at ``path`` with :data:`CAPTURE` first in its
    head; return the DOM, the console errors recorded and Chromium's log."""
    page = path.read_text(encoding="utf-8")
    assert "<head>" in page
    probe = profile.parent / f"probe-{path.name}"
    probe.write_text(page.replace("<head>", "<head>" + CAPTURE, 1), encoding="utf-8")
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    uncaught = [line for line in done.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    return done.stdout, console_errors(done.stdout) + uncaught, done.stderr
