"""Submodels: a piece of a step, written once and called from any program.

::

    class ScoredToken(ppl.Submodel):
        def __init__(self, ctx):
            self.ctx = ctx

        async def forward(self):
            tok = await self.sample(self.ctx.next_token())
            self.factor(0.5 * (tok.text == "a"))
            return tok

    tok = await self.call(ScoredToken(self.ctx))   # in a class's step()
    tok = await ppl.call(ScoredToken(ctx))          # in a @ppl.program function

**Semantics.** A submodel has no particle of its own: its primitives act on
the *calling* particle, the one whose step is running (found through
:mod:`ppl.running`, as the module-level primitives find it). So
``call(S)`` is the inlining of ``S.forward()``'s body at the call site: if
that body makes the sites ``s_1 ... s_k`` (draws ``x_j`` and weight
increments ``g_j``, each by the rule of :mod:`ppl.model`), the caller's
kernel ``M_t`` makes the same draws and its potential ``G_t`` gains the
factor ``prod_j g_j``; the target ``P(s) ∝ E_M[prod_t G_t 1[S = s]]`` and
``Z`` are those of the program with the body written inline. A ``twist``
inside a submodel is the caller's twist (it takes back the caller's
previous one). ``call`` returns what ``forward`` returns.

**Steps.** A call is one step block (``async with ppl.step():`` around the
body, :class:`ppl.step`): resampling never falls inside it. In a class's
``step()``, which is one step already, this changes nothing. In a
``@ppl.program`` function the boundary comes before the call when the step
already had a token primitive, as before a block; a submodel whose body has
no token primitive can be awaited as a plain helper instead
(``await helper(ctx)``: an ordinary ``async def`` calling ``ppl.sample``
already runs on the calling particle, its token primitives being steps of
their own, as if written inline).

**Cloning.** A submodel object is transient: it is made and finished
within one step, and it holds no reference to the particle, so cloning the
caller (``copy.deepcopy`` of a class program's attributes, replay of a
function's trace) never has a submodel in flight and needs nothing of it.

``call`` accepts a :class:`Submodel`, a call of a ``@ppl.program`` function
(a fresh run of its body, inline, on the calling particle; its own value is
what ``call`` returns) or a coroutine object.
"""

from __future__ import annotations

import inspect
from typing import Any

from . import primitives
from .errors import ArgumentTypeError, ModelError
from .running import current_particle

__all__ = ["Submodel", "call"]


class Submodel:
    """Base class of submodels: write ``async def forward(self)``; its
    primitives (``self.sample``, ``observe``, ``condition``, ``factor``,
    ``twist``, ``intervene``, ``apply_potential``, ``call``) act on the
    particle that calls it (see the module docstring). No ``__init__`` to
    call: a subclass keeps whatever attributes it likes."""

    async def forward(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define `async def forward(self)`")

    async def sample(self, dist, proposal=None) -> Any:
        """The caller's ``sample``: ``x ~ proposal`` (default ``dist``), weighted to target ``dist``."""
        return await primitives.sample(dist, proposal)

    async def observe(self, dist, value) -> float:
        """The caller's ``observe``: weight times ``dist``'s probability of ``value``."""
        return await primitives.observe(dist, value)

    async def intervene(self, dist, value) -> Any:
        """The caller's ``intervene``: commit ``value`` to ``dist``, no weight change."""
        return await primitives.intervene(dist, value)

    def condition(self, ok) -> None:
        """The caller's ``condition``: weight times ``1[ok]``."""
        primitives.condition(ok)

    def factor(self, log_w: float) -> None:
        """The caller's ``factor``: weight times ``exp(log_w)``."""
        primitives.factor(log_w)

    def twist(self, log_w: float) -> None:
        """The caller's ``twist``: add ``log_w``, taking back the caller's previous twist."""
        primitives.twist(log_w)

    async def apply_potential(self, potential, ctx, *, finished: bool) -> float:
        """The caller's ``apply_potential`` (see :meth:`ppl.Model.apply_potential`)."""
        return await primitives.apply_potential(potential, ctx, finished=finished)

    async def call(self, sub) -> Any:
        """Call another submodel, on the same calling particle."""
        return await call(sub)


def discard(sub) -> None:
    """Close ``sub`` if it is a coroutine that will never run (a failed call),
    so that Python adds no "was never awaited" warning to the error."""
    if inspect.iscoroutine(sub) and inspect.getcoroutinestate(sub) == inspect.CORO_CREATED:
        sub.close()


def _body(sub, where: str):
    """The coroutine that runs ``sub``'s body on the calling particle."""
    if isinstance(sub, Submodel):
        body = sub.forward()
        if not inspect.isawaitable(body):
            raise ArgumentTypeError(
                f"{where}: {type(sub).__name__}.forward() returned {body!r}; "
                "define it as `async def forward(self)`"
            )
        return body
    inline = getattr(sub, "_as_submodel", None)
    if inline is not None:
        return inline(where)
    if inspect.iscoroutine(sub):
        return sub
    if inspect.isclass(sub) and issubclass(sub, Submodel):
        raise ArgumentTypeError(f"{where} got the class {sub.__name__}; call it with an instance: {sub.__name__}(...)")
    raise ArgumentTypeError(
        f"{where} takes a ppl.Submodel instance, a call of a @ppl.program function or a "
        f"coroutine; got {sub!r} ({type(sub).__name__})"
    )


async def call(sub) -> Any:
    """``await ppl.call(sub)``: run ``sub``'s body on the running particle, as
    one step block, and return its result (see the module docstring)."""
    try:
        current_particle("ppl.call()")
    except ModelError:
        discard(sub)
        raise
    body = _body(sub, "ppl.call()")
    try:
        async with primitives.step():
            return await body
    finally:
        discard(body)  # when the block failed before the body ran
