"""Grammar files (``.lark``) shipped with ppl, installed as ``ppl.grammar``.

``read("json")`` gives the text of ``json.lark`` and ``available()`` the
names shipped. Calling the package itself, ``ppl.grammar(lark_text)``, builds
the sequence constraint of :func:`ppl.constraints.grammar` (a language given
in Lark syntax, or the name of a shipped grammar). The files live at the top level of the source tree (``grammar/``)
and are installed as package data, so they are found the same way from a
wheel, an sdist or an editable install.
"""

from __future__ import annotations

import sys
import types
from importlib import resources


def available() -> list[str]:
    """Names (without ``.lark``) of the grammars shipped with ppl."""
    return sorted(
        p.name[: -len(".lark")]
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".lark")
    )


def read(name: str) -> str:
    """The text of the shipped grammar ``name`` (``"json"`` or ``"json.lark"``)."""
    stem = name[: -len(".lark")] if name.endswith(".lark") else name
    entry = resources.files(__name__).joinpath(stem + ".lark")
    if not entry.is_file():
        raise FileNotFoundError(
            f"no grammar named {name!r} is shipped with ppl; available: {available()}"
        )
    return entry.read_text(encoding="utf-8")


class _GrammarModule(types.ModuleType):
    """``ppl.grammar`` is both this package of grammar files and, called, the
    grammar constraint (so that ``ppl.grammar("start: ...")`` reads as the
    issue of a constraint and ``ppl.grammar.read("json")`` as a file)."""

    def __call__(self, *args, **kwargs):
        from ppl.constraints import grammar

        return grammar(*args, **kwargs)


sys.modules[__name__].__class__ = _GrammarModule
