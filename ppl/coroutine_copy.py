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

**When it refuses.** :class:`NotCopyable` (and the caller falls back to
replay) when the interpreter is not CPython 3.11 (the frame layout is
private to a minor version; it is checked at import against a probe
coroutine, see :func:`available`), a frame is not suspended, it is inside an
``except`` block, its function's code was swapped, a cell is held by a
living closure, or a slot cannot be deep-copied (an async generator, a
pending future, a lock, a module).

The layout read here is ``_PyGenObject_HEAD`` and ``_PyInterpreterFrame``
of CPython 3.11 (``Include/cpython/genobject.h``,
``Include/internal/pycore_frame.h``); the one ``ctypes`` module of ppl.
"""

from __future__ import annotations

import copy
import ctypes
import sys
import types
from typing import Any, NamedTuple

__all__ = ["NotCopyable", "available", "copy_coroutine"]


class NotCopyable(Exception):
    """This coroutine cannot be copied; the message says why."""


_PTR = ctypes.sizeof(ctypes.c_void_p)
_CREATED, _SUSPENDED = -2, -1


class _Frame(ctypes.Structure):
    """``_PyInterpreterFrame`` of CPython 3.11, up to its slots (``localsplus``)."""

    _fields_ = [
        ("f_func", ctypes.c_void_p),
        ("f_globals", ctypes.c_void_p),
        ("f_builtins", ctypes.c_void_p),
        ("f_locals", ctypes.c_void_p),
        ("f_code", ctypes.c_void_p),
        ("frame_obj", ctypes.c_void_p),
        ("previous", ctypes.c_void_p),
        ("prev_instr", ctypes.c_void_p),
        ("stacktop", ctypes.c_int),
        ("is_entry", ctypes.c_bool),
        ("owner", ctypes.c_char),
    ]


class _Gen(ctypes.Structure):
    """``_PyGenObject_HEAD`` of CPython 3.11 (coroutines and generators alike)."""

    _fields_ = [
        ("ob_refcnt", ctypes.c_ssize_t),
        ("ob_type", ctypes.c_void_p),
        ("code", ctypes.c_void_p),
        ("weakreflist", ctypes.c_void_p),
        ("name", ctypes.c_void_p),
        ("qualname", ctypes.c_void_p),
        ("exc_value", ctypes.c_void_p),
        ("exc_previous_item", ctypes.c_void_p),
        ("origin_or_finalizer", ctypes.c_void_p),
        ("hooks_inited", ctypes.c_char),
        ("closed", ctypes.c_char),
        ("running_async", ctypes.c_char),
        ("frame_state", ctypes.c_int8),
        ("frame", _Frame),
    ]


_SLOTS = _Gen.frame.offset + ctypes.sizeof(_Frame)  # where localsplus starts

_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_decref = ctypes.pythonapi.Py_DecRef
_decref.argtypes = [ctypes.py_object]

_GENERATORS = frozenset({types.CoroutineType, types.GeneratorType})
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, types.FunctionType, types.BuiltinFunctionType, type})
_NONE = id(None)
_NULL = object()  # an empty slot


def _object(pointer: int) -> Any:
    return ctypes.cast(pointer, ctypes.py_object).value


class _Layout(NamedTuple):
    """What copying a frame of one code object needs, computed once per code."""

    n_locals: int  # slots before the value stack
    first_free: int  # slots [first_free, n_locals) are free variables (shared)
    max_top: int  # n_locals + the deepest value stack
    argcount: int
    kwonly: tuple  # names of the keyword-only parameters
    pointers: type  # ctypes arrays over all slots: raw pointers, objects
    objects: type


_LAYOUTS: dict = {}


def _layout(code: types.CodeType) -> _Layout:
    """Locals are the code's variables, then its cells that are not
    arguments, then its free variables; the value stack follows."""
    found = _LAYOUTS.get(code)
    if found is None:
        extra_cells = sum(1 for name in code.co_cellvars if name not in code.co_varnames)
        n_locals = code.co_nlocals + extra_cells + len(code.co_freevars)
        argcount, max_top = code.co_argcount, n_locals + code.co_stacksize
        kwonly = tuple(code.co_varnames[argcount : argcount + code.co_kwonlyargcount])
        found = _Layout(n_locals, n_locals - len(code.co_freevars), max_top, argcount, kwonly,
                        ctypes.c_void_p * max_top, ctypes.py_object * max_top)
        _LAYOUTS[code] = found
    return found


def _check_frame(gen, code: types.CodeType) -> tuple[_Gen, Any]:
    """The generator's header and its function, after checking that it can
    be copied. A suspended frame's ``exc_value`` is NULL, or None once an
    exception was handled and put back: anything else is an exception being
    handled at the suspension point."""
    head = _Gen.from_address(id(gen))
    if head.frame_state != _SUSPENDED and head.frame_state != _CREATED:
        raise NotCopyable(f"{gen.__qualname__} is running")
    if head.exc_value is not None and head.exc_value != _NONE:
        raise NotCopyable(f"{gen.__qualname__} is suspended inside an except block")
    frame = head.frame
    if frame.f_code != id(code) or frame.f_locals is not None:
        raise NotCopyable(f"{gen.__qualname__}'s frame is not a plain function frame")
    func = _object(frame.f_func)
    if getattr(func, "__code__", None) is not code:
        raise NotCopyable(f"{gen.__qualname__}'s function no longer has its code")
    return head, func


def _copy_cell(cell, memo: dict):
    # held by the frame, by the slot array's read, by `cell` and by getrefcount's argument
    if sys.getrefcount(cell) > 4:
        raise NotCopyable("a local variable is captured by a living closure (a lambda or nested function)")
    try:
        contents = cell.cell_contents
    except ValueError:  # an empty cell (assigned later)
        return types.CellType()
    return types.CellType(_copy_value(contents, memo))


def _copy_value(value: Any, memo: dict) -> Any:
    kind = type(value)
    if kind in _ATOMS:
        return value
    found = memo.get(id(value), _NULL)
    if found is not _NULL:
        return found
    if kind in _GENERATORS:
        if _Gen.from_address(id(value)).frame_state > 0:
            return value  # finished: it behaves the same whoever holds it
        return _copy_generator(value, memo)
    try:
        return copy.deepcopy(value, memo)
    except Exception as exc:  # noqa: BLE001 - any failure means: replay instead
        raise NotCopyable(f"a {kind.__name__} in a frame cannot be copied ({exc})") from None


def _copy_generator(gen, memo: dict):
    code = gen.cr_code if type(gen) is types.CoroutineType else gen.gi_code
    head, func = _check_frame(gen, code)
    layout = _layout(code)
    state, top = head.frame_state, head.frame.stacktop
    if not layout.n_locals <= top <= layout.max_top or (state == _CREATED and top != layout.n_locals):
        raise NotCopyable(f"{gen.__qualname__}'s value stack is not where it should be")
    # Phase 1: copy every slot (nothing is written until all have been copied).
    base = id(gen) + _SLOTS
    objects = layout.objects.from_address(base)
    first_free, n_locals = layout.first_free, layout.n_locals
    values: list = []
    for index, pointer in enumerate(layout.pointers.from_address(base)[:top]):
        if pointer is None:
            values.append(_NULL)
        elif first_free <= index < n_locals:
            values.append(objects[index])  # a free variable: the closure's cell, shared
        else:
            value = objects[index]
            if index < first_free and type(value) is types.CellType:
                values.append(_copy_cell(value, memo))
            else:
                values.append(_copy_value(value, memo))
    del objects
    # Phase 2: a fresh frame of the same function, given those slots.
    new = func(*([None] * layout.argcount), **dict.fromkeys(layout.kwonly))
    memo[id(gen)] = new
    new_head = _Gen.from_address(id(new))
    initialised = new_head.frame.stacktop
    slots = layout.pointers.from_address(id(new) + _SLOTS)
    for index, value in enumerate(values):
        old = slots[index] if index < initialised else None
        if value is _NULL:
            slots[index] = None
        else:
            _incref(value)
            slots[index] = id(value)
        if old is not None:
            _decref(_object(old))
    if state == _SUSPENDED:  # (a created one starts where the fresh one does)
        new_head.frame.stacktop = top
        new_head.frame.prev_instr = head.frame.prev_instr
        new_head.frame_state = _SUSPENDED
    return new


def copy_coroutine(coro, memo: dict | None = None):
    """A copy of the suspended coroutine ``coro``, independent of it: both can
    be resumed, with different values, and run on separately. ``memo`` is
    :func:`copy.deepcopy`'s (objects it maps are used as they are mapped:
    seed it with what must be shared). Raises :class:`NotCopyable`."""
    if not available():
        raise NotCopyable(_REASON)
    if type(coro) is not types.CoroutineType:
        raise NotCopyable(f"{coro!r} is not a coroutine")
    return _copy_generator(coro, {} if memo is None else memo)


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
    return seen


def _check_layout() -> str | None:
    """Why this interpreter's frames are not the layout above (``None`` if they are)."""
    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11) or _PTR != 8:
        return f"coroutine copying needs 64-bit CPython 3.11 (this is {sys.implementation.name} {sys.version.split()[0]})"
    if _Gen.frame.offset != 10 * _PTR or _SLOTS != 19 * _PTR:
        return "ctypes laid out the frame structures unexpectedly"
    coro = _probe(7)
    head = _Gen.from_address(id(coro))
    try:
        if head.frame_state != _CREATED or head.code != id(coro.cr_code):
            return "the probe coroutine's header is not where expected"
        if head.frame.f_code != id(coro.cr_code) or head.frame.f_func != id(_probe):
            return "the probe coroutine's frame is not where expected"
        coro.send(None)
        if head.frame_state != _SUSPENDED:
            return "the probe coroutine's suspended state is not where expected"
        twin = _copy_generator(coro, {})  # (the layout checks passed)
        results = []
        for c, value in ((coro, "a"), (twin, "b")):
            c.send(value)
            try:
                c.send(value * 2)
            except StopIteration as stop:
                results.append(stop.value)
        if results != [[7, (0, "a"), (1, "aa")], [7, (0, "b"), (1, "bb")]]:
            return f"a copied probe coroutine ran wrongly: {results}"
    finally:
        coro.close()
    return None


_REASON = _check_layout()


def available() -> bool:
    """Whether coroutines can be copied here (else :data:`reason` says why)."""
    return _REASON is None


def reason() -> str | None:
    """Why coroutines cannot be copied here, or ``None``."""
    return _REASON
