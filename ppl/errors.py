"""Exceptions raised by ppl. Every error a user can cause derives from
:class:`PPLError`; input that is simply out of range raises ``ValueError``."""

from __future__ import annotations


class PPLError(Exception):
    """Root of ppl's own errors."""


class ModelError(PPLError):
    """A steering program used a primitive wrongly (bad distribution, a
    context used after it moved on, a primitive outside a program ...)."""


class WeightError(ModelError):
    """A primitive produced a log weight that is NaN or +inf."""


class InferenceError(PPLError):
    """A particle's program raised during inference. The message names the
    model class and the step; the original exception is chained."""

    def __init__(self, message: str, *, model: str, step: int):
        super().__init__(message)
        self.model = model
        self.step = step


class NestedEventLoopError(PPLError, RuntimeError):
    """``ppl.infer`` (synchronous) was called from inside a running event loop."""
