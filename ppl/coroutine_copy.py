"""Copying a suspended coroutine, frame by frame (CPython 3.11).

A ``@ppl.program`` particle is a coroutine suspended at a step boundary.
Python cannot copy one, so a clone could only replay the parent's trace from
the start: ``O(t)`` work per clone at step ``t``, ``O(N (K-1) T^2)`` per run.
This module copies the suspended coroutine instead, in time proportional to
its live state (its frames' local variables and value stacks), not to its
history.

**What a copy is.** A suspended coroutine is a chain of frames: the
program's own, then each coroutine or generator it is awaiting (``yield
from`` / ``await`` delegation), down to the one that yielded. Each frame is
its function, its code position (``prev_instr``) and its slots (local
variables, cells, free variables, then the value stack, whose top holds the
awaited coroutine while suspended in an ``await``). The copy of a frame is
a fresh coroutine (or generator) of the *same* function object, made by
calling it and then given the original's code position and copies of its
slots, marked suspended. Slots are copied as a class program's attributes
are (:meth:`ppl.Model.clone`): ``copy.deepcopy`` with one memo for the whole
chain, so objects shared between frames stay shared in the copy and
language-model contexts copy only their handle; a nested coroutine or
generator is copied by this same procedure; free variables (the closure of
the function) are shared, like the function's globals; a *cell* (a local
captured by a nested function) gets a new cell with a copy of its content,
provided no living closure refers to it (otherwise that closure would keep
reading the original's cell).

**Special slots.** A bound builtin method (``add = seen.append``) is
rebuilt on the copy of its object; a weak reference points to the copy of
its referent; a finished generator is shared (it behaves the same whoever
holds it). Inside containers, ``copy.deepcopy``'s own rules apply (it
shares functions, builtin methods and weak references there), as in a class
program's clone. Values on the value stack are copied like locals, even a
global's (``G.append(await x)`` appends to a copy in the copy): programs
must not mutate shared state, as for replay.

**When it refuses.** :class:`NotCopyable` (and the caller falls back to
replay) when the interpreter is not CPython 3.11 (the frame layout is
private to a minor version; :mod:`ppl.frame_layout` reads it, and it is
checked at import against probe coroutines, see :func:`available`), a frame
is running or suspended inside an ``except`` block, a cell is held by a
living closure, a slot cannot be deep-copied (an async generator, a
pending future, a lock, a module) or is an iterator reading a dict or set
live (its copy would be a frozen list), the chain of awaits is too deep for
the recursion limit, or user code run by the copy (a ``__deepcopy__``)
resumed, closed or re-coded the original. The checks come before anything
is written; every slot is held before any user code runs; and a refused
copy marks the frames it had begun as finished, so none of their code (a
``finally`` block) ever runs.
"""

from __future__ import annotations

import collections
import copy
import ctypes
import itertools
import sys
import types
import weakref
from typing import Any

from . import frame_layout as fl

__all__ = ["NotCopyable", "available", "copy_coroutine", "reason"]


class NotCopyable(Exception):
    """This coroutine cannot be copied; the message says why."""


_GENERATORS = frozenset({types.CoroutineType, types.GeneratorType})
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, types.FunctionType, type})
_NONE = id(None)
_NULL = object()  # an empty slot

_ordered = collections.OrderedDict()
# Iterators over a dict or set read it live (a later value, a change of
# size); their copy through ``__reduce__`` would be a frozen list.
_LIVE_VIEWS = frozenset(type(it) for it in (
    iter({}), iter({}.values()), iter({}.items()), reversed({}), reversed({}.values()), reversed({}.items()),
    iter(set()), iter(_ordered), iter(_ordered.values()), iter(_ordered.items()), reversed(_ordered),
    reversed(_ordered.values()), reversed(_ordered.items()),
))
# Iterators that wrap others (what their ``__reduce__`` arguments hold).
_WRAPPERS = frozenset({enumerate, zip, map, filter, itertools.islice, itertools.chain, itertools.starmap,
                       itertools.takewhile, itertools.dropwhile, itertools.compress, itertools.zip_longest})


def _holds_live_view(value: Any, depth: int = 4) -> bool:
    kind = type(value)
    if kind in _LIVE_VIEWS:
        return True
    if depth == 0 or kind not in _WRAPPERS:
        return False
    try:
        parts = value.__reduce__()[1]
    except Exception:
        return False
    parts = parts if isinstance(parts, tuple) else (parts,)
    # zip and chain reduce to a tuple of their iterators
    inner = [q for part in parts for q in (part if isinstance(part, tuple) else (part,))]
    return any(_holds_live_view(q, depth - 1) for q in inner)


class _Job:
    """One copy of a chain in progress: ``copy.deepcopy``'s memo, and the
    frames built so far (abandoned, without running them, if it fails)."""

    __slots__ = ("built", "memo")

    def __init__(self, memo: dict):
        self.memo, self.built = memo, []

    def abandon(self) -> None:
        """Mark every frame built as finished, so that freeing it clears its
        slots without running its ``finally`` blocks or warning that it was
        never awaited."""
        for gen in self.built:
            fl.header(gen).frame_state = fl.COMPLETED
        self.built.clear()


def _check_frame(gen, code: types.CodeType) -> tuple[fl.Gen, Any]:
    """The generator's header and its function, after checking that it can
    be copied. A suspended frame's ``exc_value`` is NULL, or None once an
    exception was handled and put back: anything else is an exception being
    handled at the suspension point."""
    head = fl.header(gen)
    if head.frame_state != fl.SUSPENDED and head.frame_state != fl.CREATED:
        raise NotCopyable(f"{gen.__qualname__} is running")
    if head.exc_value is not None and head.exc_value != _NONE:
        raise NotCopyable(f"{gen.__qualname__} is suspended inside an except block")
    frame = head.frame
    if frame.f_code != id(code) or frame.f_locals is not None:
        raise NotCopyable(f"{gen.__qualname__}'s frame is not a plain function frame")
    func = fl.object_at(frame.f_func)
    if getattr(func, "__code__", None) is not code:
        raise NotCopyable(f"{gen.__qualname__}'s function no longer has its code")
    return head, func


_CELL_REFS: list = []  # references to a cell that only its frame holds, as _copy_cell sees it (the probe measures it)


def _copy_cell(cell, job: _Job):
    refs = sys.getrefcount(cell)
    if not _CELL_REFS:  # the probe, measuring
        _CELL_REFS.append(refs)
    elif refs > _CELL_REFS[0]:
        raise NotCopyable("a local variable is captured by a living closure (a lambda or nested function)")
    try:
        contents = cell.cell_contents
    except ValueError:  # an empty cell (assigned later)
        return types.CellType()
    return types.CellType(_copy_value(contents, job))


def _copy_value(value: Any, job: _Job) -> Any:
    kind = type(value)
    if kind in _ATOMS:
        return value
    found = job.memo.get(id(value), _NULL)
    if found is not _NULL:
        return found
    if kind in _GENERATORS:
        if fl.header(value).frame_state > 0:
            return value  # finished: it behaves the same whoever holds it
        return _copy_generator(value, job)
    if kind is types.BuiltinMethodType:  # a builtin function, or a bound one: `seen.append`
        owner = value.__self__
        if owner is None or isinstance(owner, (types.ModuleType, type)):
            return value
        return getattr(_copy_value(owner, job), value.__name__)
    if kind is weakref.ReferenceType:
        referent = value()
        if referent is None:
            return value
        if id(referent) in job.memo and value.__callback__ is None:
            return weakref.ref(job.memo[id(referent)])
        raise NotCopyable("a weak reference in a frame, to an object the copy does not hold")
    if _holds_live_view(value):
        raise NotCopyable(f"a {kind.__name__} in a frame reads a dict or set live")
    try:
        return copy.deepcopy(value, job.memo)
    except Exception as exc:
        raise NotCopyable(f"a {kind.__name__} in a frame cannot be copied ({exc})") from None


def _copy_generator(gen, job: _Job):
    code = fl.code_of(gen)
    head, func = _check_frame(gen, code)
    layout = fl.layout(code)
    frame = head.frame
    state, top, position = head.frame_state, frame.stacktop, frame.prev_instr
    if not layout.n_locals <= top <= layout.max_top or (state == fl.CREATED and top != layout.n_locals):
        raise NotCopyable(f"{gen.__qualname__}'s value stack is not where it should be")
    # Hold every slot before any user code (a __deepcopy__) runs: it could
    # close or resume the original and free what the slots point to.
    base = id(gen) + fl.SLOTS
    objects = layout.objects.from_address(base)
    held = [_NULL if pointer is None else objects[index]
            for index, pointer in enumerate(layout.pointers.from_address(base)[:top])]
    del objects
    new = func(*([None] * layout.argcount), **dict.fromkeys(layout.kwonly))
    if type(new) is not type(gen) or fl.code_of(new) is not code:
        fl.header(new).frame_state = fl.COMPLETED
        raise NotCopyable(f"{gen.__qualname__}'s function no longer makes frames of its code")
    job.built.append(new)
    job.memo[id(gen)] = new  # (a frame that holds itself gets its copy)
    values = [_copy_slot(value, index, layout, job) for index, value in enumerate(held)]
    if (head.frame_state, frame.stacktop, frame.prev_instr) != (state, top, position) or func.__code__ is not code:
        raise NotCopyable(f"{gen.__qualname__} ran or changed while it was being copied")
    _write_slots(new, values, layout)
    if state == fl.SUSPENDED:  # (a created one starts where the fresh one does)
        new_head = fl.header(new)
        new_head.frame.stacktop = top
        new_head.frame.prev_instr = position
        new_head.frame_state = fl.SUSPENDED
    return new


def _copy_slot(value: Any, index: int, layout: fl.Layout, job: _Job) -> Any:
    if value is _NULL:
        return _NULL
    if layout.first_free <= index < layout.n_locals:
        return value  # a free variable: the closure's cell, shared like the function
    if index < layout.first_free and type(value) is types.CellType:
        return _copy_cell(value, job)
    return _copy_value(value, job)


def _write_slots(new, values: list, layout: fl.Layout) -> None:
    """Give the fresh frame ``new`` the slots ``values`` (owned references),
    releasing the placeholders it was created with."""
    initialised = fl.header(new).frame.stacktop
    slots = layout.pointers.from_address(id(new) + fl.SLOTS)
    for index, value in enumerate(values):
        old = slots[index] if index < initialised else None
        if value is _NULL:
            slots[index] = None
        else:
            fl.incref(value)
            slots[index] = id(value)
        if old is not None:
            fl.decref(fl.object_at(old))


def copy_coroutine(coro, memo: dict | None = None):
    """A copy of the suspended coroutine ``coro``, independent of it: both can
    be resumed, with different values, and run on separately. ``memo`` is
    :func:`copy.deepcopy`'s (objects it maps are used as they are mapped:
    seed it with what must be shared). Raises :class:`NotCopyable`, having
    run nothing of the coroutine or of the frames it had begun to build."""
    if not available():
        raise NotCopyable(_REASON)
    if type(coro) is not types.CoroutineType:
        raise NotCopyable(f"{coro!r} is not a coroutine")
    job = _Job({} if memo is None else memo)
    try:
        new = _copy_generator(coro, job)
    except NotCopyable:
        job.abandon()
        raise
    except (RecursionError, ctypes.ArgumentError) as exc:
        job.abandon()
        raise NotCopyable(f"its chain of awaits is too deep to copy ({exc})") from None
    except Exception as exc:
        job.abandon()
        raise NotCopyable(f"copying it failed ({type(exc).__name__}: {exc})") from None
    job.built.clear()
    return new


# -- the probe: is this the layout above? ------------------------------------------------


class _Yield:
    def __await__(self):
        return (yield "probe")


async def _probe_inner(n):
    got = await _Yield()
    return n, got


async def _probe(n):
    seen = [n]
    for i in range(2):
        seen.append(await _probe_inner(i))
    return [x for x in seen if x != n or n == 7]  # n: a cell that no living closure holds


async def _probe_closure(n):
    f = lambda: n
    await _Yield()
    return f()


def _check_layout() -> str | None:
    """Why this interpreter's frames are not the layout above (``None`` if they are)."""
    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11) or fl.PTR != 8:
        return f"coroutine copying needs 64-bit CPython 3.11 (this is {sys.implementation.name} {sys.version.split()[0]})"
    if fl.Gen.frame.offset != 10 * fl.PTR or fl.SLOTS != 19 * fl.PTR:
        return "ctypes laid out the frame structures unexpectedly"
    coro = _probe(7)
    head = fl.header(coro)
    try:
        if head.frame_state != fl.CREATED or head.code != id(coro.cr_code):
            return "the probe coroutine's header is not where expected"
        if head.frame.f_code != id(coro.cr_code) or head.frame.f_func != id(_probe):
            return "the probe coroutine's frame is not where expected"
        coro.send(None)
        if head.frame_state != fl.SUSPENDED:
            return "the probe coroutine's suspended state is not where expected"
        twin = _copy_generator(coro, _Job({}))  # (the layout checks passed)
        results = []
        for c, value in ((coro, "a"), (twin, "b")):
            c.send(value)
            try:
                c.send(value * 2)
            except StopIteration as stop:
                results.append(stop.value)
        if results != [[7, (0, "a"), (1, "aa")], [7, (0, "b"), (1, "bb")]]:
            return f"a copied probe coroutine ran wrongly: {results}"
        held = _probe_closure(1)
        held.send(None)
        job = _Job({})
        try:
            _copy_generator(held, job)
            return "a cell held by a living closure was not recognised"
        except NotCopyable:
            job.abandon()
        finally:
            held.close()
        if not _CELL_REFS:
            return "the probe coroutine's cell was not seen"
    finally:
        coro.close()
    return None


_REASON: str | None = "not checked yet"
_REASON = _check_layout()


def available() -> bool:
    """Whether coroutines can be copied here (else :data:`reason` says why)."""
    return _REASON is None


def reason() -> str | None:
    """Why coroutines cannot be copied here, or ``None``."""
    return _REASON
