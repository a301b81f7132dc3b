"""The documentation runs.

Every ```python block in ``docs/*.md`` is executed, one test per block.
The blocks of a page form one session, like a notebook: the test for block
``i`` first runs blocks ``0 .. i-1`` of the same page in a fresh namespace
(with the repository root as the working folder), then block ``i``. A block
may ``await`` at top level (it is then run with ``asyncio.run``).

- A block whose first line is ``# needs: default model`` loads the real
  model: it runs only under ``-m slow`` and is left out of the session the
  later blocks of its page see, so fast blocks must not depend on it.
- A fragment that cannot run on its own (a line from inside a ``step()``
  method, say) is fenced as ```py instead: it is highlighted the same and
  only compiled here, not run.
- ``docs/gallery/`` is left to the gallery's own tests.

And ``mkdocs build --strict`` builds the site once into a temporary folder
(skipped, saying why, when mkdocs, the Material theme or mkdocstrings'
Python handler is not installed: ``pip install -e ".[docs]"``); the tests
on it check what a reader sees: the maths as MathML (``scripts/docs_maths.py``),
no raw Sphinx roles on the API pages (``scripts/docs_roles.py``), and every
gallery program's full source and its saved output on its page
(``scripts/gallery_outputs.py`` writes the outputs).
"""

from __future__ import annotations

import ast
import asyncio
import html
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.DOTALL | re.MULTILINE)
NEEDS_MODEL = "# needs: default model"


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def blocks(page: Path, lang: str) -> list[str]:
    """The bodies of the ``lang`` code blocks of ``page``, dedented."""
    out = []
    for m in FENCE.finditer(page.read_text(encoding="utf-8")):
        if m.group("lang") == lang:
            indent = len(m.group("indent"))
            out.append("".join(line[indent:] if line[:indent].strip() == "" else line
                               for line in m.group("body").splitlines(keepends=True)))
    return out


def needs_model(source: str) -> bool:
    return source.lstrip().startswith(NEEDS_MODEL)


def _cases():
    for page in pages():
        for i, source in enumerate(blocks(page, "python")):
            marks = [pytest.mark.slow] if needs_model(source) else []
            yield pytest.param(page.name, i, marks=marks, id=f"{page.stem}-{i}")


def _compile(source: str, name: str):
    return compile(source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def _run(source: str, name: str, namespace: dict) -> None:
    code = _compile(source, name)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)


@pytest.fixture
def clean_builtins():
    """Blocks may register ``@ppl.dsl.builtin`` functions; undo that after."""
    from ppl.dsl import BUILTINS

    saved = dict(BUILTINS._entries)
    yield
    BUILTINS._entries.clear()
    BUILTINS._entries.update(saved)


def test_the_docs_have_runnable_python():
    assert sum(1 for _ in _cases()) >= 10


@pytest.mark.parametrize("page, index", list(_cases()))
def test_python_block_runs(page, index, monkeypatch, clean_builtins):
    monkeypatch.chdir(ROOT)
    sources = blocks(DOCS / page, "python")
    namespace: dict = {"__name__": f"docs_{Path(page).stem}"}
    for i, source in enumerate(sources[:index]):
        if not needs_model(source):
            _run(source, f"docs/{page} (python block {i})", namespace)
    _run(sources[index], f"docs/{page} (python block {index})", namespace)


@pytest.mark.parametrize("page", [p.name for p in pages() if blocks(p, "py")])
def test_python_fragments_compile(page):
    for i, source in enumerate(blocks(DOCS / page, "py")):
        _compile(source, f"docs/{page} (py fragment {i})")


def test_every_python_fence_is_recognised():
    """A typo such as ```Python or ```python3 would silently skip a block."""
    known = {"python", "py", "pycon", "text", "steer", "sh", "bash", "console", "toml", "yaml", "lark",
             "json", "html", ""}
    for page in pages():
        for m in FENCE.finditer(page.read_text(encoding="utf-8")):
            assert m.group("lang") in known, f"{page.relative_to(ROOT)}: unknown fence ```{m.group('lang')}"


def _missing_docs_tools() -> str | None:
    for module, package in (("mkdocs", "mkdocs"), ("material", "mkdocs-material"),
                            ("mkdocstrings_handlers.python", "mkdocstrings-python")):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{package} is not installed (pip install -e '.[docs]')"
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once with ``mkdocs build --strict`` for the tests below."""
    missing = _missing_docs_tools()
    if missing:
        pytest.skip(missing)
    out = tmp_path_factory.mktemp("docs") / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def test_the_site_builds_strictly(site):
    for page in ("index.html", "getting-started/index.html", "api/runtime/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "runtime" / "index.html").read_text(encoding="utf-8")
    assert "smc_steer" in api and "without_replacement" in api  # docstrings made it in


# -- what the built pages show -------------------------------------------------------------

TAG = re.compile(r"<[^>]+>")
RAW_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj|const):")


def shown_text(page_html: str) -> str:
    """The text a reader sees (tags removed, entities decoded), scripts and styles left out."""
    body = re.sub(r"<(script|style)\b.*?</\1>", "", page_html, flags=re.DOTALL)
    return html.unescape(TAG.sub("", body))


def test_the_concepts_maths_is_mathml(site):
    page = (site / "concepts" / "index.html").read_text(encoding="utf-8")
    assert page.count("<math") >= 50, "the Concepts page should show its formulas as MathML"
    assert re.search(r'<math[^>]*display="block"', page)  # the display formulas too
    text = shown_text(page)
    for raw in ("\\(", "\\[", "$$", "\\frac", "\\sum"):
        assert raw not in text, f"raw TeX {raw!r} shows on the Concepts page"


def test_every_formula_of_the_site_is_mathml(site):
    for page in site.rglob("*.html"):
        source = page.read_text(encoding="utf-8")
        for m in re.finditer(r'class="arithmatex">(.{0,12})', source):
            assert m.group(1).startswith("<math"), f"{page.relative_to(site)}: {m.group(0)!r}"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_maths_hook_converts_inline_and_display_tex():
    pytest.importorskip("latex2mathml")
    maths = _script("docs_maths")
    page = ('<p>Let <span class="arithmatex">\\(w_i &lt; 1\\)</span>.</p>'
            '<div class="arithmatex">\\[\n\\hat Z = \\frac{1}{N} \\sum_i w_i\n\\]</div>')
    out = maths.render_maths(page)
    assert "\\(" not in out and "\\[" not in out and "&lt;" not in out.split("<math")[0]
    assert out.count("<math") == 2 and re.search(r'<math[^>]*display="block"', out)
    assert "<mo>&#x0003C;</mo>" in out and "<mfrac>" in out  # the escaped < came through as an operator


@pytest.mark.parametrize("tex, why", [("x^", "x\\^"), ("\\notacommand x", "unknown command \\\\notacommand")])
def test_the_maths_hook_names_the_page_of_a_bad_formula(tex, why):
    pytest.importorskip("latex2mathml")
    maths = _script("docs_maths")
    with pytest.raises(maths.MathError, match=f"concepts\\.md: cannot convert the formula '.*{why}"):
        maths.render_maths(f'<span class="arithmatex">\\({tex}\\)</span>', where="concepts.md")


def test_the_roles_extension_resolves_names_as_sphinx_does(tmp_path):
    griffe = pytest.importorskip("griffe")
    roles = _script("docs_roles")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""See :mod:`.sub` and :class:`~pkg.sub.Thing`.\n\nUse it so::\n\n'
                                     '    Thing().go()\n\n::\n\n    raw\n"""\nfrom pkg.sub import Thing\n')
    (pkg / "sub.py").write_text(
        'class Thing:\n'
        '    """A thing; :meth:`go` goes, :class:`Thing` s are many, :func:`ppl.runtime.x.f` is elsewhere."""\n'
        '    def go(self):\n        """Go."""\n')
    loaded = griffe.load("pkg", search_paths=[tmp_path], extensions=griffe.load_extensions(roles.SphinxRoles))
    init, thing = loaded.docstring.value, loaded["sub"]["Thing"].docstring.value
    assert init == ('See <autoref identifier="pkg.sub" optional>`sub`</autoref> and '
                    '<autoref identifier="pkg.sub.Thing" optional>`Thing`</autoref>.\n\n'
                    'Use it so:\n\n    Thing().go()\n\n\n    raw')
    assert '<autoref identifier="pkg.sub.Thing.go" optional>`go`</autoref> goes' in thing
    assert '<autoref identifier="pkg.sub.Thing" optional>`Thing`</autoref>s are many' in thing
    assert '<autoref identifier="runtime.x.f" optional>`ppl.runtime.x.f`</autoref>' in thing
    assert not roles.ROLE.search(init + thing)


def test_the_api_pages_show_no_sphinx_roles(site):
    pages = sorted((site / "api").glob("*/index.html"))
    assert len(pages) >= 4
    for page in pages:
        text = shown_text(page.read_text(encoding="utf-8"))
        found = [text[max(0, m.start() - 30):m.end() + 30] for m in RAW_ROLE.finditer(text)]
        assert not found, f"{page.relative_to(site)} shows raw roles: {found[:5]}"
        assert ":class:" not in page.read_text(encoding="utf-8")
        markers = [text[max(0, m.start() - 30):m.end()] for m in re.finditer(r"::[ \t]*$", text, re.MULTILINE)]
        assert not markers, f"{page.relative_to(site)} shows reStructuredText '::' markers: {markers[:5]}"


def test_roles_become_links_where_the_target_is_documented(site):
    page = (site / "api" / "ppl" / "index.html").read_text(encoding="utf-8")
    # ppl.errors' docstring says :class:`~ppl.errors.ModelError`: a link to the class's anchor
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="#ppl\.errors\.ModelError"', page)


# -- the gallery ---------------------------------------------------------------------------

GALLERY = DOCS / "gallery"
SNIPPET = re.compile(r'^[ \t]*--8<-- "(?P<path>[^"]+)"[ \t]*$', re.MULTILINE)


def gallery_programs() -> list[str]:
    spec = importlib.util.spec_from_file_location("gallery_outputs", ROOT / "scripts" / "gallery_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [p.name for p in module.programs([])]


def gallery_includes() -> dict[str, list[str]]:
    return {page.name: SNIPPET.findall(page.read_text(encoding="utf-8"))
            for page in sorted(GALLERY.glob("*.md")) if page.name != "index.md"}


def test_every_gallery_program_is_shown_with_its_output():
    included = [path for paths in gallery_includes().values() for path in paths]
    for name in gallery_programs():
        assert included.count(f"examples/{name}") == 1, f"no gallery page includes examples/{name}"
        assert f"docs/gallery/outputs/{name}.txt" in included, f"no gallery page includes the output of {name}"
        assert (GALLERY / "outputs" / f"{name}.txt").is_file(), f"run scripts/gallery_outputs.py ({name})"


def test_each_gallery_page_includes_the_programs_it_names():
    for page, paths in gallery_includes().items():
        files = re.search(r"\*\*Files:\*\*(.*)", (GALLERY / page).read_text(encoding="utf-8"))
        named = re.findall(r"`(\w+\.(?:py|steer))`", files.group(1))
        assert named, page
        assert [p for p in paths if p.startswith("examples/")] == [f"examples/{n}" for n in named], page


def test_the_built_gallery_pages_show_source_and_output(site):
    for page, paths in gallery_includes().items():
        text = shown_text((site / "gallery" / Path(page).stem / "index.html").read_text(encoding="utf-8"))
        for path in paths:
            lines = [line.strip() for line in (ROOT / path).read_text(encoding="utf-8").splitlines()]
            # the first and last lines with text: the whole file made it in, not a cut-off part
            first, last = next(x for x in lines if x), next(x for x in reversed(lines) if x)
            assert first in text and last in text, f"{page}: {path} is not shown in full"


def test_the_gallery_outputs_say_where_they_came_from():
    for out in sorted((GALLERY / "outputs").glob("*.txt")):
        command, provenance = out.read_text(encoding="utf-8").splitlines()[:2]
        assert command.startswith("$ OMP_NUM_THREADS=1 ppl run examples/"), out.name
        assert "torch" in provenance and "transformers" in provenance and "ppl-steer" in provenance, out.name


def test_the_gallery_settings_are_the_documented_ones():
    spec = importlib.util.spec_from_file_location("gallery_outputs", ROOT / "scripts" / "gallery_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.documented_settings(ROOT / "examples" / "lipogram.py") == ["--particles", "8", "--expand", "3",
                                                                             "--seed", "0"]
    # lipogram.steer's header documents only unseeded runs: the gallery's seeded default is used
    assert "--seed" in module.documented_settings(ROOT / "examples" / "lipogram.steer")
    assert "n=12" in module.documented_settings(ROOT / "examples" / "length_control.steer")
