"""Files a program names, found relative to the program: ``grammar("x.lark")``.

A string argument of ``grammar`` that ends in ``.lark`` (one line) names a
file beside the program: ``Path(filename).parent / "x.lark"`` for a program
loaded from a file, the current directory for source text compiled with a
``filename`` such as ``"<string>"`` (one starting with ``<``). When no such
file exists the name is left to ``ppl.constraints.grammar``, which reads a
grammar shipped with ppl (``ppl.grammars.available()``); the checker reports
a name that is neither. The code generator reads the file once, when the
program is compiled, and passes its text to ``grammar``.
"""

from __future__ import annotations

from pathlib import Path

from .. import grammars as _grammars

#: builtins whose first argument may name a file beside the program
FILE_ARGUMENTS = frozenset({"grammar"})


def program_dir(filename: str) -> Path:
    """Where the files a program names are looked for."""
    return Path.cwd() if filename.startswith("<") else Path(filename).parent


def lark_file(value, filename: str) -> Path | None:
    """The file beside the program that ``value`` names, if it names one
    that exists; None otherwise."""
    if not is_lark_name(value):
        return None
    path = program_dir(filename) / value.strip()
    return path if path.is_file() else None


def is_lark_name(value) -> bool:
    return isinstance(value, str) and value.strip().endswith(".lark") and "\n" not in value


def missing_message(value: str, filename: str) -> str | None:
    """The checker's message for a ``.lark`` name found nowhere (None: found)."""
    if lark_file(value, filename) is not None:
        return None
    name = value.strip()
    shipped = set(_grammars.available())
    if name in shipped or name.removesuffix(".lark") in shipped:
        return None
    folder = program_dir(filename)
    where = "the current directory" if filename.startswith("<") or folder == Path(".") else str(folder)
    return (f"grammar file {name!r} not found: looked beside the program (in {where}) and among "
            f"the shipped grammars ({', '.join(sorted(shipped))})")


def read_lark(path: Path) -> str:
    return path.read_text(encoding="utf-8")
