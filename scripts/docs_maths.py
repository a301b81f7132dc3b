"""An mkdocs hook: the docs' TeX becomes MathML when the site is built.

The pages write maths as ``$...$`` (inline) and ``$$ ... $$`` (display).
``pymdownx.arithmatex`` in generic mode finds them and leaves them as
``<span class="arithmatex">\\(...\\)</span>`` and
``<div class="arithmatex">\\[...\\]</div>``, its TeX HTML-escaped, for a
JavaScript renderer to typeset in the browser. This hook converts each one
to MathML with ``latex2mathml`` instead: browsers render MathML natively, so
the built site shows typeset maths offline, with no script and no CDN.

A formula latex2mathml cannot parse, or one with a command it does not know
(which it would pass through as text, ``<mi>\\foo</mi>``), stops the build
with the page and the formula, instead of being shown as raw TeX.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

UNKNOWN_COMMAND = re.compile(r">(\\[A-Za-z]+)<")
MATH = re.compile(r'<(?P<tag>span|div) class="arithmatex">(?P<tex>.*?)</(?P=tag)>', re.DOTALL)
DELIMITERS = {"span": (r"\(", r"\)"), "div": (r"\[", r"\]")}


class MathError(ValueError):
    """A formula of a page that could not be converted to MathML."""


def to_mathml(tex: str, block: bool) -> str:
    """The MathML of one TeX formula (no delimiters), inline or display."""
    mathml = convert(tex.strip(), display="block" if block else "inline")
    unknown = UNKNOWN_COMMAND.search(mathml)
    if unknown:
        raise ValueError(f"unknown command {unknown[1]}")
    return mathml


def strip_delimiters(tag: str, escaped: str) -> str:
    """The TeX inside arithmatex's ``\\(...\\)`` or ``\\[...\\]``, unescaped."""
    tex = html.unescape(escaped).strip()
    left, right = DELIMITERS[tag]
    if tex.startswith(left) and tex.endswith(right):
        tex = tex[len(left):-len(right)]
    return tex


def render_maths(page_html: str, where: str = "page") -> str:
    """``page_html`` with every arithmatex formula replaced by MathML."""

    def replace(m: re.Match) -> str:
        tex = strip_delimiters(m["tag"], m["tex"])
        try:
            mathml = to_mathml(tex, block=m["tag"] == "div")
        except Exception as exc:  # latex2mathml raises plain exceptions of many kinds
            raise MathError(f"{where}: cannot convert the formula {tex!r} to MathML: {exc}") from exc
        return f'<{m["tag"]} class="arithmatex">{mathml}</{m["tag"]}>'

    return MATH.sub(replace, page_html)


def on_page_content(html_text: str, page, config, files) -> str:
    """mkdocs hook: convert the page's maths after Markdown has run."""
    return render_maths(html_text, where=page.file.src_uri)
