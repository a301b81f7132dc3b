"""The builtins registry: the only functions and constants a ``.steer``
program can name.

A :class:`Registry` maps names to :class:`Builtin` entries; the default one,
:data:`BUILTINS`, holds the language's own (:mod:`ppl.dsl.stdlib`) and
whatever Python code adds with the :func:`builtin` decorator::

    import ppl

    @ppl.builtin
    def rhymes(a: str, b: str) -> bool:
        return a[-2:] == b[-2:]

    # in a .steer file:   condition rhymes(first, last)

The decorator reads the number of arguments and, from annotations ``str``,
``int``, ``float``, ``bool``, ``list``, their types, so that ``ppl check``
reports a wrong call before anything runs; arguments are type-checked again
when the program runs. Builtins should be pure functions of their arguments
(a clone re-evaluates an expression after a step boundary). Lists reach
Python as tuples; a returned list becomes a tuple.

Types in signatures are the names of :mod:`ppl.dsl.types`: ``int``,
``float`` (also accepts ints), ``number`` (int or float), ``bool``, ``str``, ``list``, ``token``,
``context``, ``dist`` (any distribution), ``nextdist`` (a next-token
distribution), ``constraint``, ``EOS`` and ``any``; ``a|b`` is a union.
"""

from __future__ import annotations

import difflib
import inspect
import keyword
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ArgumentError, ArgumentTypeError
from .limits import MAX_DEPTH, OpError, budget
from .types import TYPES, annotation_type, describe_type, fits, value_type
from .values import brief, depth, freeze, show

#: words of the language, which can never name a builtin
KEYWORDS = frozenset(
    "program observe condition factor twist finish return break continue pass if elif else "
    "for in repeat while step where where_checked proposal call and or not True False".split()
)


NO_DEFAULT = object()  # an argument without a default

#: builtins whose argument may be the bare name of a builtin (str -> bool), passed as a predicate
PREDICATE_TAKERS = frozenset({"token_predicate"})


@dataclass(frozen=True)
class Builtin:
    """A function or a constant a program may name.

    ``arg_types`` gives the type of each positional argument (``None``: not
    known, any number of arguments of any type); ``min_args``/``max_args``
    bound their number (``max_args=None``: no bound); ``rest_type`` types
    arguments past ``arg_types``. ``pure`` builtins may be evaluated by the
    checker on constant arguments, to report errors before the run.
    ``needs_lm`` functions receive the program's language model first."""

    name: str
    fn: Callable | None = None
    value: Any = None
    is_constant: bool = False
    arg_types: tuple[str, ...] | None = None
    min_args: int = 0
    max_args: int | None = None
    rest_type: str = "any"
    returns: str = "any"
    pure: bool = False
    needs_lm: bool = False
    doc: str = ""
    arg_names: tuple[str, ...] | None = None  # for keyword arguments (None: by position only)
    arg_defaults: tuple = ()  # the default of each named argument, or NO_DEFAULT

    def bind(self, positional: list, keywords: list[tuple[str, Any]], default=lambda v: v) -> list:
        """The arguments in order: ``positional``, then each ``(name, item)`` of
        ``keywords`` in its parameter's place; a gap before a keyword argument
        is filled with ``default(the parameter's default)``. Raises
        :class:`OpError` for an unknown, repeated or missing name."""
        if not keywords:
            return list(positional)
        names = self.arg_names or ()
        if not names:
            raise OpError(f"{self.name}() takes no keyword arguments: pass them by position")
        slots: dict[int, Any] = dict(enumerate(positional))
        for key, item in keywords:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; its arguments are {', '.join(names)}"
                raise OpError(f"{self.name}() has no argument named {key!r}{hint}")
            i = names.index(key)
            if i in slots:
                how = "by position and by name" if i < len(positional) else "twice"
                raise OpError(f"{self.name}() got the argument {key!r} {how}")
            slots[i] = item
        out = []
        for i in range(max(slots) + 1):
            if i in slots:
                out.append(slots[i])
            elif i < len(self.arg_defaults) and self.arg_defaults[i] is not NO_DEFAULT:
                out.append(default(self.arg_defaults[i]))
            else:
                raise OpError(f"{self.name}() is missing the argument {names[i]!r}")
        return out

    def arity_text(self) -> str:
        lo, hi = self.min_args, self.max_args
        if hi is None:
            return f"at least {lo} argument{'s' * (lo != 1)}"
        if lo == hi:
            return f"{lo} argument{'s' * (lo != 1)}"
        return f"{lo} to {hi} arguments"

    def arg_type(self, i: int) -> str:
        if self.arg_types is None:
            return "any"
        return self.arg_types[i] if i < len(self.arg_types) else self.rest_type

    def check_call(self, args: tuple) -> None:
        """Raise :class:`OpError` if ``args`` do not fit (run time)."""
        n = len(args)
        if n < self.min_args or (self.max_args is not None and n > self.max_args):
            raise OpError(f"{self.name}() takes {self.arity_text()}, got {n}")
        for i, a in enumerate(args):
            spec = self.arg_type(i)
            if spec != "any" and not fits(a, spec):
                raise OpError(
                    f"{self.name}() argument {i + 1} must be {describe_type(spec)}, got {show(a)}"
                )

    def call(self, args: tuple, lm=None) -> Any:
        """Check the arguments and call; errors become :class:`OpError`."""
        self.check_call(args)
        budget().charge(1)
        try:
            result = self.fn(lm, *args) if self.needs_lm else self.fn(*args)
        except OpError:
            raise
        except (ValueError, TypeError, ArithmeticError, IndexError, KeyError, LookupError) as exc:
            raise OpError(f"{self.name}(): {brief(str(exc))}") from exc
        except RecursionError:
            raise OpError(f"{self.name}(): its values are nested too deeply") from None
        except Exception as exc:  # a registered Python builtin failed
            raise OpError(f"{self.name}() raised {type(exc).__name__}: {brief(str(exc))}") from exc
        return checked_result(self.name, freeze(result))


def checked_result(name: str, value: Any) -> Any:
    """A builtin's result, if it keeps within the running limits (a user's
    builtin can only be checked after it returns)."""
    if isinstance(value, (str, tuple)):
        b = budget()
        if len(value) > b.limits.max_length:
            b.length(len(value), "string" if isinstance(value, str) else "list")
        if isinstance(value, tuple) and depth(value) > MAX_DEPTH:
            raise OpError(f"{name}() returned lists nested more than {MAX_DEPTH} deep")
    elif isinstance(value, int) and value.bit_length() > budget().limits.max_int_bits:
        budget().int_bits(value.bit_length(), f"the result of {name}()")
    return value


class Registry:
    """Names -> :class:`Builtin`. ``copy()`` gives an independent registry
    (e.g. a program compiled with extra, private builtins)."""

    def __init__(self, entries: dict[str, Builtin] | None = None):
        self._entries: dict[str, Builtin] = dict(entries or {})

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> Builtin:
        return self._entries[name]

    def get(self, name: str) -> Builtin | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def copy(self) -> "Registry":
        return Registry(self._entries)

    def add(self, entry: Builtin, *, replace: bool = False) -> Builtin:
        name = entry.name
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ArgumentError(f"a builtin's name must be an identifier, got {name!r}")
        if name.startswith("_"):
            raise ArgumentError(f"builtin names may not start with '_': {name!r}")
        if name in KEYWORDS or keyword.iskeyword(name):
            raise ArgumentError(f"{name!r} is a keyword and cannot name a builtin")
        if name in self._entries and not replace:
            raise ArgumentError(
                f"a builtin named {name!r} already exists; pass replace=True to replace it"
            )
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        del self._entries[name]

    def function(self, fn: Callable | None = None, *, name: str | None = None,
                 args: tuple[str, ...] | list[str] | None = None, min_args: int | None = None,
                 max_args: int | None = -1, returns: str | None = None, pure: bool = False,
                 needs_lm: bool = False, replace: bool = False):
        """Register a Python function as a builtin (see :func:`builtin`)."""

        def register(f: Callable) -> Callable:
            entry = _entry_for(f, name=name, args=args, min_args=min_args, max_args=max_args,
                               returns=returns, pure=pure, needs_lm=needs_lm)
            self.add(entry, replace=replace)
            return f

        return register(fn) if fn is not None else register

    def constant(self, name: str, value: Any, *, doc: str = "", replace: bool = False) -> None:
        """Register a constant value (held as the language holds values)."""
        value = freeze(value)
        self.add(Builtin(name, value=value, is_constant=True, returns=value_type(value), doc=doc),
                 replace=replace)


def _entry_for(f: Callable, *, name, args, min_args, max_args, returns, pure, needs_lm) -> Builtin:
    if not callable(f):
        raise ArgumentTypeError(f"@builtin needs a function, got {f!r}")
    name = name or getattr(f, "__name__", None)
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        sig = None
    arg_types, lo, hi, rest, arg_names, defaults = None, 0, None, "any", None, ()
    if sig is not None:
        params = list(sig.parameters.values())
        if needs_lm and params:
            params = params[1:]
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        star = [p for p in params if p.kind == p.VAR_POSITIONAL]
        arg_types = tuple(annotation_type(p.annotation) for p in positional)
        arg_names = tuple(p.name for p in positional)
        defaults = tuple(NO_DEFAULT if p.default is p.empty else freeze(p.default) for p in positional)
        lo = sum(1 for p in positional if p.default is p.empty)
        hi = None if star else len(positional)
        rest = annotation_type(star[0].annotation) if star else "any"
        if returns is None:
            returns = annotation_type(sig.return_annotation)
    if args is not None:
        arg_types = tuple(args)
        for t in arg_types:
            for part in t.split("|"):
                if part not in TYPES:
                    raise ArgumentError(f"unknown type {part!r} in args of builtin {name!r}; types: {TYPES}")
        if sig is None:
            lo, hi = len(arg_types), len(arg_types)
    if min_args is not None:
        lo = min_args
    if max_args != -1:
        hi = max_args
    returns = returns or "any"
    for part in returns.split("|"):
        if part not in TYPES:
            raise ArgumentError(f"unknown return type {part!r} of builtin {name!r}; types: {TYPES}")
    return Builtin(name, fn=f, arg_types=arg_types, min_args=lo, max_args=hi, rest_type=rest,
                   returns=returns, pure=pure, needs_lm=needs_lm, arg_names=arg_names,
                   arg_defaults=defaults, doc=(inspect.getdoc(f) or "").split("\n")[0])


#: the default registry: the language's builtins and those added by @builtin
BUILTINS = Registry()


def builtin(fn: Callable | None = None, *, name: str | None = None,
            args: tuple[str, ...] | list[str] | None = None, min_args: int | None = None,
            max_args: int | None = -1, returns: str | None = None, pure: bool = False,
            needs_lm: bool = False, replace: bool = False, registry: Registry | None = None):
    """Decorator: make a Python function callable from ``.steer`` programs.

    ``@builtin`` alone takes the name, the number of arguments and (from
    ``str``/``int``/``float``/``bool``/``list`` annotations) the types from
    the function; ``name=``, ``args=("str", "int")``, ``min_args=``,
    ``max_args=`` and ``returns=`` override them. ``pure=True`` lets the
    checker evaluate calls with constant arguments. ``needs_lm=True`` passes
    the program's language model as the first argument. Programs compiled
    after registration can use the builtin."""
    reg = registry if registry is not None else BUILTINS
    return reg.function(fn, name=name, args=args, min_args=min_args, max_args=max_args,
                        returns=returns, pure=pure, needs_lm=needs_lm, replace=replace)
