"""Inference methods, registered where they are defined.

``@register_method("steer", summary)`` on an ``async def method(model,
n_particles, ..., *, max_steps=None, seed=None, observer=None, history=False,
scheduler=None)`` (``max_steps`` passed on to
:func:`~ppl.runtime.inference.driver.run`) makes it available as ``ppl.infer(model, method="steer",
...)``, as ``ppl.map(..., method="steer")`` and as ``ppl run --method steer``; the command line's choices, its help and the
"unknown method" error all read this registry. Adding an algorithm is one
module (an ``Algorithm`` for :func:`~ppl.runtime.inference.driver.run` plus
its registered function) and its import in ``inference/__init__.py``.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ppl.errors import ArgumentError, ArgumentTypeError, NestedEventLoopError

__all__ = ["Method", "get_method", "infer", "methods", "register_method"]

#: the arguments every method takes; the others are the method's own options
COMMON = ("model", "n_particles", "seed", "observer", "history", "scheduler")


@dataclass(frozen=True)
class Method:
    """A registered inference method: ``run(model, n_particles, **options)``."""

    name: str
    run: Callable[..., Awaitable[Any]]
    summary: str  #: one line, for ``ppl run --help``

    @property
    def options(self) -> dict[str, inspect.Parameter]:
        """The method's own keyword options (``expand``, ``ess_threshold``,
        ``max_steps`` ...)."""
        params = inspect.signature(self.run).parameters
        return {k: p for k, p in params.items() if k not in COMMON}

    def check_call(self, model, kwargs: dict) -> None:
        """``ArgumentError`` (not a ``TypeError`` from deep inside) when
        ``kwargs`` has an option this method does not take or lacks a
        required argument; the message names the method and its options."""
        valid = ", ".join(f"{k}={p.default!r}" if p.default is not p.empty else k
                          for k, p in self.options.items()) or "none"
        unknown = sorted(set(kwargs) - set(inspect.signature(self.run).parameters) - {"model"})
        if unknown:
            raise ArgumentError(
                f"method {self.name!r} takes no option {', '.join(map(repr, unknown))}; "
                f"its options: {valid}"
            )
        try:
            inspect.signature(self.run).bind(model, **kwargs)
        except TypeError as exc:
            raise ArgumentError(
                f"method {self.name!r}: {exc} (n_particles is required, e.g. n_particles=16; "
                f"its options: {valid})"
            ) from None


_METHODS: dict[str, Method] = {}


def register_method(name: str, summary: str):
    """Register an async inference function under ``name``; ``summary`` is
    the one line the command line's help shows for it."""

    def register(fn):
        if not inspect.iscoroutinefunction(fn):
            raise ArgumentTypeError(f"an inference method must be an async function; {fn!r} is not")
        if name in _METHODS and _METHODS[name].run is not fn:
            raise ArgumentError(f"an inference method named {name!r} is already registered")
        _METHODS[name] = Method(name, fn, summary)
        return fn

    return register


def methods() -> dict[str, Method]:
    """Every registered method, by name, in registration order."""
    return dict(_METHODS)


def get_method(name: str) -> Method:
    """The method registered as ``name``; ``ValueError`` listing them otherwise."""
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise ArgumentError(f"unknown method {name!r}; valid methods are: {', '.join(_METHODS)}") from None


def infer(model, method: str = "steer", **kwargs):
    """Run inference synchronously: ``method`` names a registered method
    (``"steer"``: :func:`~ppl.runtime.inference.steer.smc_steer`, ``"smc"``:
    :func:`~ppl.runtime.inference.smc.smc_standard`, ``"is"``:
    :func:`~ppl.runtime.inference.importance.importance_sampling`);
    ``kwargs`` go to it (``n_particles``, ``expand``, ``seed``, ``max_steps``
    ...); an option the method does not take raises ``ArgumentError`` naming
    the method and its options.

    Inside a running event loop (a notebook, an async application) ``await``
    the algorithm itself instead.
    """
    chosen = get_method(method)
    chosen.check_call(model, kwargs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise NestedEventLoopError(
            "ppl.infer() cannot run inside a running event loop (for example in "
            f"Jupyter or an async function); use `await ppl.{chosen.run.__name__}(model, ...)` instead"
        )
    return asyncio.run(chosen.run(model, **kwargs))
