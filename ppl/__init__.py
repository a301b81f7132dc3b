"""ppl: a probabilistic programming language for steering language models
with sequential Monte Carlo.

Write a steering program (a :class:`Model` subclass), pick a language model
(:class:`ToyLM` for exact toy problems, ``ppl.load_lm()`` for a transformer),
and run an inference algorithm::

    result = ppl.infer(MyModel(lm, "prompt"), method="steer", n_particles=16, expand=3)
    result.posterior(), result.log_Z
"""

from . import grammars  # the shipped .lark files: ppl.grammars.read(name)
from .constraints import (
    ConstraintError,
    Potential,
    SequenceConstraint,
    TokenConstraint,
    choice,
    contains,
    grammar,
    json_schema,
    lacks,
    matches_token,
    no_special,
    not_eos,
    potential,
    regex,
    token_predicate,
)
from .context import LMContext
from .distributions import (
    Bernoulli,
    Categorical,
    CheckedNextToken,
    ConditionedNextToken,
    Distribution,
    Geometric,
    NextToken,
    TextContinuation,
    Token,
    awrs,
)
from .dsl import builtin, compile, load  # noqa: A004 - ppl.compile/ppl.load read .steer programs
from .errors import (
    BackendError,
    InferenceError,
    ModelError,
    ModelLoadError,
    NestedEventLoopError,
    PPLError,
    WeightError,
    WorkerError,
)
from .mapping import map, map_async  # noqa: A004 - ppl.map maps a program over inputs
from .evaluation import evaluate
from .model import Model
from .primitives import apply_potential, condition, factor, intervene, observe, sample, step, twist
from .program import ProgramModel, program
from .runtime import InferenceResult, LanguageModel
from .runtime.backends import ToyLM
from .runtime.inference import importance_sampling, infer, smc_standard, smc_steer
from .runtime.many import RunOutcome, run_seed
from .submodel import Submodel, call

__version__ = "0.1.0"


def load_lm(name_or_path=None, *, backend: str = "hf", **options):
    """A language model from a registered backend (see
    :mod:`ppl.runtime.backends.registry`). With the default ``backend="hf"``:
    a :class:`~ppl.runtime.backends.hf.cached_transformer.CachedTransformer`
    for the packaged default model (SmolLM2-135M-Instruct) when
    ``name_or_path`` is None, else a local folder, a ``.gguf`` file or a hub
    model id; ``options`` are ``device``, ``dtype``, ``memory_budget_bytes``
    and ``threads`` (torch's CPU threads; default: ``OMP_NUM_THREADS`` if
    set, else half the CPUs, 1 to 8). Imports torch and transformers on first use.
    An unknown backend raises ``ValueError`` listing the registered ones."""
    from .runtime.backends import load_lm as _load_lm

    return _load_lm(name_or_path, backend=backend, **options)


__all__ = [
    "BackendError",
    "Bernoulli",
    "CheckedNextToken",
    "ConstraintError",
    "ModelLoadError",
    "TextContinuation",
    "Potential",
    "SequenceConstraint",
    "awrs",
    "choice",
    "grammar",
    "grammars",
    "json_schema",
    "matches_token",
    "no_special",
    "not_eos",
    "potential",
    "regex",
    "Categorical",
    "ConditionedNextToken",
    "Distribution",
    "Geometric",
    "InferenceError",
    "InferenceResult",
    "LMContext",
    "LanguageModel",
    "Model",
    "builtin",
    "compile",
    "load",
    "ProgramModel",
    "condition",
    "factor",
    "observe",
    "program",
    "sample",
    "step",
    "apply_potential",
    "intervene",
    "call",
    "Submodel",
    "twist",
    "ModelError",
    "NestedEventLoopError",
    "NextToken",
    "PPLError",
    "Token",
    "TokenConstraint",
    "ToyLM",
    "WeightError",
    "WorkerError",
    "RunOutcome",
    "contains",
    "importance_sampling",
    "infer",
    "lacks",
    "load_lm",
    "map",
    "evaluate",
    "map_async",
    "run_seed",
    "smc_standard",
    "smc_steer",
    "token_predicate",
]
