"""The engine that runs steering programs: inference algorithms, resampling,
the batching scheduler and the language-model backends.

Installed as ``ppl.runtime``. It depends on numpy (and, for real models, torch
and transformers); it never imports the DSL.
"""

from .lm import LanguageModel
from .resampling import RESAMPLERS, resample
from .result import InferenceResult
from .scheduler import Scheduler
from .smc import importance_sampling, smc_standard, smc_steer

__all__ = [
    "LanguageModel",
    "RESAMPLERS",
    "resample",
    "InferenceResult",
    "Scheduler",
    "importance_sampling",
    "smc_standard",
    "smc_steer",
]
