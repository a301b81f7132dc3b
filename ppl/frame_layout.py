"""CPython 3.11's generator and frame structures, as ``ctypes`` reads them.

A coroutine or generator object starts with ``_PyGenObject_HEAD``
(``Include/cpython/genobject.h``): the object header, its code, weak
references, names, the exception state it is handling, its origin or
finalizer, three flags, its frame state, then its frame, a
``_PyInterpreterFrame`` (``Include/internal/pycore_frame.h``) embedded in
it: the function, globals, builtins, locals dict, code, frame object, the
previous frame, the code position (``prev_instr``), the top of the value
stack (``stacktop``, an offset into the slots), two flags, and then the
slots themselves (``localsplus``): the code's variables, its cells that are
not arguments, its free variables, then the value stack.

These layouts are private to CPython 3.11; :mod:`ppl.coroutine_copy`, the
one user of this module, checks them against a probe coroutine at import
before it trusts them. Nothing else in ppl reads interpreter memory.
"""

from __future__ import annotations

import ctypes
import types
import weakref
from typing import Any, NamedTuple

__all__ = ["COMPLETED", "CREATED", "PTR", "SLOTS", "SUSPENDED", "Frame", "Gen", "Layout", "code_of", "decref", "header", "incref", "layout", "object_at"]

PTR = ctypes.sizeof(ctypes.c_void_p)

#: frame states (``_PyFrameState``): not started, suspended, finished
CREATED, SUSPENDED, COMPLETED = -2, -1, 1


class Frame(ctypes.Structure):
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


class Gen(ctypes.Structure):
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
        ("frame", Frame),
    ]


SLOTS = Gen.frame.offset + ctypes.sizeof(Frame)
"""Where the slots (``localsplus``) start, from the generator's address."""

incref = ctypes.pythonapi.Py_IncRef
incref.argtypes = [ctypes.py_object]
decref = ctypes.pythonapi.Py_DecRef
decref.argtypes = [ctypes.py_object]


def object_at(pointer: int) -> Any:
    """The object a (non-NULL) pointer points to."""
    return ctypes.cast(pointer, ctypes.py_object).value


def header(gen) -> Gen:
    """The header of a coroutine or generator, read in place."""
    return Gen.from_address(id(gen))


def code_of(gen) -> types.CodeType:
    return gen.cr_code if type(gen) is types.CoroutineType else gen.gi_code


class Layout(NamedTuple):
    """How the slots of one code object's frames are laid out."""

    n_locals: int  # slots before the value stack
    first_free: int  # slots [first_free, n_locals) are free variables
    max_top: int  # n_locals + the deepest value stack
    argcount: int
    kwonly: tuple  # names of the keyword-only parameters
    pointers: type  # ctypes arrays over all slots: raw pointers, objects
    objects: type


_LAYOUTS: dict = {}  # id(code) -> (weak reference to the code, its layout)


def layout(code: types.CodeType) -> Layout:
    """The slot layout of ``code``'s frames (computed once per code object)."""
    found = _LAYOUTS.get(id(code))
    if found is not None and found[0]() is code:
        return found[1]
    extra_cells = sum(1 for name in code.co_cellvars if name not in code.co_varnames)
    n_locals = code.co_nlocals + extra_cells + len(code.co_freevars)
    argcount, max_top = code.co_argcount, n_locals + code.co_stacksize
    kwonly = tuple(code.co_varnames[argcount : argcount + code.co_kwonlyargcount])
    result = Layout(n_locals, n_locals - len(code.co_freevars), max_top, argcount, kwonly,
                    ctypes.c_void_p * max_top, ctypes.py_object * max_top)
    _LAYOUTS[id(code)] = (weakref.ref(code), result)
    return result
