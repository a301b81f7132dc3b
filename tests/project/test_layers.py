"""The allowed import directions, written down and enforced.

Reads every module of the installed package (``ppl/``, ``runtime/`` as
``ppl.runtime``, ``grammar/`` as ``ppl.grammars``) with ``ast``, collects its
explicit imports (at module level and inside functions alike: an import in a
function body is how a cycle hides), and checks:

- there is no import cycle among the project's modules;
- the language layers point one way: errors and running are leaves; the
  constraints never reach the distributions, contexts, the model or the
  program modules; nothing below the front-ends imports the DSL or the CLI;
- the runtime (the engine) imports nothing of the language except the leaf
  ``ppl.errors`` and the one sanctioned convenience edge,
  ``ppl.runtime.lm`` -> ``ppl.context`` (``lm.context()``).

Implicit imports of parent packages (importing ``ppl.a.b`` runs
``ppl/__init__.py``) are not edges: only what a module names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"ppl": ROOT / "ppl", "ppl.runtime": ROOT / "runtime", "ppl.grammars": ROOT / "grammar"}

#: the one runtime -> language edge the design allows
SANCTIONED = {("ppl.runtime.lm", "ppl.context")}


def _modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


MODULES = _modules()


def _package_of(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str) -> set[str]:
    """The project modules ``name`` imports explicitly."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            # `from pkg import sub` names the submodule when there is one
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import ppl.x.y` -> the module that exists
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _in(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_sources_are_found():
    for expected in ("ppl.model", "ppl.running", "ppl.runtime.lm", "ppl.runtime.inference.driver", "ppl.grammars"):
        assert expected in MODULES
    assert "ppl.context" in GRAPH["ppl.runtime.lm"], "the sanctioned edge is gone: update SANCTIONED"


def test_no_import_cycle():
    """Depth-first search for a back edge; the message shows the cycle."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in colour:
            cycle = visit(start)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


# (importer, what it must not import, why)
FORBIDDEN = [
    (("ppl.errors",), ("ppl",), "ppl.errors is the leaf every layer may import"),
    (("ppl.running",), ("ppl.model", "ppl.program", "ppl.context", "ppl.distributions", "ppl.constraints",
                        "ppl.runtime", "ppl.dsl"), "ppl.running is a leaf (it may import ppl.errors only)"),
    (("ppl.constraints",), ("ppl.model", "ppl.program", "ppl.context", "ppl.distributions", "ppl.primitives",
                            "ppl.dsl", "ppl.cli"), "constraints sit below distributions and programs"),
    (("ppl.distributions",), ("ppl.model", "ppl.program", "ppl.context", "ppl.dsl", "ppl.cli"),
     "distributions know contexts only through the objects they are given"),
    (("ppl.model", "ppl.program", "ppl.context", "ppl.primitives", "ppl.distributions", "ppl.constraints"),
     ("ppl.dsl", "ppl.cli", "ppl.program_files"), "the language core never imports a front-end"),
    (("ppl.grammars",), ("ppl",), "the grammar files' package imports nothing of ppl"),
]


@pytest.mark.parametrize("importers, forbidden, why", FORBIDDEN, ids=[f[0][0] for f in FORBIDDEN])
def test_language_layers(importers, forbidden, why):
    bad = [
        f"{a} -> {b}"
        for a in MODULES if _in(a, *importers)
        for b in GRAPH[a]
        if _in(b, *forbidden) and not _in(b, *importers) and b != "ppl.errors"
    ]
    assert not bad, f"{why}: " + ", ".join(sorted(bad))


def test_runtime_imports_no_language():
    bad = [
        f"{a} -> {b}"
        for a in MODULES if _in(a, "ppl.runtime")
        for b in GRAPH[a]
        if not _in(b, "ppl.runtime") and b != "ppl.errors" and (a, b) not in SANCTIONED
    ]
    assert not bad, (
        "the runtime imports only itself, ppl.errors and the sanctioned lm.context() edge: "
        + ", ".join(sorted(bad))
    )


def test_the_checker_catches_a_cycle(tmp_path):
    """The cycle search itself can fail: a two-module loop is reported."""
    saved = dict(GRAPH)
    try:
        GRAPH["ppl.errors"] = GRAPH["ppl.errors"] | {"ppl.running"}
        with pytest.raises(AssertionError, match="import cycle: .*ppl.errors.*ppl.running"):
            test_no_import_cycle()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


# -- sizes: a module that needs section banners is several modules --------------------

MAX_MODULE_LINES = 460
MAX_FUNCTION_LINES = 60
#: modules allowed to be longer, and why
LONG_MODULES = {
    "ppl.dsl.checker": "one visitor class: the checker is one pass over the AST",
}


def test_modules_and_functions_stay_small():
    too_long, long_functions = [], []
    for name, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES and name not in LONG_MODULES:
            too_long.append(f"{name} ({lines} lines)")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name} ({n} lines)")
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines (split them): {too_long}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"
