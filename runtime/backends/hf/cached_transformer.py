"""A KV-cached, batching language model on a Hugging Face causal LM.

:class:`CachedTransformer` answers ``log p(. | x_{1:L})`` for many prefixes in
**one** forward pass. Prefixes live in a :class:`~.kv_trie.PrefixTrie` whose
nodes own the keys and values of their own token once, however many
particles share the prefix; a request costs only the tokens not cached yet.

This module orchestrates; the parts are kept apart as in nano-vllm:

- memory: :mod:`.kv_trie` (trie, slot pool, pins, the LRU eviction policy,
  the invariants);
- execution: :mod:`.model_runner` (the KV pool tensor and one batch as named
  phases: plan, prepare inputs, forward, write back, log-probs);
- the transformers cache and attention API: :mod:`.cache_adapter` only.

Requests in one batch that are prefixes of another request share its row: the
shorter request reads the logits at its own position in the longer row.
Identical requests are computed once.

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

from ppl.errors import ArgumentError, ForwardError

from ...lm import LanguageModel
from ...scheduler import model_lock
from . import cascade_attention
from . import model_runner as runner
from .cache_adapter import cache_kwarg_name, logits_width, max_positions, probe_kv_shape
from .devices import default_device, default_dtype
from .families import check_family
from .kv_trie import LRUEvictor, Pin, PrefixTrie, SlotPool, TrieNode
from .shared_prefix import SharedPrefixes
from .tokenizer_text import TokenizerText
from .vocab import vocab_tables

__all__ = ["CachedTransformer", "LogprobCache"]


class LogprobCache:
    """Recent last-token log-prob vectors per trie node, LRU, at most
    ``max_bytes`` in all (0 disables it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[TrieNode, np.ndarray] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, node: TrieNode) -> np.ndarray | None:
        lp = self._entries.get(node)
        if lp is not None:
            self._entries.move_to_end(node)
        return lp

    def put(self, node: TrieNode, arr: np.ndarray) -> None:
        if self.max_bytes <= 0:
            return
        entries = self._entries
        self.forget(node)
        entries[node] = arr
        self.nbytes += arr.nbytes
        while self.nbytes > self.max_bytes and entries:
            _, old = entries.popitem(last=False)
            self.nbytes -= old.nbytes

    def forget(self, node: TrieNode) -> None:
        old = self._entries.pop(node, None)
        if old is not None:
            self.nbytes -= old.nbytes

    def check_integrity(self) -> None:
        """Raise ``AssertionError`` unless the byte count is right and every
        entry belongs to a node still in the trie."""
        if self.nbytes != sum(a.nbytes for a in self._entries.values()):
            raise AssertionError("log-prob cache byte count out of date")
        if any(node.parent is None for node in self._entries):
            raise AssertionError("log-prob cache holds an evicted node")


class CachedTransformer(TokenizerText, LanguageModel):
    """KV-cached batched next-token log-probabilities of a HF causal LM.

    Args:
        model: a loaded transformers causal LM (5.x).
        tokenizer: its tokenizer; may be ``None`` if ``vocab``, ``vocab_bytes``
            and ``eos_token_id`` are given.
        device, dtype: defaults as in :mod:`.devices` (CUDA when available,
            else CPU; bfloat16 on GPUs that compute it natively, float16 on
            older ones, float32 elsewhere).
        memory_budget_bytes: KV bytes the trie may hold before unpinned nodes
            are evicted, least recently used leaves first (``None``: no limit).
        name: shown in ``repr``.
        vocab, vocab_bytes, eos_token_id, special_ids: override what is read
            from the tokenizer.
        logprob_cache_bytes: bound of the per-node last-token log-prob cache.
        cascade: attend to the prefix each group of rows of a batch shares
            (one per prompt, say) once for all its rows
            (:mod:`.cascade_attention`, :mod:`.shared_prefix`). ``None``
            (default): wherever the architecture supports it
            (:attr:`cascade_reason` says why not); ``False``: never (the
            plain path); ``True``: raise ``NotImplementedError`` if it cannot.
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
        cascade: bool | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype if dtype is not None else default_dtype(self.device)
        if getattr(model, "device", None) != self.device or getattr(model, "dtype", None) != self.dtype:
            model = model.to(device=self.device, dtype=self.dtype)  # skipped when already there
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "name_or_path", None) or type(model).__name__
        check_family(self.model, self.name)  # exact through the cache, or refused here
        self._set_vocab(tokenizer, vocab, vocab_bytes, eos_token_id, special_ids)
        self._max_positions = max_positions(model)
        self._cache_kw = cache_kwarg_name(self.model)

        # memory (trie + slots), policy (LRU), execution (pool tensor, forward)
        self._slots = SlotPool()
        self._trie = PrefixTrie(self._slots, on_evict=self._forget_node, lock=model_lock(self))
        self._evictor = LRUEvictor()
        self.memory_budget_bytes = memory_budget_bytes
        self._kv = self._build_kv_pool()
        self._bytes_per_slot = self._kv.bytes_per_slot
        self.max_buffer_bytes = 256 << 20  # gather buffer kept up to this (or the pool's size)
        self._lp_cache = LogprobCache(logprob_cache_bytes)
        self._set_cascade(cascade)
        self._tick = 0
        self._reset_counters()

    def _set_vocab(self, tokenizer, vocab, vocab_bytes, eos_token_id, special_ids) -> None:
        """``vocab``, ``vocab_bytes``, ``eos_token_id``, ``special_ids``: from the
        tokenizer, overridden by the arguments given; checked against the model."""
        if tokenizer is not None:
            t_texts, t_bytes, t_eos, t_special = vocab_tables(tokenizer)
        else:
            if vocab is None or vocab_bytes is None or eos_token_id is None:
                raise ArgumentError(
                    "CachedTransformer without a tokenizer needs vocab=, vocab_bytes= and "
                    "eos_token_id= keyword arguments"
                )
            t_texts, t_bytes, t_eos, t_special = None, None, None, frozenset()
        self.vocab = list(vocab) if vocab is not None else t_texts
        self.vocab_bytes = list(vocab_bytes) if vocab_bytes is not None else t_bytes
        self.eos_token_id = int(eos_token_id if eos_token_id is not None else t_eos)
        self.special_ids = frozenset(special_ids) if special_ids is not None else t_special
        if len(self.vocab) != len(self.vocab_bytes):
            raise ArgumentError(
                f"vocab has {len(self.vocab)} entries but vocab_bytes has {len(self.vocab_bytes)}"
            )
        self._logits_width = logits_width(self.model)
        if len(self.vocab) > self._logits_width:
            raise ArgumentError(
                f"the tokenizer has {len(self.vocab)} tokens but the model's logits have only "
                f"{self._logits_width}; pass a matching tokenizer or vocab="
            )
        if not 0 <= self.eos_token_id < len(self.vocab):
            raise ArgumentError(f"eos_token_id {self.eos_token_id} is outside the vocabulary")

    def _set_cascade(self, cascade: bool | None) -> None:
        """Choose the attention path for this model, explicitly (see ``cascade``)."""
        self._shared = SharedPrefixes(self._bytes_per_slot, self.device)
        reason = "disabled (cascade=False)" if cascade is False else cascade_attention.cascade_support(self.model)
        if reason is None:
            cascade_attention.enable(self.model)
        elif cascade:
            raise NotImplementedError(f"cascade attention is not available for {self.name!r}: {reason}")
        self.cascade_reason = reason  # None: the cascade path is on

    @property
    def uses_cascade(self) -> bool:
        return self.cascade_reason is None

    def _build_kv_pool(self) -> runner.KVPool:
        """The pool tensor, shaped by one probe pass of one token."""
        try:
            n_layers, kv_heads, head_dim, kv_dtype = probe_kv_shape(self.model, self._cache_kw, self.device)
        except NotImplementedError:
            raise
        except Exception as exc:
            raise ForwardError(
                f"a one-token probe forward pass of {self.name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return runner.KVPool(self._slots.capacity, n_layers, kv_heads, head_dim, kv_dtype, self.device)

    # ------------------------------------------------------------- protocol
    def pin(self, prefix: Sequence[int]) -> Pin:
        """Keep the node of ``prefix`` and its ancestors from eviction while the
        returned object is alive. If ``prefix`` is not cached yet, the pin is
        pending and attaches when a forward pass creates the node. Takes the
        model's lock (:func:`~ppl.runtime.scheduler.model_lock`): inferences in
        other threads may be running batches on this model."""
        with model_lock(self):
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
            kv_bytes_copied=0,
            cascade_passes=0,
            shared_groups=0,
            shared_builds=0,
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
          batches (the largest batch's keys and values) plus the shared-prefix
          buffer; ``kv_bytes_copied``: KV bytes copied (gathers, shared-prefix
          builds, writes back); ``cascade_passes``: forward passes that took
          the cascade path; ``shared_groups``: groups of rows those passes
          attended to a shared prefix for (one per pass with one prompt);
          ``shared_builds``: shared-prefix buffers built; ``shared_buffers``:
          buffers kept now, ``shared_prefix_tokens``: the positions they hold;
          ``pinned_pending``: pins waiting for their prefix.
        """
        rows = self._rows_per_pass
        d = dict(self._c)
        d["rows_per_pass"] = list(rows)
        d["rows_per_pass_mean"] = (sum(rows) / len(rows)) if rows else 0.0
        d["nodes"] = self._trie.n_nodes
        d["bytes_held"] = self.bytes_held
        d["pool_bytes"] = self._kv.nbytes
        d["buffer_bytes"] = self._kv.buffer_bytes + self._shared.nbytes
        d["shared_prefix_tokens"] = self._shared.tokens
        d["shared_buffers"] = len(self._shared.buffers)
        d["logprob_cache_entries"] = len(self._lp_cache)
        d["pinned_pending"] = self._trie.pending_pins
        return d

    @property
    def bytes_held(self) -> int:
        return self._slots.in_use * self._bytes_per_slot

    @property
    def max_shared_bytes(self) -> int:
        """Bound of the bytes of the shared-prefix buffers kept between
        batches (:mod:`.shared_prefix`; 1 GiB by default)."""
        return self._shared.max_bytes

    @max_shared_bytes.setter
    def max_shared_bytes(self, value: int) -> None:
        self._shared.max_bytes = int(value)

    @property
    def logprob_cache_bytes(self) -> int:
        """Bound of the last-token log-prob cache (0 disables it)."""
        return self._lp_cache.max_bytes

    @logprob_cache_bytes.setter
    def logprob_cache_bytes(self, value: int) -> None:
        self._lp_cache.max_bytes = int(value)

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
        results: list[np.ndarray | None] = [None] * len(unique)
        todo = self._answer_cached(unique, results)
        if todo:
            self._compute(todo, results, self._tick)
            self._kv.trim_buffer(self.max_buffer_bytes)
        self._maybe_evict()
        return [results[unique[p]] for p in prefixes]

    def _answer_cached(self, unique: dict, results: list) -> list[tuple[tuple[int, ...], int, TrieNode]]:
        """Fill ``results`` from the log-prob cache where it can; return the
        requests left, ``(prefix, unique index, deepest cached node)``."""
        tick, trie, lp_cache, c = self._tick, self._trie, self._lp_cache, self._c
        todo: list[tuple[tuple[int, ...], int, TrieNode]] = []
        for i, p in enumerate(unique):
            if not p:
                raise ArgumentError(
                    "cannot compute next-token log-probs of an empty prefix: start it with "
                    "prompt_ids(...) (which adds BOS, or EOS for models without one)"
                )
            node = trie.match(p)
            if node.depth == len(p):
                lp = lp_cache.get(node)
                if lp is not None:
                    node.last_used = tick
                    results[i] = lp
                    c["cache_hits"] += 1
                    trie.remember(p, node)
                    continue
            todo.append((p, i, node))
        return todo

    def _compute(self, todo, results: list, tick: int) -> None:
        """One forward pass for the requests ``todo``, phase by phase
        (:mod:`.model_runner`)."""
        rows = runner.plan_rows(todo)
        runner.check_rows(rows, len(self.vocab), self._max_positions, self.name)
        plan = self._shared.select(rows, self._trie, self._kv.tensor) if self.uses_cascade else None
        if plan is not None:
            rows = plan.rows  # group by group
        batch = runner.prepare_inputs(rows, self._trie, self._max_positions, plan.base if plan else 0)
        logits, buffers = runner.run_forward(self.model, self._cache_kw, self._kv, batch, self.name,
                                             plan.shared if plan else None, plan.spans if plan else None)
        c = self._c
        c["forward_passes"] += 1
        if plan is not None:
            c["cascade_passes"] += 1
            c["shared_groups"] += len(plan.spans)
            c["shared_builds"] += plan.built
            c["kv_bytes_copied"] += plan.copied
        c["kv_bytes_copied"] += batch.idx.numel() * self._bytes_per_slot
        self._rows_per_pass.append(batch.R)
        c["tokens_computed"] += sum(batch.n)
        c["tokens_reused"] += sum(batch.s)
        answered, stored = runner.write_back(rows, batch, buffers, self._kv, self._slots, self._trie, tick)
        c["tokens_stored"] += stored
        c["kv_bytes_copied"] += stored * self._bytes_per_slot
        lp = runner.kept_logprobs(logits, batch, len(self.vocab))
        single = len(batch.keep_sel) == 1
        k = 0
        for r in rows:
            for i, p in r.members:
                arr = lp[k] if single else lp[k].copy()
                arr.flags.writeable = False
                results[i] = arr
                self._trie.remember(p, answered[k])
                self._lp_cache.put(answered[k], arr)
                k += 1

    def _forget_node(self, node: TrieNode) -> None:
        self._lp_cache.forget(node)
        self._shared.forget(node)

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
        """Raise ``AssertionError`` unless the memory invariants hold: those of
        the trie (:meth:`~.kv_trie.PrefixTrie.check_integrity`, with the pool
        tensor's size) and of the log-prob cache."""
        self._trie.check_integrity(pool_rows=self._kv.rows)
        self._lp_cache.check_integrity()
