"""Shared-prefix ("cascade") attention, the one other module that touches the
transformers attention API (besides :mod:`.cache_adapter`).

When every row of a batch extends one common prefix of ``C0`` tokens (the
deepest trie node all rows descend from), the keys and values of that prefix
are the same for every row. Attention then splits exactly. For one query
``q`` (one head, scale ``s``), shared keys/values ``K_S, V_S`` and the row's
own keys/values ``K_U, V_U`` (its cached suffix, then the new tokens,
causal):

    lse_X = log sum_j exp(s q.k_j)  over j in X,
    o_X   = sum_j exp(s q.k_j - lse_X) v_j,
    attn(q) = exp(lse_S - lse) o_S + exp(lse_U - lse) o_U,
    lse = logaddexp(lse_S, lse_U),

which is softmax attention over ``S + U``. The rows come in groups
(:mod:`.shared_prefix`): group ``g`` is a contiguous span of rows that share
one prefix ``S_g``. The shared part is computed for the queries of **all**
rows of a group against **one** copy of ``K_{S_g}, V_{S_g}`` (one matrix
product per group, batched over the KV heads, the query heads that read one
KV head stacked, so grouped-query attention needs no repeated keys), the own
part for every row at once with a padding and causal mask, and each group's
rows merge the two by log-sum-exp in place. A row in no group keeps its own
part (it then holds the row's whole prefix). Each shared copy is read once
per layer instead of once per row.

How it is installed: :func:`enable` registers an attention function (and its
mask function) under a name derived from the model's current implementation
(``sdpa`` or ``eager``) through :class:`transformers.AttentionInterface` and
switches the model to it. Called without a :class:`CascadeBatch` (the
``ppl_cascade`` keyword of the forward pass), the function is the model's
original implementation, unchanged. Only architectures known to compute
plain softmax attention through the interface are switched
(:data:`SUPPORTED_MODEL_TYPES`, no sliding window, no logit soft-capping);
:func:`cascade_support` says why a model is not, and the backend keeps the
plain path for it.
"""

from __future__ import annotations

import torch

PREFIX = "ppl_cascade_"
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
"""Model families whose attention is plain softmax attention (rotary
positions applied before the cache), dispatched through the attention
interface with ``module.layer_idx`` and ``module.num_key_value_groups``."""
PLAIN_IMPLEMENTATIONS = ("sdpa", "eager")


def _text_config(model):
    cfg = model.config
    return cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg


def _plain_name(impl: str | None) -> str | None:
    return impl[len(PREFIX):] if impl and impl.startswith(PREFIX) else impl


def cascade_support(model) -> str | None:
    """None when the cascade path supports ``model``, else the reason why not
    (the backend then uses the plain path: one gathered copy of the whole
    context per row)."""
    cfg = _text_config(model)
    mt = getattr(cfg, "model_type", None)
    if mt not in SUPPORTED_MODEL_TYPES:
        return f"model type {mt!r} is not one of {sorted(SUPPORTED_MODEL_TYPES)}"
    if getattr(cfg, "sliding_window", None) is not None and getattr(cfg, "use_sliding_window", True):
        return "sliding-window attention"
    layer_types = getattr(cfg, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        return f"layer types {sorted(set(layer_types))}"
    for name in ("attn_logit_softcapping", "final_logit_softcapping"):
        if getattr(cfg, name, None) is not None:
            return f"{name} is set"
    impl = _plain_name(getattr(cfg, "_attn_implementation", None))
    if impl not in PLAIN_IMPLEMENTATIONS:
        return f"attention implementation {impl!r} (supported: {', '.join(PLAIN_IMPLEMENTATIONS)})"
    return None


def _plain_functions(impl: str):
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if impl == "eager":
        import importlib

        # The eager function is defined per model; llama's is the reference one.
        llama = importlib.import_module("transformers.models.llama.modeling_llama")
        return llama.eager_attention_forward, ALL_MASK_ATTENTION_FUNCTIONS["eager"]
    return ALL_ATTENTION_FUNCTIONS["sdpa"], ALL_MASK_ATTENTION_FUNCTIONS["sdpa"]


def enable(model) -> bool:
    """Switch ``model`` to the cascade-capable attention function; False (and
    the model untouched) when :func:`cascade_support` names a reason."""
    if cascade_support(model) is not None:
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    cfg = _text_config(model)
    impl = _plain_name(cfg._attn_implementation)
    name = PREFIX + impl
    if cfg._attn_implementation == name:
        return True
    plain_attention, plain_mask = _plain_functions(impl)

    def attention(module, query, key, value, attention_mask, *args, ppl_cascade=None, **kwargs):
        if ppl_cascade is None:
            return plain_attention(module, query, key, value, attention_mask, *args, **kwargs)
        if kwargs.get("sliding_window") is not None or kwargs.get("softcap") is not None:
            raise NotImplementedError("cascade attention got a sliding window or soft-capping")
        return ppl_cascade.attend(module, query, key, value, kwargs.get("scaling")), None

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, plain_mask)
    model.set_attn_implementation(name)
    return True


class CascadeBatch:
    """One batch's shared-prefix context, handed to every layer.

    ``shared[layer] = (K_S, V_S)``, each ``[kv_heads, C0, head_dim]``, the
    prefix of every row; or, with ``spans``, one such list per group,
    ``spans[g] = (a, b)`` its rows ``a .. b - 1`` (rows in no span have no
    shared part). The rows' own keys (from the cache layer) are ``[R,
    kv_heads, U + N, head_dim]``: ``U`` left-padded cached-suffix positions
    (row ``r`` has ``own[r]`` real ones), then the ``N`` new positions.
    """

    def __init__(self, shared: list, own: torch.Tensor, U: int, N: int,
                 spans: list[tuple[int, int]] | None = None):
        R = own.shape[0]
        self.groups = [(0, R, shared)] if spans is None else [(a, b, sh) for (a, b), sh in zip(spans, shared)]
        self.U, self.N = U, N
        dev = own.device
        cols = torch.arange(U + N, device=dev)
        qpos = torch.arange(N, device=dev)
        cached_ok = (cols[None, :] >= (U - own)[:, None])[:, None, :] & (cols < U)[None, None, :]
        new_ok = (cols[None, :] >= U) & (cols[None, :] - U <= qpos[:, None])  # [N, U+N] causal
        self._allowed = cached_ok | new_ok[None]  # [R, N, U+N]
        self._bias: dict[tuple[int, torch.dtype], torch.Tensor] = {}

    def _own_bias(self, groups: int) -> torch.Tensor:
        """Additive mask ``[R, 1, groups * N, U + N]`` (0 allowed, -inf not)."""
        key = (groups, torch.float32)
        bias = self._bias.get(key)
        if bias is None:
            R = self._allowed.shape[0]
            b = torch.zeros(self._allowed.shape, dtype=torch.float32, device=self._allowed.device)
            b.masked_fill_(~self._allowed, float("-inf"))
            bias = b[:, None, None].expand(R, 1, groups, self.N, self.U + self.N).reshape(R, 1, groups * self.N, -1)
            self._bias[key] = bias
        return bias

    def attend(self, module, query, key, value, scaling) -> torch.Tensor:
        """``[R, N, heads, head_dim]`` attention output of ``query`` ``[R,
        heads, N, head_dim]`` over each row's shared prefix and its own keys."""
        R, Hq, N, D = query.shape
        Hk = key.shape[1]
        g = Hq // Hk
        scale = scaling if scaling is not None else D ** -0.5
        q = query.reshape(R, Hk, g * N, D)  # head h reads KV head h // g
        s_own = torch.matmul(q, key.transpose(-1, -2)).float().mul_(scale).add_(self._own_bias(g))
        out, lse_own = _partial(s_own, value)  # [R, Hk, g*N, D], [R, Hk, g*N, 1]
        layer = module.layer_idx
        for a, b, shared in self.groups:
            ks, vs = shared[layer]
            n = b - a
            qs = q[a:b].transpose(0, 1).reshape(Hk, n * g * N, D)
            s_sh = torch.matmul(qs, ks.transpose(-1, -2)).float().mul_(scale)
            o_sh, lse_sh = _partial(s_sh, vs)
            o_sh = o_sh.reshape(Hk, n, g * N, D).transpose(0, 1)
            lse_sh = lse_sh.reshape(Hk, n, g * N, 1).transpose(0, 1)
            lse_a = lse_own[a:b]
            lse = torch.logaddexp(lse_a, lse_sh)
            out[a:b].mul_(torch.exp(lse_a - lse)).add_(o_sh.mul_(torch.exp(lse_sh - lse)))
        return out.to(query.dtype).reshape(R, Hq, N, D).transpose(1, 2).contiguous()


def _partial(scores: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(o, lse)`` of one part: ``o = softmax(scores) @ values`` (float32)
    and ``lse = logsumexp(scores)`` over the last dimension, with one
    exponential pass (``scores`` is overwritten). Every query has at least
    one finite score, so the row maximum is finite."""
    m = scores.amax(dim=-1, keepdim=True)
    p = scores.sub_(m).exp_()
    total = p.sum(dim=-1, keepdim=True)
    o = torch.matmul(p.to(values.dtype), values).float().div_(total)
    return o, m.add_(total.log())
