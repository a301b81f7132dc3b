"""docs/dsl.md stays in sync with the language: every ```steer block in it
passes the checker, and its Python builtin example registers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ppl.dsl as dsl

DOC = Path(__file__).resolve().parents[2] / "docs" / "dsl.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(DOC.read_text(encoding="utf-8")) if lang == language]


def test_the_reference_has_steer_examples():
    assert len(blocks("steer")) >= 3


@pytest.mark.parametrize("index", range(len(blocks("steer"))))
def test_every_steer_block_checks(index):
    source = blocks("steer")[index]
    diags = dsl.check_source(source, f"docs/dsl.md block {index + 1}")
    assert diags == [], "\n".join(d.format() for d in diags)


def test_the_python_builtin_example_registers():
    (source,) = [b for b in blocks("python") if "@ppl.dsl.builtin" in b]
    registry = dsl.BUILTINS.copy()
    names = {}
    real = dsl.builtin

    def local_builtin(fn=None, **kw):
        return real(fn, registry=registry, **kw)

    ns = {"ppl": type("ppl", (), {"dsl": type("dsl", (), {"builtin": staticmethod(local_builtin)})})}
    exec(compile(source.replace("import ppl.dsl\n", ""), "docs/dsl.md", "exec"), ns, names)
    assert registry["rhymes"].arg_types == ("str", "str") and registry["score"].pure
    assert dsl.check_source('program p():\n    x = rhymes("cat", score("hat"))\n', builtins=registry) == [
        dsl.Diagnostic("<string>", 2, 23, "rhymes() argument 2 must be str, got float",
                       '    x = rhymes("cat", score("hat"))', 35)
    ]


def test_the_worked_example_is_the_gallery_file():
    example = (DOC.parent.parent / "examples" / "lipogram.steer").read_text(encoding="utf-8")
    first = blocks("steer")[0]
    program = first[first.index("program"):]
    assert program in example
