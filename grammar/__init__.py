"""Grammar files (``.lark``) shipped with ppl, installed as ``ppl.grammars``.

``read("json")`` gives the text of ``json.lark`` and ``available()`` the
names shipped. (The constraint built from a grammar is ``ppl.grammar(...)``,
:func:`ppl.constraints.grammar`, which also accepts a shipped grammar's name.)
The files live at the top level of the source tree (``grammar/``) and are
installed as package data, so they are found the same way from a wheel, an
sdist or an editable install. This package imports nothing of ppl.
"""

from __future__ import annotations

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
