"""Inference algorithms: one loop (:mod:`.driver`) and the methods that
plug into it, each registered by name (:mod:`.registry`):

- ``steer``: :func:`smc_steer`, SMC steering (:mod:`.steer`);
- ``smc``: :func:`smc_standard`, adaptive-resampling SMC (:mod:`.smc`);
- ``is``: :func:`importance_sampling` (:mod:`.importance`);
- ``lcd``: :func:`locally_constrained_decoding`, masking alone, weights
  ignored: the baseline of constrained-decoding libraries (:mod:`.lcd`).
"""

# the methods register on import, in this order (the command line lists them so)
from .steer import smc_steer  # isort: skip
from .smc import smc_standard  # isort: skip
from .importance import importance_sampling  # isort: skip
from .lcd import locally_constrained_decoding  # isort: skip
from .driver import Algorithm, Extension, Selection, run
from .registry import Method, get_method, infer, methods, register_method

__all__ = [
    "Algorithm",
    "Extension",
    "Method",
    "Selection",
    "get_method",
    "importance_sampling",
    "infer",
    "locally_constrained_decoding",
    "methods",
    "register_method",
    "run",
    "smc_standard",
    "smc_steer",
]
