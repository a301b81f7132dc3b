"""The engine that runs steering programs: inference algorithms, resampling,
the batching scheduler and the language-model backends.

Installed as ``ppl.runtime``. It depends on numpy (and, for real models, torch
and transformers). It imports nothing of the language but the leaf module
``ppl.errors``, and the one sanctioned convenience ``lm.context()``.
"""

from .inference import (
    get_method,
    importance_sampling,
    infer,
    methods,
    register_method,
    smc_standard,
    smc_steer,
)
from .lm import LanguageModel
from .particle import Particle
from .resampling import RESAMPLERS, Weights, resample, resampling_scheme
from .result import InferenceResult
from .scheduler import Scheduler

__all__ = [
    "InferenceResult",
    "LanguageModel",
    "Particle",
    "RESAMPLERS",
    "Scheduler",
    "Weights",
    "get_method",
    "importance_sampling",
    "infer",
    "methods",
    "register_method",
    "resample",
    "resampling_scheme",
    "smc_standard",
    "smc_steer",
]
