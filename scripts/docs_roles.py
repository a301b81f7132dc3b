"""A griffe extension: Sphinx roles in docstrings become cross-references.

The code's docstrings name other objects the Sphinx way (``:class:`Model```,
``:func:`~ppl.runtime.inference.steer.smc_steer```, ``:mod:`.kv_trie```,
``:meth:`sample```). mkdocstrings renders Markdown, where such a role would
show as raw text. Once griffe has loaded a package, this extension rewrites
every role in its docstrings into an *optional* autorefs cross-reference,

    <autoref identifier="ppl.model.Model" optional>`Model`</autoref>

which mkdocs-autorefs turns into a link when the target is documented on
some page, and into plain code when it is not (so strict builds never fail
on a reference to an undocumented helper). The docstrings in the code are
left as they are.

The reStructuredText literal-block marker is made Markdown too: a paragraph
ending in ``::`` ends in ``:``, and a ``::`` line of its own is dropped;
the indented block after it is already a Markdown code block.

The target is resolved the way Sphinx would: a dotted name from ``ppl`` or
``runtime`` is taken as written, a name with a leading dot is relative to
the current package, and a bare name is looked up in the scopes around the
docstring (the object, its class, its module, its package: their members
and their imports). ``ppl.runtime.X`` is the installed name of the
repository's ``runtime.X``, which is the path the API pages document. A
``~`` shows only the last component, as in Sphinx.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?P<role>class|func|meth|mod|attr|exc|data|obj|const):`(?P<target>[^`]+)`")
# Sphinx's ``:class:`Param`\ s`` and Markdown's ``:class:`Param` s``: the role then a plural "s".
PLURAL_GAP = re.compile(r"(?<=</autoref>)(?:\\ | )s\b")
LITERAL_MARKER = re.compile(r"^[ \t]*::[ \t]*\n|(?<=\S)::[ \t]*$", re.MULTILINE)
INSTALLED = {"ppl.runtime": "runtime", "ppl.grammars": "grammar"}
LOCAL_PACKAGES = ("ppl", "runtime")


def documented_path(path: str) -> str:
    """The path the API pages document for ``path`` (``ppl.runtime.x`` -> ``runtime.x``)."""
    for installed, source in INSTALLED.items():
        if path == installed or path.startswith(installed + "."):
            return source + path[len(installed):]
    return path


def canonical(path: str, collection) -> str:
    """``path`` followed through aliases to where the object is defined, when griffe knows it."""
    for _ in range(8):  # an alias of an alias ...; a cycle stops here
        path = documented_path(path)
        try:
            obj = collection[path]
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return path  # an object of a package not loaded (yet), or an alias griffe cannot follow
        if not obj.is_alias:
            return path
        path = obj.target_path
    return path


def _scopes(obj):
    """``obj`` and the objects around it, innermost first."""
    while obj is not None:
        yield obj
        obj = obj.parent


def _package_of(obj) -> str:
    module = obj.module
    return module.path if module.is_init_module else (module.parent.path if module.parent else module.path)


def resolve(target: str, obj) -> str:
    """The identifier ``target`` names, as written in a docstring of ``obj``."""
    if target.startswith("."):
        return _package_of(obj) + target
    first, _, rest = target.partition(".")
    if first in LOCAL_PACKAGES:
        return target
    for scope in _scopes(obj):
        if first in scope.members:
            return scope.members[first].path + ("." + rest if rest else "")
        try:
            found = scope.resolve(first)
        except griffe.NameResolutionError:
            continue  # not known in this scope: try the one around it
        return found + ("." + rest if rest else "")
    return target


def role_to_autoref(match: re.Match, obj, collection) -> str:
    """The autorefs cross-reference for one Sphinx role found in ``obj``'s docstring."""
    target = match["target"].strip()
    title, explicit = None, re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", target)
    if explicit:
        title, target = explicit["title"], explicit["target"]
    short = target.startswith("~")
    target = target.lstrip("~")
    identifier = canonical(resolve(target, obj), collection)
    if title is None:
        title = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
    return f'<autoref identifier="{identifier}" optional>`{title}`</autoref>'


def rewrite(text: str, obj, collection) -> str:
    """``text`` (a docstring) with every Sphinx role made a cross-reference."""
    text = ROLE.sub(lambda m: role_to_autoref(m, obj, collection), text)
    text = LITERAL_MARKER.sub(lambda m: "" if m[0].endswith("\n") else ":", text)
    return PLURAL_GAP.sub("s", text)


def _objects(obj):
    """``obj`` and its members, recursively, aliases left out (their targets are visited where defined)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles and literal markers of every docstring of a loaded package."""

    def on_package(self, *, pkg, loader, **kwargs) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None and (ROLE.search(obj.docstring.value)
                                              or LITERAL_MARKER.search(obj.docstring.value)):
                obj.docstring.value = rewrite(obj.docstring.value, obj, loader.modules_collection)
