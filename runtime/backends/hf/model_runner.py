"""Execution side of the KV cache: one flush of requests as named phases.

As nano-vllm's ``model_runner.py`` does (``prepare_prefill``, ``run_model``),
a batch goes through short phases, each a function of its own, called in
order by :meth:`CachedTransformer._compute
<ppl.runtime.backends.hf.cached_transformer.CachedTransformer>`:

1. :func:`plan_rows` (and :func:`check_rows`): group the requests into rows;
2. :func:`prepare_inputs`: the index, mask, position and logits-to-keep
   tensors of the batch (:class:`BatchInputs`), built without a per-token
   Python loop;
3. :func:`run_forward`: gather the rows' cached keys and values from the
   :class:`KVPool` and run the model once (:mod:`.cache_adapter`). When
   groups of rows share a prefix (row ``r``: ``base[r]`` positions, its
   group's; :mod:`.shared_prefix`), only the positions after it are
   gathered per row, and attention reads each group's shared part once for
   all its rows (:mod:`.cascade_attention`);
4. :func:`write_back`: the new tokens' keys and values into fresh slots, and
   the trie grows (:mod:`.kv_trie`);
5. :func:`kept_logprobs`: log-softmax of the kept positions, on the device.

Layout. One pool tensor ``pool[slot, layer, k|v, kv_head, head_dim]``: for
each layer ``pool[:, layer, 0]`` / ``pool[:, layer, 1]`` is the ``[capacity,
kv_heads, head_dim]`` block of keys / values. Slot-major, so that a token's
keys and values for every layer are one contiguous chunk, gathered and
written back with a single indexing operation for all layers. Slot 0 is
padding. A batch of ``R`` rows: row ``r`` reuses ``s_r`` cached positions and
computes ``n_r`` new ones. With ``C = max s_r`` and ``N = max n_r`` the key
sequence of every row is ``[pad (C - s_r) | cached s_r | new n_r | pad (N -
n_r)]``: the cached part is left-padded, the new part is right-padded (one
index tensor ``[R, C + N]`` gathers the cached part and leaves room for the
new part, which the forward pass fills in place), so that no query position
ever has all its keys masked (which would put NaNs into the padding). The 2-D
attention mask is zero on padding (when no row is padded, no mask is passed,
so the model keeps its causal fast path), ``position_ids`` are each row's true
positions ``s_r .. s_r + N - 1``, and ``logits_to_keep`` picks each row's
needed positions, so the vocabulary projection runs only where a
log-probability is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ppl.errors import ArgumentError, ForwardError, TokenIdError

from .cache_adapter import forward
from .cascade_attention import CascadeBatch
from .kv_trie import PAD_SLOT, PrefixTrie, SlotPool, TrieNode

__all__ = [
    "Row",
    "BatchInputs",
    "KVPool",
    "plan_rows",
    "check_rows",
    "prepare_inputs",
    "run_forward",
    "write_back",
    "kept_logprobs",
]


class Row:
    """One row of a batch: compute ``target[s:]`` on top of ``s`` cached
    positions; write back KV for positions ``c ..`` (those not cached);
    ``members`` are ``(unique index, prefix)`` answered from this row."""

    __slots__ = ("target", "node", "c", "s", "members")

    def __init__(self, target, node, c, s, members):
        self.target = target
        self.node = node
        self.c = c
        self.s = s
        self.members = members


@dataclass
class BatchInputs:
    """The tensors of one batch (CPU; moved to the device by :func:`run_forward`).

    ``R`` rows; row ``r`` has a shared prefix of ``base[r]`` positions (0:
    none; :mod:`.shared_prefix`), ``C`` cached positions per row after it
    (left-padded: the longest own part) and ``N`` new ones, ``P`` kept
    logits per row; ``s``, ``n``, ``write_from`` per row: cached positions
    reused, positions computed, and the first new position not yet in the
    trie (``c - s``). ``idx`` ``[R, C + N]``: the pool slot of each key
    position (padding and new positions read slot 0); ``attn``: the 2-D
    mask, or None when no row is padded; ``keep`` ``[R, P]``: kept
    positions within the new part; ``keep_sel``: the flat indices of the
    kept logits that answer a request, in row-then-member order.
    """

    R: int
    C: int
    N: int
    P: int
    base: list[int]
    s: list[int]
    n: list[int]
    write_from: list[int]
    ids: torch.Tensor
    positions: torch.Tensor
    idx: torch.Tensor
    attn: torch.Tensor | None
    mask_n: torch.Tensor
    keep: torch.Tensor
    keep_sel: list[int]


class KVPool:
    """The KV pool tensor ``[capacity, layers, k|v, kv_heads, head_dim]``
    (the rows :class:`~.kv_trie.SlotPool` hands out) and the gather buffer
    kept between batches."""

    def __init__(self, capacity: int, n_layers: int, kv_heads: int, head_dim: int, dtype, device) -> None:
        self.tensor = torch.zeros((capacity, n_layers, 2, kv_heads, head_dim), dtype=dtype, device=device)
        self.device = self.tensor.device
        self.bytes_per_slot = n_layers * 2 * kv_heads * head_dim * self.tensor.element_size()
        self._buf: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        return self.tensor.shape[0]

    @property
    def nbytes(self) -> int:
        return self.tensor.numel() * self.tensor.element_size()

    @property
    def buffer_bytes(self) -> int:
        buf = self._buf
        return buf.numel() * buf.element_size() if buf is not None else 0

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """``pool[idx]`` for ``idx`` ``[R, T]``, ``[R, T, layers, k|v, H, D]``,
        written into a buffer kept between batches (a fresh tensor of that
        size per batch costs more in page faults than the copy itself)."""
        R, T = idx.shape
        need = R * T
        pool = self.tensor
        buf = self._buf
        if buf is None or buf.shape[0] < need:
            size = max(need, 0 if buf is None else buf.shape[0] * 3 // 2)
            self._buf = None
            buf = self._buf = torch.empty((size, *pool.shape[1:]), dtype=pool.dtype, device=pool.device)
        flat = buf[:need]
        torch.index_select(pool, 0, idx.reshape(-1).to(self.device), out=flat)
        return flat.view(R, T, *pool.shape[1:])

    def write(self, slots: list[int], kv: torch.Tensor, capacity: int) -> None:
        """``pool[slots] = kv``, growing the tensor to ``capacity`` rows first
        (the slot pool's capacity; amortised doubling)."""
        pool = self.tensor
        if pool.shape[0] < capacity:
            grown = torch.zeros((capacity, *pool.shape[1:]), dtype=pool.dtype, device=pool.device)
            grown[: pool.shape[0]] = pool
            self.tensor = pool = grown
        pool[torch.tensor(slots, device=self.device)] = kv

    def trim_buffer(self, max_bytes: int) -> None:
        """Drop the gather buffer of an outsized batch (larger than
        ``max_bytes`` and than the pool itself)."""
        if self._buf is not None and self.buffer_bytes > max(max_bytes, self.nbytes):
            self._buf = None


# ------------------------------------------------------------------ 1. plan
def plan_rows(todo: list[tuple[tuple[int, ...], int, TrieNode]]) -> list[Row]:
    """Group requests ``(prefix, unique index, deepest cached node)`` into
    rows: a request that is a prefix of another one (and whose last token is
    not far inside the other's cached part) is answered from the longer
    request's row. Sorts ``todo`` in place."""
    if len(todo) > 1:
        todo.sort(key=lambda x: x[0])
    rows: list[Row] = []
    cur: Row | None = None
    for p, i, node in reversed(todo):
        L = len(p)
        if cur is not None and cur.c <= L < len(cur.target) and cur.target[:L] == p:
            if L - 1 < cur.s:
                cur.s = L - 1
            cur.members.append((i, p))
            continue
        c = node.depth
        cur = Row(p, node, c, min(c, L - 1), [(i, p)])
        rows.append(cur)
    return rows


def check_rows(rows: Sequence[Row], vocab_size: int, max_positions: int | None, name: str) -> None:
    """Raise :class:`~ppl.errors.TokenIdError` for a token id outside
    ``0 .. vocab_size - 1`` among the positions to compute, and
    ``ValueError`` for a prefix longer than the model's context."""
    V = vocab_size
    for r in rows:
        new = r.target[r.s :]
        if min(new) < 0 or max(new) >= V:
            for pos in range(r.s, len(r.target)):
                t = r.target[pos]
                if not 0 <= t < V:
                    raise TokenIdError(
                        f"token id {t} at position {pos} of a prefix of length "
                        f"{len(r.target)} is outside the vocabulary of {name!r} "
                        f"(ids must be in 0..{V - 1})"
                    )
    if max_positions is not None:
        longest = max(len(r.target) for r in rows)
        if longest > max_positions:
            raise ArgumentError(
                f"a prefix of length {longest} exceeds the model's maximum context "
                f"of {max_positions} positions"
            )


# -------------------------------------------------------- 2. prepare inputs
def _keep_positions(rows: Sequence[Row], n_t: torch.Tensor) -> tuple[int, torch.Tensor, list[int]]:
    """``(P, keep [R, P], keep_sel)``: the positions within each row's new part
    whose logits are needed (rows with fewer members repeat their first)."""
    R = len(rows)
    P = max(len(r.members) for r in rows)
    if P == 1:
        return 1, (n_t - 1)[:, None], list(range(R))
    keep_rows: list[list[int]] = []
    keep_sel: list[int] = []
    for ri, r in enumerate(rows):
        offs = [len(p) - 1 - r.s for _, p in r.members]
        keep_rows.append(offs + [offs[0]] * (P - len(offs)))
        keep_sel.extend(range(ri * P, ri * P + len(r.members)))
    return P, torch.tensor(keep_rows, dtype=torch.long), keep_sel


def prepare_inputs(rows: Sequence[Row], trie: PrefixTrie, max_positions: int | None,
                   base: int | Sequence[int] = 0) -> BatchInputs:
    """The tensors of the batch (see the module docstring for the layout).

    With ``base[r] > 0`` (one number: every row's) the first ``base[r]``
    positions of row ``r`` are its group's shared prefix
    (:mod:`.shared_prefix`): ``idx`` then gathers only the row's own cached
    positions ``base[r] .. s_r - 1``, and ``C`` is the longest of those."""
    R = len(rows)
    s_list = [r.s for r in rows]
    n_list = [len(r.target) - r.s for r in rows]
    base = [base] * R if isinstance(base, int) else list(base)
    own = [s - b for s, b in zip(s_list, base)]
    C, N = max(own), max(n_list)
    s_t, n_t = torch.tensor(s_list), torch.tensor(n_list)
    cols_n = torch.arange(N)
    mask_n = cols_n[None, :] < n_t[:, None]  # [R, N] real new positions
    ids = torch.zeros((R, N), dtype=torch.long)
    ids[mask_n] = torch.tensor([t for r in rows for t in r.target[r.s :]], dtype=torch.long)
    positions = s_t[:, None] + cols_n[None, :]
    if max_positions is not None:
        positions.clamp_(max=max_positions - 1)
    idx = torch.full((R, C + N), PAD_SLOT, dtype=torch.long)  # pool slot per position
    if C > 0:
        mask_c = torch.arange(C)[None, :] >= (C - torch.tensor(own))[:, None]  # [R, C] real cached
        paths = []
        for r, b in zip(rows, base):
            path = trie.path_slots(r.node)
            paths.append(path[b:] if r.s == r.c else path[b : r.s])
        idx[:, :C][mask_c] = torch.cat(paths)
        attn = torch.cat([mask_c, mask_n], dim=1)
    else:
        attn = mask_n
    # Without padding, pass no mask: the model then uses its causal fast
    # path (and SDPA's native grouped-query attention, no repeated KV).
    padded = min(own) != C or min(n_list) != N
    P, keep, keep_sel = _keep_positions(rows, n_t)
    return BatchInputs(
        R=R, C=C, N=N, P=P, base=base, s=s_list, n=n_list, write_from=[r.c - r.s for r in rows],
        ids=ids, positions=positions, idx=idx, attn=attn if padded else None,
        mask_n=mask_n, keep=keep, keep_sel=keep_sel,
    )


# --------------------------------------------------------------- 3. forward
def run_forward(model, cache_kw: str, kv: KVPool, batch: BatchInputs, name: str,
                shared: list | None = None, spans: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [R, P, width], buffers [R, C + N, layers, k|v, H, D])``: the
    rows' cached KV gathered from ``kv``, one forward pass that fills in the
    new positions. With ``shared`` (per group, per layer ``(K_S, V_S)`` of
    the first ``batch.base[r]`` positions of the group's rows ``spans[g]``,
    :mod:`.shared_prefix`), attention runs the cascade path
    (:mod:`.cascade_attention`) over them and the rows' own parts.
    A failing pass raises :class:`~ppl.errors.ForwardError` naming the batch
    shape (``NotImplementedError`` passes through)."""
    dev = kv.device
    try:
        with torch.inference_mode():
            buffers = kv.gather(batch.idx)
            cascade = None
            if shared is not None:
                own = torch.tensor([s - b for s, b in zip(batch.s, batch.base)], device=dev)
                cascade = CascadeBatch(shared, own, batch.C, batch.N, spans)
            attn = batch.attn if cascade is None else None
            logits = forward(
                model, cache_kw, buffers, batch.C,
                input_ids=batch.ids.to(dev),
                attention_mask=attn.to(dev, torch.long) if attn is not None else None,
                position_ids=batch.positions.to(dev),
                logits_to_keep=batch.keep.to(dev),
                cascade=cascade,
            )
    except NotImplementedError:
        raise
    except Exception as exc:
        shared_part = f"up to {max(batch.base)} shared + " if max(batch.base) else ""
        raise ForwardError(
            f"forward pass of {name!r} failed for a batch of {batch.R} rows "
            f"({shared_part}{batch.C} cached + {batch.N} new positions per row): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return logits, buffers


# ------------------------------------------------------------ 4. write back
def write_back(
    rows: Sequence[Row], batch: BatchInputs, buffers: torch.Tensor,
    kv: KVPool, slots: SlotPool, trie: PrefixTrie, tick: int,
) -> tuple[list[TrieNode], int]:
    """Write the new tokens' KV into fresh slots and grow the trie.

    Returns the trie node of every member, in ``keep_sel`` order, and the
    number of KV entries stored (slots another row of the batch had already
    filled with the same token are freed again)."""
    T = sum(batch.n) - sum(batch.write_from)
    answered: list[TrieNode] = []
    if not T:
        for r in rows:
            r.node.last_used = tick
            answered.extend(r.node for _ in r.members)
        return answered, 0
    with torch.inference_mode():
        cols_n = torch.arange(batch.N)
        mask_w = batch.mask_n & (cols_n[None, :] >= torch.tensor(batch.write_from)[:, None])
        new = buffers[:, batch.C :][mask_w.to(kv.device)]  # [T, layers, k|v, H, D]
        fresh = slots.allocate(T)
        kv.write(fresh, new, slots.capacity)
    pos = 0
    unused: list[int] = []
    for r in rows:
        k_new = len(r.target) - r.c
        nodes, dup = trie.extend(r.node, r.target[r.c :], fresh[pos : pos + k_new], r.target, tick)
        unused.extend(dup)
        pos += k_new
        r.node.last_used = tick
        for _, p in r.members:
            answered.append(r.node if len(p) == r.c else nodes[len(p) - r.c - 1])
    if unused:
        slots.free(unused)
    return answered, T - len(unused)


# -------------------------------------------------------------- 5. log-probs
def kept_logprobs(logits: torch.Tensor, batch: BatchInputs, vocab_size: int) -> np.ndarray:
    """``[members, vocab_size]`` float32 log-softmax of the kept logits
    (computed on the device, the padded logits columns sliced off)."""
    with torch.inference_mode():
        flat = logits.reshape(batch.R * batch.P, logits.shape[-1])
        sel = flat[torch.tensor(batch.keep_sel, device=logits.device), :vocab_size]
        return torch.log_softmax(sel.float(), dim=-1).cpu().numpy()
