"""The one module that touches the transformers cache and attention API (5.x).

A batch's keys and values live in one buffer ``[batch, cached + new, layer,
k|v, kv_heads, head_dim]``, gathered from the KV pool in one indexing
operation, with the new positions left empty. :func:`build_cache` wraps the
buffers in a :class:`transformers.DynamicCache` whose layers
(:class:`BufferLayer`) expose the cached part before the forward pass and
write the new tokens' keys and values into the empty part during it, instead
of concatenating (which would copy the whole cache once more per layer).
After the pass the buffers hold every position's keys and values, ready to be
written back into the pool. :func:`forward` is the model call itself (the
cache keyword, the 2-D attention mask, ``position_ids``, ``logits_to_keep``);
:func:`probe_kv_shape`, :func:`logits_width` and :func:`max_positions` read
the shapes the rest of the backend needs. The attention side (the shared-prefix
"cascade" attention function registered through the attention interface)
lives in :mod:`.cascade_attention`, the one other module that touches the
transformers API.

The rest of the runtime sees plain tensors.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ppl.errors import ArgumentError


def cache_kwarg_name(model) -> str:
    """The keyword the model's ``forward`` takes the cache under: ``cache`` in
    transformers >= 5.24 (``past_key_values`` is deprecated there), else
    ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class BufferLayer(DynamicLayer):
    """A full-attention cache layer over preallocated buffers.

    ``keys_buf`` / ``values_buf`` are ``[batch, kv_heads, cached + new,
    head_dim]`` views (any strides, last dimension contiguous) whose first
    ``cached`` positions hold the prefix. ``update`` writes the new positions
    in place and returns the whole buffers.
    """

    def __init__(self, keys_buf: torch.Tensor, values_buf: torch.Tensor, cached: int) -> None:
        super().__init__()
        self._keys_buf = keys_buf
        self._values_buf = values_buf
        self._cached = cached
        self.device = keys_buf.device
        self.keys = keys_buf[:, :, :cached]
        self.values = values_buf[:, :, :cached]
        self.is_initialized = True

    def lazy_initialization(self, key_states, value_states) -> None:  # never needed
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        start = self._cached
        end = start + key_states.shape[-2]
        if end > self._keys_buf.shape[-2]:
            raise RuntimeError(
                f"BufferLayer has room for {self._keys_buf.shape[-2] - start} new positions, "
                f"got {key_states.shape[-2]}"
            )
        self._keys_buf[:, :, start:end].copy_(key_states)
        self._values_buf[:, :, start:end].copy_(value_states)
        self.keys = self._keys_buf[:, :, :end]
        self.values = self._values_buf[:, :, :end]
        self._cached = end
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.keys.shape[-2]


def build_cache(config, buffers: torch.Tensor, cached: int) -> DynamicCache:
    """A ``DynamicCache`` over ``buffers[batch, position, layer, k|v, kv_head,
    head_dim]`` whose first ``cached`` positions hold the prefix keys/values."""
    cache = DynamicCache(config=config)
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise NotImplementedError(
                f"CachedTransformer supports models whose cache layers are all full-attention "
                f"DynamicLayer; this model has {type(layer).__name__} (sliding-window, "
                "linear-attention and similar layers are not supported)"
            )
    n_layers = buffers.shape[2]
    if cache.layers and len(cache.layers) != n_layers:
        raise ArgumentError(f"model has {len(cache.layers)} cache layers, the KV pool has {n_layers}")
    cache.layers = [
        BufferLayer(buffers[:, :, l, 0].transpose(1, 2), buffers[:, :, l, 1].transpose(1, 2), cached)
        for l in range(n_layers)
    ]
    return cache


def cache_layers_kv(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(keys, values)]`` per layer after a forward pass through an ordinary
    ``DynamicCache``, each ``[batch, kv_heads, positions, head_dim]``."""
    out = []
    for i, layer in enumerate(cache.layers):
        if not getattr(layer, "is_initialized", False) or layer.keys is None:
            raise RuntimeError(f"cache layer {i} was not filled by the forward pass")
        out.append((layer.keys, layer.values))
    return out


def probe_kv_shape(model, cache_kw: str, device) -> tuple[int, int, int, torch.dtype]:
    """``(layers, kv_heads, head_dim, dtype)`` of the model's cache, read from
    one forward pass of one token through an ordinary ``DynamicCache``."""
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(
            input_ids=torch.zeros((1, 1), dtype=torch.long, device=device),
            use_cache=True,
            logits_to_keep=1,
            **{cache_kw: cache},
        )
    kv = cache_layers_kv(cache)
    shapes = {(k.shape[1], k.shape[3], v.shape[1], v.shape[3]) for k, v in kv}
    if len(shapes) != 1:
        raise NotImplementedError(
            f"CachedTransformer needs the same KV shape in every layer; got {sorted(shapes)}"
        )
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise NotImplementedError(
                f"CachedTransformer supports full-attention layers only, not {type(layer).__name__}"
            )
    h, d, hv, dv = shapes.pop()
    if (h, d) != (hv, dv):
        raise NotImplementedError("keys and values of different shapes are not supported")
    return len(kv), h, d, kv[0][0].dtype


def forward(
    model,
    cache_kw: str,
    buffers: torch.Tensor,
    cached: int,
    *,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    logits_to_keep: torch.Tensor,
    cascade=None,
) -> torch.Tensor:
    """Logits of one forward pass of ``input_ids`` ``[rows, new]`` on top of
    the first ``cached`` positions of ``buffers`` (see :func:`build_cache`),
    which receive the new positions' keys and values.

    ``attention_mask`` is 2-D ``[rows, cached + new]`` (1: a real key, 0:
    padding), or None when no row is padded (the model then keeps its causal
    fast path); ``position_ids`` are each row's true positions;
    ``logits_to_keep`` ``[rows, kept]`` picks the positions whose logits are
    returned, ``[rows, kept, logits width]``. ``cascade``: a
    :class:`~.cascade_attention.CascadeBatch` (the model switched by
    :func:`~.cascade_attention.enable`), passed to every attention layer;
    ``attention_mask`` is then None and the batch's own mask is its."""
    cache = build_cache(model.config, buffers, cached)
    extra = {"ppl_cascade": cascade} if cascade is not None else {}
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=logits_to_keep,
        **{cache_kw: cache},
        **extra,
    )
    return out.logits


def logits_width(model) -> int:
    """Width of the model's logits (may exceed the tokenizer's vocabulary)."""
    out_emb = model.get_output_embeddings()
    return int(out_emb.weight.shape[0]) if out_emb is not None else int(model.config.vocab_size)


def max_positions(model) -> int | None:
    """The longest sequence the model's position embeddings allow, or None."""
    cfg = model.config
    if hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config(decoder=True)
    return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
