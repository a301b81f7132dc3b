"""Which Hugging Face model families give exact cached log-probs.

The KV trie stores one key/value pair per token and position and assumes that
every layer attends to **all** earlier positions (full causal softmax
attention, positions given by ``position_ids``). A family is *exact* when
the cached log-probs equal those of a plain full forward pass of each prefix
alone (no cache, batch of one) within float32 round-off; the tests
(``tests/backends/test_model_families.py``) check this for every family
marked exact, on tiny random models built from configs, for both attention
paths (cascade and plain, :mod:`.cascade_attention`).

A model is refused at load time, with a :class:`UnsupportedFamilyError`
naming the family and the reason, when

- its family is not in :data:`FAMILIES` (untested: it might be silently
  wrong, e.g. ALiBi or positions derived from the attention mask); a family
  checked by hand can be added with :func:`register_family`;
- any layer is not full attention (``layer_types`` other than
  ``"full_attention"``: sliding-window or chunked layers, as in Gemma 2), or
  ``sliding_window`` is set without ``layer_types`` (Mistral v0.1, Phi-3
  4k): such a layer attends only to the last ``W`` tokens, and its cache
  keeps only those, which the trie does not model.

Logit soft-capping (Gemma 2) is applied inside attention and to the final
logits; it is exact through the cache (tested with all layers full).
"""

from __future__ import annotations

from dataclasses import dataclass

from ppl.errors import UnsupportedFamilyError

__all__ = ["FAMILIES", "Family", "UnsupportedFamilyError", "check_family", "refusal", "register_family"]


@dataclass(frozen=True)
class Family:
    """``title``: the family's name; ``note``: what was checked. Whether
    the cascade path serves it is :func:`.cascade_attention.cascade_support`'s
    answer."""

    title: str
    note: str


FAMILIES: dict[str, Family] = {}
"""``config.model_type`` -> :class:`Family`, for the families tested exact."""


def register_family(model_type: str, title: str, note: str = "") -> Family:
    """Mark ``model_type`` as exact through the cache (after checking it, as
    the family tests do); the structural checks of :func:`refusal` still apply."""
    fam = Family(title, note)
    FAMILIES[model_type] = fam
    return fam


for _mt, _title in [
    ("gpt2", "GPT-2"),
    ("llama", "Llama"),
    ("qwen2", "Qwen2"),
    ("qwen3", "Qwen3"),
    ("mistral", "Mistral"),
    ("phi3", "Phi-3"),
    ("gemma2", "Gemma 2"),
    ("opt", "OPT"),
    ("gpt_neox", "GPT-NeoX"),
]:
    register_family(_mt, _title, "tiny random model vs plain forward, float32, 1e-4")


def _text_config(model):
    cfg = model.config
    return cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg


def refusal(model) -> str | None:
    """None when ``model`` is exact through the cache, else why not."""
    cfg = _text_config(model)
    mt = getattr(cfg, "model_type", None)
    fam = FAMILIES.get(mt)
    if fam is None:
        return (
            f"model type {mt!r} has not been tested for exact cached log-probs (tested: "
            f"{', '.join(sorted(FAMILIES))}); after checking it against plain forward passes, "
            "add it with ppl.runtime.backends.hf.families.register_family"
        )
    layer_types = list(getattr(cfg, "layer_types", None) or [])
    other = sorted({t for t in layer_types if t != "full_attention"})
    if other:
        return (
            f"{fam.title} with layer types {other} ({len([t for t in layer_types if t in other])} of "
            f"{len(layer_types)} layers): those layers attend only to a window of recent tokens "
            f"(sliding_window={getattr(cfg, 'sliding_window', None)}), and the KV trie keeps "
            "full-attention caches only"
        )
    window = getattr(cfg, "sliding_window", None)
    if not layer_types and window is not None and getattr(cfg, "use_sliding_window", True) is not False:
        return (
            f"{fam.title} with sliding_window={window}: each layer attends only to the last "
            f"{window} tokens, and the KV trie keeps full-attention caches only "
            "(set config.sliding_window = None only if no context will exceed it)"
        )
    return None


def check_family(model, name: str) -> None:
    """Raise :class:`UnsupportedFamilyError` naming ``name`` unless
    :func:`refusal` accepts ``model``."""
    reason = refusal(model)
    if reason is not None:
        raise UnsupportedFamilyError(f"CachedTransformer cannot serve {name!r} exactly: {reason}")
