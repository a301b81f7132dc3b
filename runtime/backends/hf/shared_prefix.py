"""The shared prefix of a batch: one contiguous copy of its keys and values,
kept across batches and keyed by its trie node.

SMC particles extend one prompt. Every row of a batch then descends from a
common trie node ``A`` (depth ``C0``): the prompt, or deeper once resampling
has made every particle descend from one ancestor. :class:`SharedPrefix`
keeps the keys and values of ``x_{1:C0}`` as one buffer ``[layers, k|v,
kv_heads, C0, head_dim]`` (the layout attention reads), built once from the
KV pool, and reused while every row of a batch still descends from ``A``.
A batch then gathers only each row's own suffix ``x_{C0+1:s_r}`` from the
pool, and :mod:`.cascade_attention` attends to the shared part once for all
rows. Per step the copy is ``R * (suffix + new)`` slots instead of ``R *
(context + new)``.

Policy (:meth:`SharedPrefix.select`):

- keep ``A`` while every row descends from it and reuses at least ``C0``
  cached positions;
- otherwise, or when re-keying deeper saves more per step than it costs once
  (``(C0' - C0) * max(R - 1, 1) >= C0'``, with ``C0'`` the rows' deepest
  common ancestor), rebuild at the deepest common ancestor;
- no shared part (the plain path) when that ancestor is shallower than
  :data:`MIN_SHARED` tokens, or when a row computes more than
  :data:`MAX_NEW` new positions (a prefill: its own attention dominates).

The buffer is a copy: the trie still owns every slot, eviction works as
before, and when ``A`` is evicted the buffer is dropped
(:meth:`SharedPrefix.forget`). Nothing here touches transformers.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .kv_trie import PrefixTrie, TrieNode

MIN_SHARED = 1
"""Shortest shared prefix, in tokens, worth the cascade path."""
MAX_NEW = 32
"""Most new positions per row for which a batch takes the cascade path."""


def ancestor_at(node: TrieNode, depth: int) -> TrieNode:
    """The ancestor of ``node`` at ``depth`` (``node`` itself at its depth)."""
    while node.depth > depth:
        node = node.parent
    return node


def common_ancestor(rows: Sequence) -> TrieNode:
    """The deepest node every row's reused prefix ``x_{1:s_r}`` descends from."""
    limit = min(r.s for r in rows)
    nodes = [ancestor_at(r.node, limit) for r in rows]
    first = nodes[0]
    while any(n is not first for n in nodes):
        nodes = [n.parent for n in nodes]
        first = nodes[0]
    return first


class SharedPrefix:
    """The persistent shared-prefix buffer (see the module docstring)."""

    def __init__(self) -> None:
        self.node: TrieNode | None = None
        self.buffer: torch.Tensor | None = None  # [layers, 2, H, C0, D]
        self.builds = 0

    @property
    def depth(self) -> int:
        return self.node.depth if self.node is not None else 0

    @property
    def nbytes(self) -> int:
        b = self.buffer
        return b.numel() * b.element_size() if b is not None else 0

    def forget(self, node: TrieNode) -> None:
        """Drop the buffer if ``node`` (being evicted) is its key."""
        if node is self.node:
            self.node = self.buffer = None

    def _covers(self, rows: Sequence) -> bool:
        node = self.node
        if node is None or node.parent is None and node.depth:
            return False
        d = node.depth
        return all(r.s >= d and ancestor_at(r.node, d) is node for r in rows)

    def select(self, rows: Sequence, trie: PrefixTrie, pool: torch.Tensor) -> tuple[int, int]:
        """``(C0, bytes copied)`` for this batch: the shared prefix length
        (0: plain path) and the bytes a rebuild of the buffer copied."""
        if max(len(r.target) - r.s for r in rows) > MAX_NEW:
            return 0, 0
        R = len(rows)
        if self._covers(rows):
            d = self.depth
            gain = min(r.s for r in rows) - d
            if gain < 16 or gain * max(R - 1, 1) < d + gain:
                return d, 0
            lca = common_ancestor(rows)
            if (lca.depth - d) * max(R - 1, 1) < lca.depth:
                return d, 0
        else:
            lca = common_ancestor(rows)
        if lca.depth < MIN_SHARED:
            return 0, 0
        return lca.depth, self._build(lca, trie, pool)

    def _build(self, node: TrieNode, trie: PrefixTrie, pool: torch.Tensor) -> int:
        self.node = self.buffer = None
        slots = trie.path_slots(node).to(pool.device)
        kv = pool.index_select(0, slots)  # [C0, layers, 2, H, D]
        self.buffer = kv.permute(1, 2, 3, 0, 4).contiguous()
        self.node = node
        self.builds += 1
        return 2 * kv.numel() * kv.element_size()

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(K_S, V_S)]`` per layer, each ``[kv_heads, C0, head_dim]``."""
        buf = self.buffer
        return [(buf[l, 0], buf[l, 1]) for l in range(buf.shape[0])]
