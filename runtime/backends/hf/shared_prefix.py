"""Shared prefixes of a batch: contiguous copies of the keys and values of
the trie nodes its rows descend from, one per *group* of rows, kept across
batches and keyed by their nodes.

SMC particles extend a prompt, so the rows of a batch descend from few trie
nodes: one prompt (or a deeper ancestor once resampling has made every
particle descend from one), or one prompt per input when ``ppl.map`` batches
several runs, or one per context of a program with several. For a group
``g`` with node ``A_g`` (depth ``d_g``) :class:`SharedPrefixes` keeps the
keys and values of ``x_{1:d_g}`` as one buffer ``[layers, k|v, kv_heads,
d_g, head_dim]`` (the layout attention reads), built once from the KV pool
and reused while rows still descend from ``A_g``. A row of the group then
gathers only its own suffix ``x_{d_g+1:s_r}`` from the pool, and
:mod:`.cascade_attention` attends to each group's buffer once for all its
rows. Per step the copy is ``R * (U + new)`` slots instead of ``R *
(context + new)``, ``U`` the longest own suffix.

Policy (:meth:`SharedPrefixes.select`), for a batch whose rows compute at
most :data:`MAX_NEW` new positions each (otherwise: the plain path, a
prefill's own attention dominates):

1. each row joins the deepest kept buffer it descends from (a walk up its
   own suffix);
2. a kept group whose rows all moved deeper is re-keyed at their deepest
   common ancestor ``A'`` when that saves more per step than it costs once
   (``min s - d >= 16`` and ``(d' - d) * max(n - 1, 1) >= d'`` for its
   ``n`` rows): with a single group, the rule the single buffer always had;
3. the rows no kept buffer covers are partitioned by the cost model and
   the LCP-tree dynamic programme of :mod:`.prefix_groups` (new groups, or
   rows left on the plain suffix path); with no kept buffer in use, the one
   group at the deepest common ancestor of the rows is always a candidate,
   and a lone group is never refused by the caps;
4. the rows are reordered group by group (each group a contiguous span of
   rows, the rows of no group last). No group at all: the plain path.

Caps: at most :data:`MAX_BUFFERS` buffers, at most ``max_bytes`` in all
(1 GiB by default; the buffers a batch uses are never dropped for it);
buffers unused for :data:`IDLE_BATCHES` batches, and those over the caps
(least recently used first), are dropped. The buffers are copies: the trie
still owns every slot, eviction works as before, and a buffer whose node is
evicted is dropped (:meth:`SharedPrefixes.forget`). Nothing here touches
transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from . import prefix_groups
from .kv_trie import PrefixTrie, TrieNode
from .prefix_groups import DEFAULT_GROUP_COST, GROUP_COST_SLOTS, Costs

MAX_NEW = 32
"""Most new positions per row for which a batch takes the cascade path."""
MAX_BUFFERS = 16
"""Most shared-prefix buffers kept (and groups in one batch)."""
MAX_BYTES = 1 << 30
"""Default bound of the bytes of all buffers kept."""
IDLE_BATCHES = 32
"""A buffer no row used for this many batches is dropped."""


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


class Buffer:
    """One kept buffer: ``kv`` ``[layers, 2, H, d, D]`` of ``node``'s prefix."""

    __slots__ = ("node", "kv", "layers", "last_used")

    def __init__(self, node: TrieNode, kv: torch.Tensor, tick: int) -> None:
        self.node, self.kv, self.last_used = node, kv, tick
        self.layers = [(kv[l, 0], kv[l, 1]) for l in range(kv.shape[0])]

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()


@dataclass
class SharedPlan:
    """How one batch uses the shared prefixes: ``rows`` reordered group by
    group, ``base[r]`` the shared positions of row ``r`` (0: no group),
    ``spans[g] = (a, b)`` the rows of group ``g``, ``shared[g]`` its ``[(K_S,
    V_S)]`` per layer, ``copied`` the bytes its new buffers copied, ``built``
    how many it built."""

    rows: list
    base: list[int]
    spans: list[tuple[int, int]]
    shared: list[list[tuple[torch.Tensor, torch.Tensor]]]
    copied: int
    built: int


class SharedPrefixes:
    """The kept shared-prefix buffers and the policy (see the module docstring)."""

    def __init__(self, bytes_per_slot: int, device: torch.device | str = "cpu", max_bytes: int = MAX_BYTES) -> None:
        self.buffers: dict[TrieNode, Buffer] = {}
        self.bytes_per_slot = bytes_per_slot
        self.max_bytes = max_bytes
        kind = torch.device(device).type
        self.group_cost_slots = GROUP_COST_SLOTS.get(kind, DEFAULT_GROUP_COST)
        self.builds = 0
        self._tick = 0
        self._last: list[TrieNode] = []

    # ------------------------------------------------------------ state
    @property
    def node(self) -> TrieNode | None:
        """The node of the last cascade batch's first group, if still kept."""
        for n in self._last:
            if n in self.buffers:
                return n
        return None

    @property
    def tokens(self) -> int:
        """Positions held in all buffers."""
        return sum(n.depth for n in self.buffers)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values())

    def forget(self, node: TrieNode) -> None:
        """Drop the buffer of ``node`` (being evicted), if any."""
        self.buffers.pop(node, None)

    # ----------------------------------------------------------- policy
    def select(self, rows: Sequence, trie: PrefixTrie, pool: torch.Tensor) -> SharedPlan | None:
        """The plan of this batch (None: the plain path); builds the new
        buffers it needs."""
        if max(len(r.target) - r.s for r in rows) > MAX_NEW:
            return None
        self._tick += 1
        kept, loose = self._assign(rows)
        groups: list[tuple[TrieNode, list]] = []
        for node, members in kept.items():
            groups.append((self._rekeyed(node, members), members))
        in_use = {node for node, _ in groups}
        self._drop_idle(in_use)
        if loose:
            groups.extend(self._partition(loose, len(rows), groups, in_use))
        if not groups:
            return None
        return self._plan(groups, loose, trie, pool)

    def _assign(self, rows: Sequence) -> tuple[dict[TrieNode, list], list]:
        """Rows by the deepest kept buffer they descend from, and the rest."""
        bufs = self.buffers
        kept: dict[TrieNode, list] = {}
        if not bufs:
            return kept, list(rows)
        lo = min(n.depth for n in bufs)
        loose = []
        for r in rows:
            n = ancestor_at(r.node, r.s)
            while n.depth >= lo and n not in bufs:
                n = n.parent
            if n.depth >= lo:
                kept.setdefault(n, []).append(r)
            else:
                loose.append(r)
        return kept, loose

    def _rekeyed(self, node: TrieNode, members: list) -> TrieNode:
        """``node``, or the members' deepest common ancestor when moving the
        buffer there pays (the module docstring's step 2)."""
        d, n = node.depth, max(len(members) - 1, 1)
        gain = min(r.s for r in members) - d
        if gain < 16 or gain * n < d + gain:
            return node
        lca = common_ancestor(members)
        if (lca.depth - d) * n < lca.depth:
            return node
        self.buffers.pop(node, None)
        return lca

    def _drop_idle(self, in_use: set) -> None:
        old = self._tick - IDLE_BATCHES
        for node in [n for n, b in self.buffers.items() if b.last_used < old and n not in in_use]:
            del self.buffers[node]

    def _partition(self, loose: list, R: int, groups: list, in_use: set) -> list[tuple[TrieNode, list]]:
        """New groups for the rows no kept buffer covers (sorted by prefix)."""
        loose.sort(key=lambda r: r.target)
        s = [r.s for r in loose]
        used_bytes = sum(self.buffers[n].nbytes for n in in_use if n in self.buffers)
        floor = max((r.s - node.depth for node, members in groups for r in members), default=0)
        costs = Costs(
            rows=R, floor=floor, group=self.group_cost_slots, free_first=not groups,
            max_groups=MAX_BUFFERS - len(groups),
            max_slots=max(self.max_bytes - used_bytes, 0) // max(self.bytes_per_slot, 1),
        )
        found = prefix_groups.partition([r.target for r in loose], s, costs)
        taken = [(ancestor_at(loose[lb].node, d), loose[lb:rb]) for lb, rb, d in found]
        grouped = {id(r) for _, members in taken for r in members}
        loose[:] = [r for r in loose if id(r) not in grouped]
        return taken

    # ------------------------------------------------------------ build
    def _plan(self, groups: list, loose: list, trie: PrefixTrie, pool: torch.Tensor) -> SharedPlan:
        rows, base, spans, shared = [], [], [], []
        copied = built = 0
        for node, members in groups:
            buf = self.buffers.get(node)
            if buf is None:
                buf, nbytes = self._build(node, trie, pool)
                copied, built = copied + nbytes, built + 1
            buf.last_used = self._tick
            spans.append((len(rows), len(rows) + len(members)))
            shared.append(buf.layers)
            rows.extend(members)
            base.extend([node.depth] * len(members))
        rows.extend(loose)
        base.extend([0] * len(loose))
        self._last = [node for node, _ in groups]
        self._trim({node for node, _ in groups})
        return SharedPlan(rows, base, spans, shared, copied, built)

    def _build(self, node: TrieNode, trie: PrefixTrie, pool: torch.Tensor) -> tuple[Buffer, int]:
        slots = trie.path_slots(node).to(pool.device)
        kv = pool.index_select(0, slots)  # [d, layers, 2, H, D]
        buf = Buffer(node, kv.permute(1, 2, 3, 0, 4).contiguous(), self._tick)
        self.buffers[node] = buf
        self.builds += 1
        return buf, 2 * kv.numel() * kv.element_size()

    def _trim(self, in_use: set) -> None:
        """Drop unused buffers, least recently used first, while over the caps."""
        spare = sorted((b.last_used, n.depth, id(n), n) for n, b in self.buffers.items() if n not in in_use)
        total = self.nbytes
        for *_, node in spare:
            if len(self.buffers) <= MAX_BUFFERS and total <= self.max_bytes:
                break
            total -= self.buffers.pop(node).nbytes
