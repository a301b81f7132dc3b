"""Every exception ppl raises on purpose, in one tree.

A leaf module: it imports nothing from ppl, so the language, the runtime and
the backends can all use it (the one language module the runtime may import).
Every error a user can cause derives from :class:`PPLError`; several also
derive from the builtin they refine (``ValueError``, ``TypeError``,
``RuntimeError``) so that code written against the builtins keeps working.
(A bare ``RuntimeError`` or ``AssertionError`` from ppl is a bug in ppl.)

::

    PPLError
    ├── ArgumentError              an argument out of range (also a ValueError)
    ├── ArgumentTypeError          an argument of the wrong kind (also a TypeError)
    ├── ModelError                 a primitive used wrongly by a program
    │   └── WeightError            a NaN or +inf log weight
    ├── InferenceError             a particle's program raised during inference
    ├── NestedEventLoopError       ppl.infer() inside a running event loop
    ├── ConstraintError            a constraint that cannot be built or used
    ├── BackendError               a language-model backend failed
    │   ├── ForwardError           the model's forward pass raised
    │   ├── TokenIdError           a token id outside the vocabulary
    │   ├── ModelLoadError         a model or tokenizer could not be loaded
    │   │   ├── ModelNotInstalledError   the default model's package is missing
    │   │   ├── BackendNotInstalledError the engine a backend runs on is not installed (vLLM)
    │   │   └── UnsupportedFamilyError   a model family the KV cache cannot serve exactly
    │   └── WorkerError            a worker process of a map failed (e.g. could not load the model)
    ├── UsageError                 bad command-line input (exit status 2)
    └── DSLError (ppl.dsl.errors)  a located error in a .steer program
"""

from __future__ import annotations


class PPLError(Exception):
    """Root of ppl's own errors."""


class ArgumentError(PPLError, ValueError):
    """An argument out of range: ``n_particles=0``, an unknown method, scheme
    or backend name, probabilities that do not sum to one, ..."""


class ArgumentTypeError(PPLError, TypeError):
    """An argument of the wrong kind: not a steering program, a synchronous
    function where an ``async def`` is needed, ..."""


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


class ConstraintError(PPLError, ValueError):
    """A constraint could not be built (bad pattern, grammar or schema) or
    was used where it does not apply."""


class BackendError(PPLError, RuntimeError):
    """A language-model backend could not answer."""


class ForwardError(BackendError):
    """The model's forward pass raised; the message names the batch shape."""


class TokenIdError(BackendError, ValueError):
    """A prefix holds a token id outside the vocabulary."""


class ModelLoadError(BackendError):
    """A model or tokenizer could not be located or loaded."""


class ModelNotInstalledError(ModelLoadError):
    """The package that ships the default model is not installed."""


class BackendNotInstalledError(ModelLoadError):
    """The engine a backend runs on (for example vLLM) is not installed."""


class UnsupportedFamilyError(ModelLoadError, NotImplementedError):
    """The model's family or configuration is not exact through the KV cache
    (sliding-window layers, say, or a family not tested): refused at load time."""


class WorkerError(BackendError):
    """A worker of a multi-process map (``ppl.map(..., engine="ray")``) failed
    as a whole: it could not build the model, or could not be started. The
    message names the worker and carries its own error."""


class UsageError(PPLError):
    """Bad command-line input (exit status 2)."""
