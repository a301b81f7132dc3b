"""The steer language: ``.steer`` files as steering programs.

::

    program lipogram(prompt: str = "My favourite writer is", n: int = 30):
        ctx = lm(prompt)
        repeat n:
            tok ~ ctx.next_token() where lacks("e")
            if tok == EOS: finish
        return ctx.text

``load(path)`` / ``compile(source)`` check a program (every syntax and
semantic error, each at ``FILE:LINE:COL``, raised together as one
:class:`DSLError`) and return a factory used like a ``@ppl.program``
function: ``factory(lm, **params)`` is a particle every inference routine
accepts. ``check_source`` / ``check_file`` only report the diagnostics.

A program can do only what the language and its builtins allow: no imports,
no attribute access beyond ``ctx.next_token()``, ``ctx.text``,
``ctx.tokens`` and a token's ``.text``/``.id``/``.is_eos``, no names starting
with ``__``. Python code adds builtins with :func:`builtin`. What a program
builds, does and takes is bounded by its :class:`Limits` (``limits``).

A file may hold several programs that call one another (``x = call
f(args)``, the submodels of the language); ``load(path, program=NAME)``
picks the one that runs, by default the only one no other program calls.

The grammar is ``grammar/steer.lark``; the language reference is
``docs/dsl.md``.

The modules, in the order a program goes through them: ``api`` (this
package's functions), ``layout`` and ``parser`` (text -> :mod:`~ppl.dsl.ast`,
with ``syntax_errors`` putting syntax errors in words), ``checker`` (with
``types``), ``codegen`` (instructions), ``factory`` (parameters) and
``machine`` (the particle that runs the instructions); ``builtins`` is the
registry, ``stdlib`` the language's own builtins, ``values`` what values are,
``operators`` what operators do, ``limits`` the budgets they are held to,
``errors`` the diagnostics and exceptions, ``sampling`` what a sample
statement draws from (``where``, ``where_checked``, ``proposal``),
``resolve`` the files a program names (``grammar("x.lark")``), ``calls``
and ``inline`` the programs of a file that call one another
(``x = call f(args)``: checked across programs, compiled by inlining).
"""

from .api import check_file, check_source, compile, load
from .builtins import BUILTINS, Builtin, Registry, builtin
from .errors import Diagnostic, DSLArgumentError, DSLError, DSLRuntimeError
from .factory import Param, ProgramFactory
from .limits import DEFAULT_MAX_ITERATIONS, DEFAULT_MAX_STEPS, Limits
from .machine import SteerModel
from .values import EOS

__all__ = [
    "BUILTINS",
    "Builtin",
    "DEFAULT_MAX_ITERATIONS",
    "DEFAULT_MAX_STEPS",
    "DSLArgumentError",
    "DSLError",
    "DSLRuntimeError",
    "Diagnostic",
    "EOS",
    "Limits",
    "Param",
    "ProgramFactory",
    "Registry",
    "SteerModel",
    "builtin",
    "check_file",
    "check_source",
    "compile",
    "load",
]
