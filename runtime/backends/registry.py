"""The registry of language-model backends.

A backend is a loader function ``loader(name_or_path=None, **options) ->
LanguageModel``, registered by name where it is defined::

    @register_backend("hf")
    def load_lm(name_or_path=None, *, device=None, dtype=None, memory_budget_bytes=None): ...

:func:`load_lm` dispatches on ``backend=``. The registry imports no backend
until one is asked for: :data:`BACKEND_MODULES` names the module that
registers each shipped backend, imported on first use, so that ``import ppl``
never loads torch. Adding a backend is one module (with the decorator) plus
one line in :data:`BACKEND_MODULES`.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from ppl.errors import ArgumentError

__all__ = [
    "BACKEND_MODULES",
    "register_backend",
    "available_backends",
    "backend_summary",
    "get_backend",
    "load_lm",
]

BACKEND_MODULES: dict[str, tuple[str, str]] = {
    # name: (module that registers it, one-line summary for help texts)
    "hf": ("ppl.runtime.backends.hf", "Hugging Face transformers causal LMs, KV-cached in a prefix trie (the default)"),
    "toy": ("ppl.runtime.backends.toy", "a model given by a Python function, for exactly solvable tests"),
    "vllm": ("ppl.runtime.backends.vllm", "a vLLM engine: large models, tensor parallelism (needs vLLM installed)"),
}
"""Shipped backends: ``name -> (module, summary)``. Importing the module
registers the backend."""

_LOADERS: dict[str, Callable[..., Any]] = {}
_SUMMARIES: dict[str, str] = {}


def register_backend(name: str, *, summary: str | None = None):
    """Decorator: register ``loader`` as the backend ``name``.

    ``summary`` (one line, for help texts) defaults to the first line of the
    loader's docstring. Registering a second, different loader under a name
    that is taken raises ``ValueError``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ArgumentError(f"a backend name must be a non-empty string, not {name!r}")

    def decorate(loader: Callable[..., Any]) -> Callable[..., Any]:
        old = _LOADERS.get(name)
        if old is not None and _qualname(old) != _qualname(loader):
            raise ArgumentError(
                f"backend {name!r} is already registered by {_qualname(old)}; "
                f"cannot register {_qualname(loader)} under the same name"
            )
        _LOADERS[name] = loader
        doc = (loader.__doc__ or "").strip().splitlines()
        _SUMMARIES[name] = summary or (doc[0] if doc else name)
        return loader

    return decorate


def _qualname(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def available_backends() -> list[str]:
    """Names of the backends :func:`load_lm` accepts, sorted (shipped ones
    and any registered since); imports none of them."""
    return sorted(set(BACKEND_MODULES) | set(_LOADERS))


def backend_summary(name: str) -> str:
    """One line describing backend ``name`` (without importing it)."""
    if name in BACKEND_MODULES:
        return BACKEND_MODULES[name][1]
    if name in _SUMMARIES:
        return _SUMMARIES[name]
    raise _unknown(name)


def _unknown(name) -> ArgumentError:
    return ArgumentError(
        f"unknown backend {name!r}; registered backends: {', '.join(available_backends())}"
    )


def get_backend(name: str) -> Callable[..., Any]:
    """The loader registered as ``name``, importing its module on first use.

    Raises ``ValueError`` listing the registered names for an unknown one."""
    loader = _LOADERS.get(name)
    if loader is None and isinstance(name, str) and name in BACKEND_MODULES:
        importlib.import_module(BACKEND_MODULES[name][0])
        loader = _LOADERS.get(name)
        if loader is None:
            raise RuntimeError(
                f"module {BACKEND_MODULES[name][0]} was imported but registered no backend {name!r}"
            )
    if loader is None:
        raise _unknown(name)
    return loader


def load_lm(name_or_path: Any = None, *, backend: str = "hf", **options: Any):
    """Load a language model with the loader of ``backend``.

    ``name_or_path`` and ``options`` go to the loader unchanged; for ``"hf"``
    (the default) see :func:`ppl.runtime.backends.hf.load_lm`: ``device``,
    ``dtype``, ``memory_budget_bytes``. An unknown ``backend`` raises
    ``ValueError`` listing the registered names.
    """
    return get_backend(backend)(name_or_path, **options)
