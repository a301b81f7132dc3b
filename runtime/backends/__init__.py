"""Language-model backends, found through a registry.

``load_lm(name_or_path, backend="hf", **options)`` dispatches to the loader a
backend registered (:mod:`.registry`); :func:`available_backends` lists the
names. Shipped: ``toy`` (:mod:`.toy`, exact tests and docs) and ``hf``
(:mod:`.hf`, Hugging Face transformers, the default; imported on demand, as
it needs torch).
"""

from .registry import (
    available_backends,
    backend_summary,
    get_backend,
    load_lm,
    register_backend,
)
from .toy import ToyLM

__all__ = ["ToyLM", "available_backends", "backend_summary", "get_backend", "load_lm", "register_backend"]
