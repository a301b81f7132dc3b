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

And ``mkdocs build --strict`` builds the site into a temporary folder
(skipped, saying why, when mkdocs, the Material theme or mkdocstrings'
Python handler is not installed: ``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import ast
import asyncio
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
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
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


def test_the_site_builds_strictly(tmp_path):
    missing = _missing_docs_tools()
    if missing:
        pytest.skip(missing)
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for page in ("index.html", "getting-started/index.html", "api/runtime/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    api = (tmp_path / "site" / "api" / "runtime" / "index.html").read_text(encoding="utf-8")
    assert "smc_steer" in api and "without_replacement" in api  # docstrings made it in
