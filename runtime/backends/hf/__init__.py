"""The Hugging Face transformers backend (registered as ``"hf"``, the default).

Modules, one job each:

- :mod:`.model_files`: where model files are (the packaged default model,
  cache folders written atomically);
- :mod:`.devices`: devices and dtypes, the one place for their defaults;
- :mod:`.loading`: building the model and tokenizer (GGUF included) and
  :func:`load_lm`, the registered loader;
- :mod:`.cached_transformer`: :class:`CachedTransformer`, the
  :class:`~ppl.runtime.lm.LanguageModel` (orchestration only);
- :mod:`.model_runner`: one batch as named phases (plan, prepare inputs,
  forward, write back, log-probs) and the KV pool tensor;
- :mod:`.cache_adapter`: the only module touching the transformers
  cache/attention API;
- :mod:`.kv_trie`: prefix trie, slot pool, pins, eviction, and the memory
  invariants;
- :mod:`.vocab`: byte and text tables of a tokenizer's vocabulary.

Importing this package does not import torch; :class:`CachedTransformer`
(which does) is loaded on first access.
"""

from __future__ import annotations

from .devices import default_device, default_dtype, parse_device, parse_dtype
from .loading import load_hf, load_lm
from .model_files import DEFAULT_MODEL_NAME, cache_dir, default_model_path

__all__ = [
    "CachedTransformer",
    "DEFAULT_MODEL_NAME",
    "cache_dir",
    "default_device",
    "default_dtype",
    "default_model_path",
    "load_hf",
    "load_lm",
    "parse_device",
    "parse_dtype",
]


def __getattr__(name: str):
    if name == "CachedTransformer":  # lazy: imports torch
        from .cached_transformer import CachedTransformer

        return CachedTransformer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
