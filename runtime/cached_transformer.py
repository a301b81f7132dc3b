"""A KV-cached, batching language model on a Hugging Face causal LM.

:class:`CachedTransformer` answers ``log p(. | x_{1:L})`` for many prefixes in
**one** forward pass. Prefixes live in a :class:`~ppl.runtime.kv_trie.PrefixTrie`
whose nodes own the keys and values of their own token once, however many
particles share the prefix; a request costs only the tokens not cached yet.

Layout (execution side; the memory side is in :mod:`ppl.runtime.kv_trie`):

- One pool tensor ``pool[slot, layer, k|v, kv_head, head_dim]``: for each layer
  ``pool[:, layer, 0]`` / ``pool[:, layer, 1]`` is the ``[capacity, kv_heads,
  head_dim]`` block of keys / values. Slot-major, so that a token's keys and
  values for every layer are one contiguous chunk, gathered and written back
  with a single indexing operation for all layers. Shapes come from a one-token
  probe pass at construction; capacity grows by doubling. Slot 0 is padding.
- A batch of ``R`` rows: row ``r`` reuses ``s_r`` cached positions and computes
  ``n_r`` new ones. With ``C = max s_r`` and ``N = max n_r`` the key sequence of
  every row is ``[pad (C - s_r) | cached s_r | new n_r | pad (N - n_r)]``: the
  cached part is left-padded, the new part is right-padded (one index tensor
  ``[R, C + N]`` gathers the cached part and leaves room for the new part,
  which the forward pass fills in place, see :mod:`.kv_cache_adapter`), so that no
  query position ever has all its keys masked (which would put NaNs into the
  padding). The 2-D attention mask is zero on padding (when no row is padded,
  no mask is passed, so the model keeps its causal fast path), ``position_ids`` are each
  row's true positions ``s_r .. s_r + N - 1``, and ``logits_to_keep`` picks each
  row's needed positions, so the vocabulary projection runs only where a
  log-probability is asked for.
- After the pass the new tokens' keys and values are written into fresh slots
  (one masked gather and one scatter for all layers) and the trie grows.

Requests in one batch that are prefixes of another request share its row: the
shorter request reads the logits at its own position in the longer row.

Last-token log-probs of fully cached prefixes: a bounded LRU cache of recent
log-prob vectors per trie node (``logprob_cache_bytes``) answers repeated
requests without a forward pass (counted in ``cache_hits``). When it has no
entry (evicted from it, or the prefix was cached only as an ancestor of a longer
request), the last token alone is recomputed from the cached keys and values
(one token of work, nothing written back).

Returned arrays are float32, read-only, and may be shared between callers and
with the cache: copy before modifying in place.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch

from .kv_cache_adapter import build_cache, cache_kwarg_name, probe_kv_shape
from .kv_trie import PAD_SLOT, LRUEvictor, Pin, PrefixTrie, SlotPool, TrieNode
from .lm import LanguageModel
from .vocab import vocab_tables


class ModelError(RuntimeError):
    """The model's forward pass raised; the message names the batch shape."""


class TokenIdError(ValueError):
    """A prefix holds a token id outside the vocabulary."""


class _Row:
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


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class CachedTransformer(LanguageModel):
    """KV-cached batched next-token log-probabilities of a HF causal LM.

    Args:
        model: a loaded transformers causal LM (5.x).
        tokenizer: its tokenizer; may be ``None`` if ``vocab``, ``vocab_bytes``
            and ``eos_token_id`` are given.
        device: default CUDA when available, else CPU.
        dtype: default ``bfloat16`` on CUDA, ``float32`` on CPU.
        memory_budget_bytes: KV bytes the trie may hold before unpinned nodes
            are evicted, least recently used leaves first (``None``: no limit).
        name: shown in ``repr``.
        vocab, vocab_bytes, eos_token_id, special_ids: override what is read
            from the tokenizer.
        logprob_cache_bytes: bound of the per-node last-token log-prob cache.
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        memory_budget_bytes: int | None = None,
        name: str | None = None,
        vocab: Sequence[str] | None = None,
        vocab_bytes: Sequence[bytes] | None = None,
        eos_token_id: int | None = None,
        special_ids: Sequence[int] | None = None,
        logprob_cache_bytes: int = 64 << 20,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        if dtype is None:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.dtype = dtype
        if getattr(model, "device", None) != self.device or getattr(model, "dtype", None) != dtype:
            model = model.to(device=self.device, dtype=dtype)  # skipped when already there
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "name_or_path", None) or type(model).__name__

        if tokenizer is not None:
            t_texts, t_bytes, t_eos, t_special = vocab_tables(tokenizer)
        else:
            if vocab is None or vocab_bytes is None or eos_token_id is None:
                raise ValueError(
                    "CachedTransformer without a tokenizer needs vocab=, vocab_bytes= and "
                    "eos_token_id= keyword arguments"
                )
            t_texts, t_bytes, t_eos, t_special = None, None, None, frozenset()
        self.vocab = list(vocab) if vocab is not None else t_texts
        self.vocab_bytes = list(vocab_bytes) if vocab_bytes is not None else t_bytes
        self.eos_token_id = int(eos_token_id if eos_token_id is not None else t_eos)
        self.special_ids = frozenset(special_ids) if special_ids is not None else t_special
        if len(self.vocab) != len(self.vocab_bytes):
            raise ValueError(
                f"vocab has {len(self.vocab)} entries but vocab_bytes has {len(self.vocab_bytes)}"
            )
        out_emb = model.get_output_embeddings()
        self._logits_width = (
            int(out_emb.weight.shape[0]) if out_emb is not None else int(model.config.vocab_size)
        )
        if len(self.vocab) > self._logits_width:
            raise ValueError(
                f"the tokenizer has {len(self.vocab)} tokens but the model's logits have only "
                f"{self._logits_width}; pass a matching tokenizer or vocab="
            )
        if not 0 <= self.eos_token_id < len(self.vocab):
            raise ValueError(f"eos_token_id {self.eos_token_id} is outside the vocabulary")
        cfg = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
        self._max_positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        self._cache_kw = cache_kwarg_name(self.model)

        # memory (trie + slots), policy (LRU), execution (pool tensors, forward)
        self._slots = SlotPool()
        self._trie = PrefixTrie(self._slots, on_evict=self._forget_node)
        self._evictor = LRUEvictor()
        self.memory_budget_bytes = memory_budget_bytes
        # [capacity, layers, k|v, kv_heads, head_dim]; shapes read from one probe pass
        try:
            n_layers, kv_heads, head_dim, kv_dtype = probe_kv_shape(self.model, self._cache_kw, self.device)
        except NotImplementedError:
            raise
        except Exception as exc:
            raise ModelError(
                f"a one-token probe forward pass of {self.name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        self._pool = torch.zeros(
            (self._slots.capacity, n_layers, 2, kv_heads, head_dim), dtype=kv_dtype, device=self.device
        )
        self._bytes_per_slot = n_layers * 2 * kv_heads * head_dim * self._pool.element_size()
        self._buf: torch.Tensor | None = None  # gather buffer, see _gather
        self.max_buffer_bytes = 256 << 20  # kept between batches up to this (or the pool's size)
        self._lp_cache: OrderedDict[TrieNode, np.ndarray] = OrderedDict()
        self._lp_cache_bytes = 0
        self.logprob_cache_bytes = int(logprob_cache_bytes)
        self._tick = 0
        self._reset_counters()

    # ------------------------------------------------------------- protocol
    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise ValueError(f"{self!r} has no tokenizer: encode() is unavailable")
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of ``prompt``, with the BOS token in front when the
        tokenizer adds one. A prompt that encodes to nothing starts with BOS
        (or, for models without one, EOS, as GPT-2 does) so that there is a
        position to predict from."""
        ids = self.encode(prompt) if prompt else []
        tok = self.tokenizer
        bos = getattr(tok, "bos_token_id", None) if tok is not None else None
        if bos is not None and (not ids or ids[0] != bos):
            with_special = tok.encode(prompt or "", add_special_tokens=True)
            if with_special[:1] == [bos]:
                ids = [bos] + ids
        if not ids:
            ids = [bos if bos is not None else self.eos_token_id]
        return ids

    def decode(self, token_ids: Sequence[int]) -> str:
        special = self.special_ids
        eos = self.eos_token_id
        ids = [int(t) for t in token_ids if int(t) != eos and int(t) not in special]
        if self.tokenizer is not None:
            return self.tokenizer.decode(
                ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        return b"".join(self.vocab_bytes[i] for i in ids).decode("utf-8", errors="replace")

    def pin(self, prefix: Sequence[int]) -> Pin:
        """Keep the node of ``prefix`` and its ancestors from eviction while the
        returned object is alive. If ``prefix`` is not cached yet, the pin is
        pending and attaches when a forward pass creates the node."""
        return self._trie.pin(prefix)

    def __repr__(self) -> str:
        return f"CachedTransformer({self.name!r}, device={self.device}, dtype={self.dtype})"

    # ------------------------------------------------------------- counters
    def _reset_counters(self) -> None:
        self._c = dict(
            forward_passes=0,
            requests=0,
            tokens_requested=0,
            tokens_computed=0,
            tokens_stored=0,
            tokens_reused=0,
            cache_hits=0,
            evictions=0,
        )
        self._rows_per_pass: list[int] = []

    def reset_stats(self) -> None:
        self._reset_counters()

    def stats(self) -> dict:
        """Counters of work done since construction (or :meth:`reset_stats`).

        - ``forward_passes``: model calls; ``rows_per_pass``: their row counts
          (``rows_per_pass_mean`` the mean);
        - ``requests``: prefixes asked for (duplicates included);
        - ``tokens_requested``: total length of those prefixes;
        - ``tokens_computed``: positions run through the model (padding
          excluded); ``tokens_stored``: new KV entries written into the trie;
          ``tokens_reused``: cached positions read from the pool;
        - ``cache_hits``: requests answered from the log-prob cache;
        - ``evictions``: trie nodes evicted; ``nodes``: nodes held;
          ``bytes_held``: KV bytes those nodes hold; ``pool_bytes``: size of
          the pool tensor; ``buffer_bytes``: the gather buffer kept between
          batches (the largest batch's keys and values);
          ``pinned_pending``: pins waiting for their prefix.
        """
        rows = self._rows_per_pass
        d = dict(self._c)
        d["rows_per_pass"] = list(rows)
        d["rows_per_pass_mean"] = (sum(rows) / len(rows)) if rows else 0.0
        d["nodes"] = self._trie.n_nodes
        d["bytes_held"] = self.bytes_held
        d["pool_bytes"] = self._pool.numel() * self._pool.element_size()
        d["buffer_bytes"] = self._buf.numel() * self._buf.element_size() if self._buf is not None else 0
        d["logprob_cache_entries"] = len(self._lp_cache)
        d["pinned_pending"] = self._trie.pending_pins
        return d

    @property
    def bytes_held(self) -> int:
        return self._slots.in_use * self._bytes_per_slot

    # ----------------------------------------------------------- the batch
    def batch_next_token_logprobs(self, prefixes: Sequence[Sequence[int]]) -> list[np.ndarray]:
        prefixes = [p if type(p) is tuple else tuple(int(t) for t in p) for p in prefixes]
        c = self._c
        c["requests"] += len(prefixes)
        c["tokens_requested"] += sum(map(len, prefixes))
        unique: dict[tuple[int, ...], int] = {}
        for p in prefixes:
            unique.setdefault(p, len(unique))
        self._tick += 1
        tick = self._tick
        trie = self._trie
        lp_cache = self._lp_cache
        results: list[np.ndarray | None] = [None] * len(unique)
        todo: list[tuple[tuple[int, ...], int, TrieNode]] = []
        for i, p in enumerate(unique):
            if not p:
                raise ValueError(
                    "cannot compute next-token log-probs of an empty prefix: start it with "
                    "prompt_ids(...) (which adds BOS, or EOS for models without one)"
                )
            node = trie.match(p)
            if node.depth == len(p):
                lp = lp_cache.get(node)
                if lp is not None:
                    lp_cache.move_to_end(node)
                    node.last_used = tick
                    results[i] = lp
                    c["cache_hits"] += 1
                    trie.remember(p, node)
                    continue
            todo.append((p, i, node))
        if todo:
            self._compute(todo, results, tick)
            buf = self._buf
            if buf is not None and buf.numel() * buf.element_size() > max(
                self.max_buffer_bytes, self._pool.numel() * self._pool.element_size()
            ):
                self._buf = None  # an outsized batch: do not hold its buffer
        self._maybe_evict()
        return [results[unique[p]] for p in prefixes]

    def _plan(self, todo) -> list[_Row]:
        """Group requests into rows: a request that is a prefix of another one
        (and whose last token is not far inside the other's cached part) is
        answered from the longer request's row."""
        if len(todo) > 1:
            todo.sort(key=lambda x: x[0])
        rows: list[_Row] = []
        cur: _Row | None = None
        for p, i, node in reversed(todo):
            L = len(p)
            if cur is not None and cur.c <= L < len(cur.target) and cur.target[:L] == p:
                if L - 1 < cur.s:
                    cur.s = L - 1
                cur.members.append((i, p))
                continue
            c = node.depth
            cur = _Row(p, node, c, min(c, L - 1), [(i, p)])
            rows.append(cur)
        return rows

    def _check_tokens(self, rows: list[_Row]) -> None:
        V = len(self.vocab)
        for r in rows:
            new = r.target[r.s :]
            if min(new) < 0 or max(new) >= V:
                for pos in range(r.s, len(r.target)):
                    t = r.target[pos]
                    if not 0 <= t < V:
                        raise TokenIdError(
                            f"token id {t} at position {pos} of a prefix of length "
                            f"{len(r.target)} is outside the vocabulary of {self.name!r} "
                            f"(ids must be in 0..{V - 1})"
                        )
        if self._max_positions is not None:
            longest = max(len(r.target) for r in rows)
            if longest > self._max_positions:
                raise ValueError(
                    f"a prefix of length {longest} exceeds the model's maximum context "
                    f"of {self._max_positions} positions"
                )

    def _compute(self, todo, results, tick: int) -> None:
        rows = self._plan(todo)
        self._check_tokens(rows)
        trie = self._trie
        dev = self.device
        R = len(rows)
        s_list = [r.s for r in rows]
        n_list = [len(r.target) - r.s for r in rows]
        wf_list = [r.c - r.s for r in rows]
        C = max(s_list)
        N = max(n_list)
        s_t = torch.tensor(s_list)
        n_t = torch.tensor(n_list)
        cols_n = torch.arange(N)
        mask_n = cols_n[None, :] < n_t[:, None]  # [R, N] real new positions
        ids = torch.zeros((R, N), dtype=torch.long)
        ids[mask_n] = torch.tensor([t for r in rows for t in r.target[r.s :]], dtype=torch.long)
        positions = s_t[:, None] + cols_n[None, :]
        if self._max_positions is not None:
            positions.clamp_(max=self._max_positions - 1)
        idx = torch.full((R, C + N), PAD_SLOT, dtype=torch.long)  # pool slot per position
        if C > 0:
            mask_c = torch.arange(C)[None, :] >= (C - s_t)[:, None]  # [R, C] real cached
            paths = []
            for r in rows:
                path = trie.path_slots(r.node)
                paths.append(path if r.s == r.c else path[: r.s])
            idx[:, :C][mask_c] = torch.cat(paths)
            attn = torch.cat([mask_c, mask_n], dim=1)
        else:
            attn = mask_n
        # Without padding, pass no mask: the model then uses its causal fast
        # path (and SDPA's native grouped-query attention, no repeated KV).
        padded = min(s_list) != C or min(n_list) != N
        # positions (within the new part) whose logits are needed
        P = max(len(r.members) for r in rows)
        if P == 1:
            keep = (n_t - 1)[:, None]
            keep_sel = list(range(R))
        else:
            keep_rows: list[list[int]] = []
            keep_sel = []
            for ri, r in enumerate(rows):
                offs = [len(p) - 1 - r.s for _, p in r.members]
                keep_rows.append(offs + [offs[0]] * (P - len(offs)))
                keep_sel.extend(range(ri * P, ri * P + len(r.members)))
            keep = torch.tensor(keep_rows, dtype=torch.long)

        try:
            with torch.inference_mode():
                # [R, C + N, layers, k|v, H, D]: the prefixes' KV, room for the new tokens
                buffers = self._gather(idx)
                cache = build_cache(self.model.config, buffers, C)
                out = self.model(
                    input_ids=ids.to(dev),
                    attention_mask=attn.to(dev, torch.long) if padded else None,
                    position_ids=positions.to(dev),
                    use_cache=True,
                    logits_to_keep=keep.to(dev),
                    **{self._cache_kw: cache},
                )
                logits = out.logits
        except NotImplementedError:
            raise
        except Exception as exc:
            raise ModelError(
                f"forward pass of {self.name!r} failed for a batch of {R} rows "
                f"({C} cached + {N} new positions per row): {type(exc).__name__}: {exc}"
            ) from exc
        c = self._c
        c["forward_passes"] += 1
        self._rows_per_pass.append(R)
        n_computed = sum(n_list)
        c["tokens_computed"] += n_computed
        c["tokens_reused"] += sum(s_list)

        # ---- write the new tokens' KV back into fresh slots
        T = n_computed - sum(wf_list)
        answered: list[TrieNode] = []  # node of each member, in keep_sel order
        if T:
            with torch.inference_mode():
                mask_w = mask_n & (cols_n[None, :] >= torch.tensor(wf_list)[:, None])
                new = buffers[:, C:][mask_w.to(dev)]  # [T, layers, k|v, H, D]
                slots = self._slots.allocate(T)
                self._ensure_pool()
                self._pool[torch.tensor(slots, device=dev)] = new
            pos = 0
            unused: list[int] = []
            for r in rows:
                k_new = len(r.target) - r.c
                nodes, dup = trie.extend(
                    r.node, r.target[r.c :], slots[pos : pos + k_new], r.target, tick
                )
                unused.extend(dup)
                pos += k_new
                r.node.last_used = tick
                for _, p in r.members:
                    answered.append(r.node if len(p) == r.c else nodes[len(p) - r.c - 1])
            if unused:
                self._slots.free(unused)
            c["tokens_stored"] += T - len(unused)
        else:
            for r in rows:
                r.node.last_used = tick
                answered.extend(r.node for _ in r.members)

        # ---- log-probs of the kept positions
        with torch.inference_mode():
            V = len(self.vocab)
            flat = logits.reshape(R * P, logits.shape[-1])
            sel = flat[torch.tensor(keep_sel, device=dev), :V]
            lp = torch.log_softmax(sel.float(), dim=-1).cpu().numpy()
        k = 0
        for r in rows:
            for i, p in r.members:
                arr = lp[k] if len(keep_sel) == 1 else lp[k].copy()
                arr.flags.writeable = False
                results[i] = arr
                self._remember(p, answered[k], arr)
                k += 1

    def _remember(self, prefix, node: TrieNode, arr: np.ndarray) -> None:
        self._trie.remember(prefix, node)
        if self.logprob_cache_bytes <= 0:
            return
        cache = self._lp_cache
        old = cache.pop(node, None)
        if old is not None:
            self._lp_cache_bytes -= old.nbytes
        cache[node] = arr
        self._lp_cache_bytes += arr.nbytes
        while self._lp_cache_bytes > self.logprob_cache_bytes and cache:
            _, old = cache.popitem(last=False)
            self._lp_cache_bytes -= old.nbytes

    def _forget_node(self, node: TrieNode) -> None:
        old = self._lp_cache.pop(node, None)
        if old is not None:
            self._lp_cache_bytes -= old.nbytes

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        """``pool[idx]`` for ``idx`` ``[R, T]``, written into a buffer kept
        between batches (a fresh tensor of that size per batch costs more in
        page faults than the copy itself)."""
        R, T = idx.shape
        need = R * T
        buf = self._buf
        if buf is None or buf.shape[0] < need:
            size = max(need, 0 if buf is None else buf.shape[0] * 3 // 2)
            self._buf = None
            buf = self._buf = torch.empty(
                (size, *self._pool.shape[1:]), dtype=self._pool.dtype, device=self._pool.device
            )
        flat = buf[:need]
        torch.index_select(self._pool, 0, idx.reshape(-1).to(self.device), out=flat)
        return flat.view(R, T, *self._pool.shape[1:])

    def _ensure_pool(self) -> None:
        """Grow the pool tensor to the slot pool's capacity (amortised doubling)."""
        capacity = self._slots.capacity
        pool = self._pool
        if pool.shape[0] < capacity:
            grown = torch.zeros((capacity, *pool.shape[1:]), dtype=pool.dtype, device=pool.device)
            grown[: pool.shape[0]] = pool
            self._pool = grown

    def _maybe_evict(self) -> None:
        budget = self.memory_budget_bytes
        if budget is None:
            return
        over = self.bytes_held - budget
        if over > 0:
            n = math.ceil(over / self._bytes_per_slot)
            self._c["evictions"] += self._evictor.evict(self._trie, n)

    # ------------------------------------------------------------ checking
    def check_integrity(self) -> None:
        """Raise ``AssertionError`` unless the trie, the slots and the counters
        agree: every node has a distinct non-padding slot, the slot pool counts
        exactly the nodes' slots, the leaf set is the childless nodes."""
        trie = self._trie
        seen: set[int] = set()
        stack = [trie.root]
        n = 0
        leaves = set()
        while stack:
            node = stack.pop()
            for t, child in node.children.items():
                if child.token != t or child.parent is not node or child.depth != node.depth + 1:
                    raise AssertionError(f"broken link at {child!r}")
                if child.slot == PAD_SLOT or child.slot in seen:
                    raise AssertionError(f"slot {child.slot} of {child!r} is padding or shared")
                seen.add(child.slot)
                n += 1
                if not child.children:
                    leaves.add(child)
                stack.append(child)
        if n != trie.n_nodes:
            raise AssertionError(f"trie counts {trie.n_nodes} nodes, found {n}")
        if self._slots.in_use != n:
            raise AssertionError(f"{self._slots.in_use} slots in use for {n} nodes")
        if leaves != trie._leaves:
            raise AssertionError("leaf set out of date")
        if seen and max(seen) >= self._pool.shape[0]:
            raise AssertionError("a slot lies outside the pool tensor")
