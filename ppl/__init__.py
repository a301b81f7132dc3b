"""ppl: a probabilistic programming language for steering language models
with sequential Monte Carlo.

Write a steering program (a :class:`Model` subclass), pick a language model
(:class:`ToyLM` for exact toy problems, ``ppl.load_lm()`` for a transformer),
and run an inference algorithm::

    result = ppl.infer(MyModel(lm, "prompt"), method="steer", n_particles=16, expand=3)
    result.posterior(), result.log_Z
"""

from .constraints import TokenConstraint, contains, lacks, token_predicate
from .context import LMContext
from .distributions import (
    Bernoulli,
    Categorical,
    ConditionedNextToken,
    Distribution,
    Geometric,
    NextToken,
    Token,
)
from .errors import InferenceError, ModelError, NestedEventLoopError, PPLError, WeightError
from .model import Model
from .primitives import condition, factor, observe, sample, twist
from .program import ProgramModel, program
from .runtime import InferenceResult, LanguageModel
from .runtime.backends import ToyLM
from .runtime.smc import importance_sampling, infer, smc_standard, smc_steer

__version__ = "0.1.0"

__all__ = [
    "Bernoulli",
    "Categorical",
    "ConditionedNextToken",
    "Distribution",
    "Geometric",
    "InferenceError",
    "InferenceResult",
    "LMContext",
    "LanguageModel",
    "Model",
    "ProgramModel",
    "condition",
    "factor",
    "observe",
    "program",
    "sample",
    "twist",
    "ModelError",
    "NestedEventLoopError",
    "NextToken",
    "PPLError",
    "Token",
    "TokenConstraint",
    "ToyLM",
    "WeightError",
    "contains",
    "importance_sampling",
    "infer",
    "lacks",
    "smc_standard",
    "smc_steer",
    "token_predicate",
]
