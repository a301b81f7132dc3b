"""Memory side of the KV cache: a prefix trie of token ids over a pool of slots.

Three parts, kept apart as in nano-vllm / mini-sglang (block manager, radix
cache, model runner):

- :class:`SlotPool` hands out *slots*: row numbers of the KV pool tensor that
  the execution side owns (:class:`~ppl.runtime.backends.hf.model_runner.KVPool`).
  Slot 0 is reserved as the padding slot and is never handed out. Freed slots
  are reused.
- :class:`PrefixTrie` is a trie with one node per token. The node at depth
  ``d`` on the path of a prefix ``x_{1:L}`` stands for ``x_{1:d}`` and owns the
  KV of its own token ``x_d`` in exactly one slot, however many particles share
  the prefix. Every node in the trie holds KV; a request for ``x_{1:L}`` whose
  deepest node is at depth ``c`` costs ``L - c`` tokens of forward work.
  Pins (reference counts held by live LM contexts) protect nodes from eviction.
- :class:`LRUEvictor` is the policy: it picks unpinned leaves, least recently
  used first. Evicting leaves only means a pinned node's ancestors (which all
  have a child on the way to it) are never evicted: a pin is a counter on one
  node, no walk up the path is needed.

The memory invariants live here too: :meth:`PrefixTrie.check_integrity`
checks them (tests call it after every batch). Pins attach and release under
the trie's ``lock`` (the model's lock: a release may come from the garbage
collector on any thread). Nothing here touches transformers or runs the model.
"""

from __future__ import annotations

import heapq
import threading
import weakref
from collections import OrderedDict
from typing import Callable, Iterable, Sequence

import torch

from ppl.errors import ArgumentError

PAD_SLOT = 0
"""Slot read for the padding positions of a batch; never given to a node."""


class SlotPool:
    """Allocator of KV pool slots (row numbers of the pool tensors).

    ``capacity`` counts slots including the padding slot 0. :meth:`allocate`
    grows the capacity (doubling) when the free list runs out; the owner of the
    tensors reads :attr:`capacity` after allocating and grows its tensors.
    """

    def __init__(self, initial_capacity: int = 256) -> None:
        self.capacity = max(2, int(initial_capacity))
        # Stack of free slots; the lowest slot numbers are handed out first.
        self._free: list[int] = list(range(self.capacity - 1, PAD_SLOT, -1))

    @property
    def in_use(self) -> int:
        """Slots held by trie nodes (the padding slot excluded)."""
        return self.capacity - 1 - len(self._free)

    def allocate(self, n: int) -> list[int]:
        """``n`` free slots (grows the capacity when needed)."""
        if n <= 0:
            return []
        if n > len(self._free):
            new_capacity = self.capacity
            while new_capacity - self.capacity + len(self._free) < n:
                new_capacity *= 2
            self._free[:0] = range(new_capacity - 1, self.capacity - 1, -1)
            self.capacity = new_capacity
        slots = self._free[-n:]
        del self._free[-n:]
        slots.reverse()
        return slots

    def free(self, slots: Iterable[int]) -> None:
        for s in slots:
            if s == PAD_SLOT:
                raise ArgumentError("the padding slot cannot be freed")
            self._free.append(s)


class TrieNode:
    """One token of a cached prefix. ``slot`` holds the KV of ``token``."""

    __slots__ = ("token", "parent", "children", "slot", "depth", "pins", "last_used", "path", "key", "__weakref__")

    def __init__(self, token: int, parent: "TrieNode | None", slot: int, depth: int):
        self.token = token
        self.parent = parent
        self.children: dict[int, TrieNode] = {}
        self.slot = slot
        self.depth = depth
        self.pins = 0
        self.last_used = 0
        # Cached 1-D int64 tensor of the slots of x_{1:depth}, or None.
        self.path: torch.Tensor | None = None
        # The prefix tuple under which this node is indexed, or None.
        self.key: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"TrieNode(token={self.token}, depth={self.depth}, slot={self.slot}, pins={self.pins})"


class _PinState:
    """Shared between a :class:`Pin` and its finaliser: which node it holds."""

    __slots__ = ("node", "prefix", "released")

    def __init__(self, prefix: tuple[int, ...]):
        self.node: TrieNode | None = None
        self.prefix = prefix
        self.released = False


class Pin:
    """A reference that keeps the node of ``prefix`` (and so its ancestors)
    from eviction while this object is alive.

    If the prefix is not in the trie yet when pinned, the pin is *pending* and
    attaches to the node as soon as a forward pass creates it. Share one pin
    between clones of a particle; drop the last reference (or call
    :meth:`release`) to let the nodes go.
    """

    __slots__ = ("_state", "_finalizer", "__weakref__")

    def __init__(self, trie: "PrefixTrie", prefix: tuple[int, ...]):
        self._state = _PinState(prefix)
        with trie.lock:
            trie._acquire(self._state)
        # The finaliser holds the trie weakly: a pin must not keep a model alive.
        self._finalizer = weakref.finalize(self, _release_pin, weakref.ref(trie), self._state)

    @property
    def prefix(self) -> tuple[int, ...]:
        return self._state.prefix

    @property
    def attached(self) -> bool:
        """Whether the pinned prefix is in the trie (not pending)."""
        return self._state.node is not None

    def release(self) -> None:
        self._finalizer()

    def __repr__(self) -> str:
        return f"Pin(len={len(self._state.prefix)}, attached={self.attached})"


def _release_pin(trie_ref: "weakref.ref[PrefixTrie]", state: _PinState) -> None:
    trie = trie_ref()
    if trie is not None:
        with trie.lock:  # the garbage collector may run this on any thread
            trie._release(state)


class PrefixTrie:
    """Prefix trie of token ids; each node owns one pool slot. ``on_evict(node)``
    is called for every node removed, so that the execution side can drop
    what it keeps per node (e.g. cached log-probs)."""

    def __init__(self, pool: SlotPool, *, index_size: int = 4096, path_cache_tokens: int = 1 << 21,
                 on_evict: Callable[[TrieNode], None] | None = None, lock=None) -> None:
        self.pool = pool
        self.lock = lock or threading.RLock()  # pins attach/release under it
        self.root = TrieNode(-1, None, PAD_SLOT, 0)
        self.root.path = torch.empty(0, dtype=torch.long)
        self.n_nodes = 0
        self._leaves: set[TrieNode] = set()
        self._on_evict = on_evict
        # prefix tuple -> node, for the prefixes requested or pinned most
        # recently: finding the node of x_{1:L} or x_{1:L-1} is then one hash.
        self._index: OrderedDict[tuple[int, ...], TrieNode] = OrderedDict()
        self._index_size = index_size
        # nodes with a cached path tensor, bounded by their total length
        self._paths: OrderedDict[TrieNode, None] = OrderedDict()
        self._path_tokens = 0
        self._path_cache_tokens = path_cache_tokens
        # pins waiting for their prefix to appear: prefix -> states
        self._pending: dict[tuple[int, ...], list[_PinState]] = {}
        self._pending_depths: dict[int, int] = {}

    # ------------------------------------------------------------------ lookup
    def match(self, prefix: tuple[int, ...]) -> TrieNode:
        """The deepest node on the path of ``prefix`` (the root if none)."""
        node = self._index.get(prefix)
        if node is not None:
            return node
        L = len(prefix)
        if L > 1:
            parent = self._index.get(prefix[:-1])
            if parent is not None:
                child = parent.children.get(prefix[-1])
                return child if child is not None else parent
        node = self.root
        for t in prefix:
            child = node.children.get(t)
            if child is None:
                break
            node = child
        return node

    def find(self, prefix: tuple[int, ...]) -> TrieNode | None:
        """The node of exactly ``prefix``, or None."""
        node = self.match(prefix)
        return node if node.depth == len(prefix) else None

    def remember(self, prefix: tuple[int, ...], node: TrieNode) -> None:
        """Index ``node`` under ``prefix`` (bounded, most recent kept)."""
        index = self._index
        if node.key is not None and node.key is not prefix:
            if index.get(node.key) is node:
                del index[node.key]
        if prefix in index:
            old = index[prefix]
            if old is not node:
                old.key = None
            index.move_to_end(prefix)
        index[prefix] = node
        node.key = prefix
        while len(index) > self._index_size:
            _, old = index.popitem(last=False)
            old.key = None

    def path_slots(self, node: TrieNode) -> torch.Tensor:
        """1-D int64 CPU tensor of the slots of ``x_{1:depth}`` (cached)."""
        if node.path is not None:
            if node.depth:
                self._paths.move_to_end(node)
            return node.path
        own: list[int] = []
        n = node
        while n.path is None:
            own.append(n.slot)
            n = n.parent
        own.reverse()
        path = torch.cat([n.path, torch.tensor(own, dtype=torch.long)])
        self._set_path(node, path)
        return path

    def _set_path(self, node: TrieNode, path: torch.Tensor) -> None:
        node.path = path
        self._paths[node] = None
        self._path_tokens += node.depth
        while self._path_tokens > self._path_cache_tokens and len(self._paths) > 1:
            old, _ = self._paths.popitem(last=False)
            self._path_tokens -= old.depth
            old.path = None

    def _drop_path(self, node: TrieNode) -> None:
        if node.path is not None and node is not self.root:
            del self._paths[node]
            self._path_tokens -= node.depth
            node.path = None

    # ---------------------------------------------------------------- insert
    def extend(self, node: TrieNode, tokens: Sequence[int], slots: Sequence[int], prefix: tuple[int, ...],
               tick: int) -> tuple[list[TrieNode], list[int]]:
        """Add ``tokens`` below ``node`` with their ``slots``.

        ``prefix`` is the full prefix the path ends in (used to attach pending
        pins). Returns the nodes of the path, one per token, and the slots that
        were not needed because another row of the same batch had already added
        that token (the caller frees them).
        """
        nodes: list[TrieNode] = []
        unused: list[int] = []
        pending = self._pending_depths
        leaves = self._leaves
        for t, s in zip(tokens, slots):
            child = node.children.get(t)
            if child is None:
                child = TrieNode(t, node, s, node.depth + 1)
                if not node.children and node is not self.root:
                    leaves.discard(node)
                node.children[t] = child
                leaves.add(child)
                self.n_nodes += 1
                if pending and child.depth in pending:
                    self._attach_pending(prefix[: child.depth], child)
            else:
                unused.append(s)
            child.last_used = tick
            nodes.append(child)
            node = child
        return nodes, unused

    # ------------------------------------------------------------------- pins
    def pin(self, prefix: Sequence[int]) -> Pin:
        return Pin(self, tuple(map(int, prefix)))

    def _acquire(self, state: _PinState) -> None:  # called with self.lock held (Pin)
        prefix = state.prefix
        node = self.find(prefix) if prefix else self.root
        if node is not None:
            state.node = node
            node.pins += 1
        else:
            self._pending.setdefault(prefix, []).append(state)
            d = len(prefix)
            self._pending_depths[d] = self._pending_depths.get(d, 0) + 1

    def _attach_pending(self, prefix: tuple[int, ...], node: TrieNode) -> None:
        states = self._pending.pop(prefix, None)
        if not states:
            return
        d = len(prefix)
        left = self._pending_depths[d] - len(states)
        if left:
            self._pending_depths[d] = left
        else:
            del self._pending_depths[d]
        for st in states:
            st.node = node
            node.pins += 1

    def _release(self, state: _PinState) -> None:  # called with self.lock held (_release_pin)
        if state.released:
            return
        state.released = True
        if state.node is not None:
            state.node.pins -= 1
            state.node = None
            return
        states = self._pending.get(state.prefix)
        if states is not None:
            states.remove(state)
            d = len(state.prefix)
            self._pending_depths[d] -= 1
            if not self._pending_depths[d]:
                del self._pending_depths[d]
            if not states:
                del self._pending[state.prefix]

    @property
    def pending_pins(self) -> int:
        return sum(self._pending_depths.values())

    # --------------------------------------------------------------- eviction
    def evictable_leaves(self) -> list[TrieNode]:
        return [n for n in self._leaves if n.pins == 0]

    def remove_leaf(self, node: TrieNode) -> TrieNode | None:
        """Remove an unpinned leaf; free its slot. Returns its parent if the
        parent became a leaf (so a policy may consider it next)."""
        if node.children or node.pins or node is self.root:
            raise ArgumentError(f"{node!r} is not an evictable leaf")
        parent = node.parent
        del parent.children[node.token]
        self._leaves.discard(node)
        self.n_nodes -= 1
        self.pool.free((node.slot,))
        self._drop_path(node)
        if node.key is not None:
            if self._index.get(node.key) is node:
                del self._index[node.key]
            node.key = None
        if self._on_evict is not None:
            self._on_evict(node)
        node.parent = None
        if parent is not self.root and not parent.children:
            self._leaves.add(parent)
            return parent
        return None

    # -------------------------------------------------------------- checking
    def check_integrity(self, pool_rows: int | None = None) -> None:
        """Raise ``AssertionError`` unless the memory invariants hold:

        - links: every child's token, parent and depth agree with its place;
        - slots: every node owns a distinct slot, never the padding slot, below
          the slot pool's capacity (and below ``pool_rows``, the rows of the
          pool tensor, when given); the slot pool counts exactly the nodes' slots;
        - counts: ``n_nodes`` and the leaf set (the childless nodes) are up to date;
        - pins: no count is negative; pending pins are counted by depth;
        - index: every indexed prefix maps to the live node of that prefix;
        - path cache: cached slot paths have their node's depth and are counted.
        """
        nodes = self._check_links_and_slots(pool_rows)
        self._check_pins(nodes)
        self._check_index(nodes)
        self._check_paths(nodes)

    def _check_links_and_slots(self, pool_rows: int | None) -> set[TrieNode]:
        seen: set[int] = set()
        nodes: set[TrieNode] = set()
        leaves: set[TrieNode] = set()
        stack = [self.root]
        while stack:
            node = stack.pop()
            for t, child in node.children.items():
                if child.token != t or child.parent is not node or child.depth != node.depth + 1:
                    raise AssertionError(f"broken link at {child!r}")
                if child.slot == PAD_SLOT or child.slot in seen:
                    raise AssertionError(f"slot {child.slot} of {child!r} is padding or shared")
                seen.add(child.slot)
                nodes.add(child)
                if not child.children:
                    leaves.add(child)
                stack.append(child)
        if len(nodes) != self.n_nodes or self.pool.in_use != len(nodes):
            raise AssertionError(f"{len(nodes)} nodes, but the trie counts {self.n_nodes} "
                                 f"and the slot pool {self.pool.in_use} slots in use")
        if leaves != self._leaves:
            raise AssertionError("leaf set out of date")
        limit = self.pool.capacity if pool_rows is None else min(self.pool.capacity, pool_rows)
        if seen and max(seen) >= limit:
            raise AssertionError(f"slot {max(seen)} lies outside the pool ({limit} rows)")
        return nodes

    def _check_pins(self, nodes: set[TrieNode]) -> None:
        if any(n.pins < 0 for n in nodes) or self.root.pins < 0:
            raise AssertionError("a negative pin count")
        by_depth: dict[int, int] = {}
        for prefix, states in self._pending.items():
            if not states:
                raise AssertionError(f"empty pending-pin list for a prefix of length {len(prefix)}")
            by_depth[len(prefix)] = by_depth.get(len(prefix), 0) + len(states)
        if by_depth != self._pending_depths:
            raise AssertionError(f"pending pins by depth {self._pending_depths}, found {by_depth}")

    def _check_index(self, nodes: set[TrieNode]) -> None:
        for prefix, node in self._index.items():
            n, ok = node, node in nodes and node.key == prefix and node.depth == len(prefix)
            for t in reversed(prefix if ok else ()):
                ok, n = ok and n.token == t, n.parent
            if not ok:
                raise AssertionError(f"the index maps a prefix of length {len(prefix)} to a wrong node {node!r}")

    def _check_paths(self, nodes: set[TrieNode]) -> None:
        for node in self._paths:
            if node not in nodes or node.path is None or len(node.path) != node.depth:
                raise AssertionError(f"cached slot path of {node!r} is stale")
        if sum(n.depth for n in self._paths) != self._path_tokens:
            raise AssertionError(f"the path cache miscounts its {self._path_tokens} tokens")
        if any(n.path is not None and n not in self._paths for n in nodes):
            raise AssertionError("a node holds a slot path the path cache does not count")


class LRUEvictor:
    """Eviction policy: unpinned leaves, least recently used first; a parent
    whose last child goes becomes a candidate in turn."""

    def evict(self, trie: PrefixTrie, n_slots: int) -> int:
        """Free at least ``n_slots`` slots if unpinned nodes allow; return the
        number of nodes evicted."""
        if n_slots <= 0:
            return 0
        heap = [(n.last_used, -n.depth, id(n), n) for n in trie.evictable_leaves()]
        heapq.heapify(heap)
        evicted = 0
        while heap and evicted < n_slots:
            *_, node = heapq.heappop(heap)
            parent = trie.remove_leaf(node)
            evicted += 1
            if parent is not None and parent.pins == 0:
                heapq.heappush(heap, (parent.last_used, -parent.depth, id(parent), parent))
        return evicted
