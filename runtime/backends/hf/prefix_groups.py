"""How the rows of a batch are split into shared-prefix groups: the cost
model and the partition algorithm (pure Python, no tensors).

A batch has ``R`` rows; row ``r`` reuses ``s_r`` cached positions of its
prefix ``x^r``. A *group* ``g`` is a trie node ``A_g`` of depth ``d_g`` and a
set of rows that all descend from it (``s_r >= d_g``); its keys and values
are one contiguous buffer that attention reads once for all its rows
(:mod:`.shared_prefix`, :mod:`.cascade_attention`). A row in group ``g``
gathers only its own suffix ``u_r = s_r - d_g`` from the KV pool; a row in no
group gathers its whole prefix, ``u_r = s_r``. The own parts are left-padded
to ``U = max_r u_r``, so every row pays for the longest one.

Cost of one step, in *slot passes* (one pass over one position's keys and
values, all layers):

    cost = sum_g (READ + BUILD / H) * d_g  +  Q * (G - free)  +  OWN * R * U

- ``READ = 1``: attention reads each group's buffer once per step;
- ``BUILD = 2``: a new buffer is copied once (read the pool, write the
  buffer), amortised over ``H = 4`` steps (a buffer is kept across steps
  while its rows descend from it); a buffer kept from an earlier step costs
  no build;
- ``Q``: the fixed cost of one more group (its matrix products and merge
  are separate calls in every layer), in slot passes
  (:data:`GROUP_COST_SLOTS`); ``free = 1`` when no buffer kept from an
  earlier step is in use, so that a batch's first group costs no ``Q``:
  one group at the rows' deepest common ancestor is what the single-group
  path always did, and it is always a candidate;
- ``OWN = 3``: each own position is gathered (read and written) and read by
  attention.

Partition algorithm (:func:`partition`). Sort the rows by their prefixes;
``l_i`` is the common prefix length of rows ``i`` and ``i + 1``, capped at
``min(s_i, s_{i+1})``. That capped length is an ultrametric (``m(x, z) >=
min(m(x, y), m(y, z))``), so the rows descending from any trie node form a
contiguous run of the sorted order and the deepest common ancestor of a run
has depth ``min l`` over the run: the runs are the nodes of the tree of
``l`` (the LCP-interval tree, built in one pass with a stack,
:func:`lcp_tree`), whose leaves are single rows (a group of one at depth
``s_r``). For a bound ``tau`` on ``U`` the cheapest set of groups is a dynamic
programme over that tree, bottom up: a node either is one group (cost
``(READ + BUILD/H) d + Q``, allowed if its rows' longest own suffix ``max s -
d <= tau``) or leaves its children to decide (the sum of their costs); a
leaf alone may stay ungrouped (cost 0, allowed if ``s_r <= tau``). The
programme runs for every ``tau`` at which what is allowed changes (the
runs' own parts ``max s - d`` and the rows' ``s_r``, at most
:data:`MAX_BOUNDS` of them, evenly spread), not below the ``U`` the kept
groups already force (and, when the caps may bind, once more with a
prohibitive ``Q``: the fewest groups for each ``tau``); the candidate of
least total cost (the ``U`` term included) that respects the caps on the
number of groups and the bytes of new buffers wins, the one group at the
common ancestor of all rows and no group at all among them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

READ = 1.0
BUILD = 2.0
HORIZON = 4
OWN = 3.0
NEW_GROUP = READ + BUILD / HORIZON
"""Slot passes per step per position of a newly built buffer."""
MIN_SHARED = 1
"""Shortest shared prefix, in tokens, of a group."""
GROUP_COST_SLOTS = {"cpu": 256.0}
"""``Q`` by device type. CPU: about 18 small tensor operations per layer per
group (a few microseconds each) against one pass over a position's keys and
values of a small model (tens of KB). Other devices: :data:`DEFAULT_GROUP_COST`,
an estimate (kernel launches dominate small models there), not measured."""
DEFAULT_GROUP_COST = 4096.0
FEWEST = 1e9
"""A group cost that makes the programme use as few groups as it can (tried
when the caps may refuse the cheapest plan)."""
MAX_BOUNDS = 24
"""Most bounds ``tau`` the programme is run for."""


@dataclass
class Costs:
    """What the partition is priced with (see the module docstring):
    ``rows`` = ``R`` (every row of the batch), ``floor``: the ``U`` rows of kept
    groups force already, ``group`` = ``Q``, ``free_first``: no kept group is
    in use, ``max_groups`` / ``max_slots``: how many new groups, and how many
    positions in all, may be built (``max_slots`` never refuses a lone
    group when ``free_first``)."""

    rows: int
    floor: int
    group: float
    free_first: bool
    max_groups: int
    max_slots: int


class Run:
    """A node of the LCP-interval tree: sorted rows ``lb .. rb - 1`` whose
    deepest common ancestor has depth ``depth``; ``top``: the longest ``s`` among
    them; a leaf (one row) has no children and ``depth = s``."""

    __slots__ = ("depth", "lb", "rb", "top", "children", "best", "single")

    def __init__(self, depth: int, lb: int) -> None:
        self.depth, self.lb, self.rb, self.top = depth, lb, lb + 1, depth
        self.children: list[Run] = []
        self.best, self.single = 0.0, False

    def close(self, rb: int) -> None:
        self.rb = rb
        self.top = max(c.top for c in self.children)


def common_length(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """Length of the common prefix of ``a`` and ``b``, at most ``limit``
    (slices compared in C, bisected)."""
    if a[:limit] == b[:limit]:
        return limit
    lo, hi = 0, limit  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def lcp_tree(s: Sequence[int], lcp: Sequence[int]) -> list[Run]:
    """The runs of the LCP-interval tree in post-order (the root, at depth 0,
    last). ``lcp[i]``: the capped common prefix length of rows ``i`` and
    ``i + 1``."""
    order: list[Run] = []
    stack = [Run(0, 0)]
    n = len(s)
    for i in range(n):
        carry = Run(s[i], i)
        order.append(carry)
        h = lcp[i] if i + 1 < n else 0
        while stack[-1].depth > h:
            top = stack.pop()
            top.children.append(carry)
            top.close(i + 1)
            order.append(top)
            carry = top
        if stack[-1].depth < h:
            run = Run(h, carry.lb)
            run.children.append(carry)
            stack.append(run)
        else:
            stack[-1].children.append(carry)
    root = stack[0]
    root.close(n)
    order.append(root)
    return order


def _groups_under(order: list[Run], tau: float, q: float) -> tuple[list[Run], int] | None:
    """The cheapest groups with every own part at most ``tau`` (the
    dynamic programme), and the longest own part they leave; None if none."""
    inf = float("inf")
    for run in order:
        single = NEW_GROUP * run.depth + q if run.depth >= MIN_SHARED and run.top - run.depth <= tau else inf
        if run.children:
            split = sum(c.best for c in run.children)
        else:
            split = 0.0 if run.depth <= tau else inf
        run.single = single <= split
        run.best = min(single, split)
    root = order[-1]
    if root.best == inf:
        return None
    groups, stack, longest = [], [root], 0
    while stack:
        run = stack.pop()
        if run.single:
            groups.append(run)
            longest = max(longest, run.top - run.depth)
        elif run.children:
            stack.extend(run.children)
        else:
            longest = max(longest, run.depth)
    groups.sort(key=lambda g: g.lb)
    return groups, longest


def _ladder(order: list[Run], floor: int, q: float) -> list[tuple[list[Run], int]]:
    """The programme's groups for each bound ``tau`` at which what is
    allowed changes (the own parts ``top - depth`` of the runs and the
    leaves' ``s``, at least ``floor``; at most :data:`MAX_BOUNDS` of them,
    evenly spread), with ``q`` the cost of a group."""
    bounds = sorted({max(r.top - r.depth if r.children else r.depth, floor) for r in order} | {floor})
    if len(bounds) > MAX_BOUNDS:
        step = (len(bounds) - 1) / (MAX_BOUNDS - 1)
        bounds = [bounds[round(i * step)] for i in range(MAX_BOUNDS)]
    found = []
    for tau in bounds:
        best = _groups_under(order, tau, q)
        if best is not None:
            found.append(best)
    return found


def _total(groups: list[Run], longest: int, costs: Costs) -> float | None:
    """The step's cost of ``groups`` (None when the caps refuse them)."""
    if len(groups) > costs.max_groups:
        return None
    lone = costs.free_first and len(groups) == 1
    if not lone and sum(g.depth for g in groups) > costs.max_slots:
        return None
    q = costs.group * (len(groups) - (costs.free_first and bool(groups)))
    return NEW_GROUP * sum(g.depth for g in groups) + q + OWN * costs.rows * max(costs.floor, longest)


def partition(targets: Sequence[Sequence[int]], s: Sequence[int], costs: Costs) -> list[tuple[int, int, int]]:
    """Groups ``(lb, rb, depth)`` over rows sorted by ``targets`` (rows
    ``lb .. rb - 1`` share their first ``depth`` positions); rows in no group
    stay on the plain suffix path. See the module docstring."""
    n = len(s)
    if n == 0:
        return []
    lcp = [common_length(targets[i], targets[i + 1], min(s[i], s[i + 1])) for i in range(n - 1)]
    order = lcp_tree(s, lcp)
    root = order[-1]
    candidates: list[tuple[list[Run], int]] = [([], max(s))]
    whole = root.children[0] if len(root.children) == 1 else None
    if whole is not None and whole.depth >= MIN_SHARED:
        candidates.append(([whole], whole.top - whole.depth))
    candidates += _ladder(order, costs.floor, costs.group)
    if costs.max_groups < len(s) or costs.max_slots < sum(s):  # the caps may refuse: fewest groups too
        candidates += _ladder(order, costs.floor, FEWEST * (1 + costs.group))
    best, chosen = None, []
    for groups, longest in candidates:
        total = _total(groups, longest, costs)
        if total is not None and (best is None or total < best):
            best, chosen = total, groups
    return [(g.lb, g.rb, g.depth) for g in chosen]
