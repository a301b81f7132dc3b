"""The builtins of the steer language: the only functions and constants a
``.steer`` program can name.

A :class:`Registry` maps names to :class:`Builtin` entries; the default one,
:data:`BUILTINS`, holds the language's own (below) and whatever Python code
adds with the :func:`builtin` decorator::

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

Types in signatures are names of the language's value types: ``int``,
``float`` (also accepts ints), ``number`` (int or float), ``bool``, ``str``, ``list``, ``token``,
``context``, ``dist`` (any distribution), ``nextdist`` (a next-token
distribution), ``constraint``, ``EOS`` and ``any``; ``a|b`` is a union.
"""

from __future__ import annotations

import inspect
import keyword
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from .. import distributions as _d
from ..context import LMContext
from ..distributions import Distribution, NextToken, Token
from .values import EOS, OpError, freeze, is_int, is_number, show, type_name

TYPES = ("int", "float", "number", "bool", "str", "list", "token", "context", "dist", "nextdist",
         "constraint", "EOS", "none", "any")

#: words of the language, which can never name a builtin
KEYWORDS = frozenset(
    "program observe condition factor twist finish return break continue pass if elif else "
    "for in repeat while where and or not True False".split()
)


def _is_constraint(v) -> bool:
    from ..constraints import TokenConstraint

    return isinstance(v, TokenConstraint)


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": is_int,
    "float": lambda v: is_number(v) and not isinstance(v, bool),
    "number": lambda v: is_number(v) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, tuple),
    "token": lambda v: isinstance(v, Token),
    "context": lambda v: isinstance(v, LMContext),
    "dist": lambda v: isinstance(v, Distribution),
    "nextdist": lambda v: isinstance(v, NextToken),
    "constraint": _is_constraint,
    "EOS": lambda v: v is EOS,
    "none": lambda v: v is None,
    "any": lambda v: True,
}


def fits(value: Any, spec: str) -> bool:
    """Whether ``value`` has the type ``spec`` (e.g. ``"str|list"``)."""
    return any(_CHECKS[t](value) for t in spec.split("|"))


_NICE = {"dist": "a distribution", "nextdist": "a next-token distribution",
         "constraint": "a token constraint", "context": "a context", "token": "a token",
         "none": "nothing", "number": "a number"}


def describe_type(spec: str) -> str:
    """``"str|list"`` -> ``"str or list"``; ``"dist"`` -> ``"a distribution"``."""
    parts = [_NICE.get(p, p) for p in spec.split("|")]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


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
        try:
            result = self.fn(lm, *args) if self.needs_lm else self.fn(*args)
        except OpError:
            raise
        except (ValueError, TypeError, ArithmeticError, IndexError, KeyError, LookupError) as exc:
            raise OpError(f"{self.name}(): {exc}") from exc
        except Exception as exc:  # a registered Python builtin failed
            raise OpError(f"{self.name}() raised {type(exc).__name__}: {exc}") from exc
        return freeze(result)


_PY_TYPES = {str: "str", int: "int", float: "float", bool: "bool", list: "list", tuple: "list",
             Token: "token", LMContext: "context"}


def _annotation_type(ann) -> str:
    if ann is inspect.Parameter.empty:
        return "any"
    if isinstance(ann, str):
        ann = ann.strip()
        if ann in TYPES:
            return ann
        return {"tuple": "list", "Token": "token", "LMContext": "context"}.get(ann, "any")
    return _PY_TYPES.get(ann, "any")


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
            raise ValueError(f"a builtin's name must be an identifier, got {name!r}")
        if name.startswith("_"):
            raise ValueError(f"builtin names may not start with '_': {name!r}")
        if name in KEYWORDS or keyword.iskeyword(name):
            raise ValueError(f"{name!r} is a keyword and cannot name a builtin")
        if name in self._entries and not replace:
            raise ValueError(
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
        self.add(Builtin(name, value=value, is_constant=True, returns=_value_type(value), doc=doc),
                 replace=replace)


_TYPE_NAMES = {"distribution": "dist", "next-token distribution": "nextdist"}


def _value_type(value) -> str:
    """The static type (one of :data:`TYPES`) of a value."""
    t = type_name(value)
    t = _TYPE_NAMES.get(t, t)
    return t if t in TYPES else "any"


def _entry_for(f: Callable, *, name, args, min_args, max_args, returns, pure, needs_lm) -> Builtin:
    if not callable(f):
        raise TypeError(f"@builtin needs a function, got {f!r}")
    name = name or getattr(f, "__name__", None)
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        sig = None
    arg_types, lo, hi, rest = None, 0, None, "any"
    if sig is not None:
        params = list(sig.parameters.values())
        if needs_lm and params:
            params = params[1:]
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        star = [p for p in params if p.kind == p.VAR_POSITIONAL]
        arg_types = tuple(_annotation_type(p.annotation) for p in positional)
        lo = sum(1 for p in positional if p.default is p.empty)
        hi = None if star else len(positional)
        rest = _annotation_type(star[0].annotation) if star else "any"
        if returns is None:
            returns = _annotation_type(sig.return_annotation)
    if args is not None:
        arg_types = tuple(args)
        for t in arg_types:
            for part in t.split("|"):
                if part not in TYPES:
                    raise ValueError(f"unknown type {part!r} in args of builtin {name!r}; types: {TYPES}")
        if sig is None:
            lo, hi = len(arg_types), len(arg_types)
    if min_args is not None:
        lo = min_args
    if max_args != -1:
        hi = max_args
    returns = returns or "any"
    for part in returns.split("|"):
        if part not in TYPES:
            raise ValueError(f"unknown return type {part!r} of builtin {name!r}; types: {TYPES}")
    return Builtin(name, fn=f, arg_types=arg_types, min_args=lo, max_args=hi, rest_type=rest,
                   returns=returns, pure=pure, needs_lm=needs_lm,
                   doc=(inspect.getdoc(f) or "").split("\n")[0])


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


# -- the language's own builtins ---------------------------------------------------

_def = BUILTINS.function


def _lm(lm, prompt: str = "", constraint=None) -> LMContext:
    """lm(prompt[, constraint]): a context on the model the program runs
    with; a sequence constraint (regex, grammar, json_schema, choice)
    restricts everything generated in it."""
    if lm is None:
        raise OpError("lm(): this program was started without a language model")
    if constraint is None:
        return lm.context(prompt)
    if _is_constraint(constraint):
        raise OpError(
            f"lm(): {constraint!r} is a token constraint: use it on each token, "
            "tok ~ ctx.next_token() where ...; lm(prompt, c) takes a sequence constraint "
            "(regex, grammar, json_schema, choice)"
        )
    return lm.context(prompt, constraint=constraint)


_def(_lm, name="lm", args=("str", "any"), min_args=0, max_args=2, returns="context", needs_lm=True)
BUILTINS.constant("EOS", EOS, doc="the end-of-sequence token")
BUILTINS.constant("inf", math.inf, doc="floating-point infinity (log 0 is -inf)")
BUILTINS.constant("pi", math.pi, doc="3.14159...")


# distributions


def _bernoulli(p: float) -> Distribution:
    """bernoulli(p): True with probability p."""
    return _d.Bernoulli(p)


def _categorical(probs: tuple, values: tuple | None = None) -> Distribution:
    """categorical(probs[, values]): values[i] with probability probs[i]
    (values default to 0, 1, ...)."""
    if not all(is_number(p) for p in probs):
        raise OpError("categorical(): probs must be a list of numbers")
    return _d.Categorical(list(probs), values=None if values is None else list(values))


def _geometric(p: float) -> Distribution:
    """geometric(p): failures before the first success, P(k) = (1-p)^k p."""
    return _d.Geometric(p)


def _uniform_int(lo: int, hi: int) -> Distribution:
    """uniform_int(lo, hi): an int from lo to hi, both included."""
    if hi < lo:
        raise OpError(f"uniform_int(): hi ({hi}) must be >= lo ({lo})")
    if hi - lo >= 1_000_000:
        raise OpError("uniform_int(): the range has more than a million values")
    n = hi - lo + 1
    return _d.Categorical([1.0 / n] * n, values=range(lo, hi + 1))


_def(_bernoulli, name="bernoulli", args=("float",), returns="dist", pure=True)
_def(_categorical, name="categorical", args=("list", "list"), min_args=1, max_args=2,
     returns="dist", pure=True)
_def(_geometric, name="geometric", args=("float",), returns="dist", pure=True)
_def(_uniform_int, name="uniform_int", args=("int", "int"), returns="dist", pure=True)


# token constraints


def _lacks(chars: str):
    """lacks(chars): tokens whose text has none of the characters."""
    from ..constraints import lacks

    return lacks(chars)


def _contains(text: str):
    """contains(text): tokens whose text contains text."""
    from ..constraints import contains

    return contains(text)


_def(_lacks, name="lacks", args=("str",), returns="constraint", pure=True)
_def(_contains, name="contains", args=("str",), returns="constraint", pure=True)


def _optional_constraints() -> None:
    """The sequence constraints ``regex``, ``grammar``, ``json_schema`` and
    ``choice``, when ``ppl.constraints`` provides them: languages of whole
    texts, attached to a context with ``lm(prompt, constraint)``."""
    try:
        from .. import constraints
    except Exception:  # pragma: no cover - a broken constraints package
        return
    specs = {"regex": ("str",), "grammar": ("str",), "json_schema": ("str",), "choice": ("list",)}
    for name, args in specs.items():
        fn = getattr(constraints, name, None)
        if callable(fn) and name not in BUILTINS:
            BUILTINS.add(Builtin(name, fn=fn, arg_types=args, min_args=1, max_args=1, returns="any",
                                 doc=(inspect.getdoc(fn) or "").split("\n")[0]))


_optional_constraints()


# text


def _len(x) -> int:
    """len(x): characters of a string, elements of a list, tokens generated
    in a context, characters of a token."""
    if isinstance(x, Token):
        return len(x.text)
    return len(x)


def _words(s: str) -> tuple:
    """words(s): the whitespace-separated words of s."""
    return tuple(s.split())


def _lower(s: str) -> str:
    """lower(s): s in lower case."""
    return s.lower()


def _upper(s: str) -> str:
    """upper(s): s in upper case."""
    return s.upper()


def _strip(s: str) -> str:
    """strip(s): s without leading and trailing whitespace."""
    return s.strip()


def _startswith(s: str, prefix: str) -> bool:
    """startswith(s, prefix)."""
    return s.startswith(prefix)


def _endswith(s: str, suffix: str) -> bool:
    """endswith(s, suffix)."""
    return s.endswith(suffix)


def _count(s, sub) -> int:
    """count(s, sub): non-overlapping occurrences of sub in a string, or of
    a value in a list."""
    if isinstance(s, str):
        if not isinstance(sub, (str, Token)):
            raise OpError(f"count() on a string needs a string to count, got {show(sub)}")
        return s.count(sub if isinstance(sub, str) else sub.text)
    from .values import eq

    return sum(1 for x in s if eq(x, sub))


_VOWEL_GROUP = re.compile(r"[aeiouy]+")


def syllables(s: str) -> int:
    """syllables(s): an estimate of the syllables in s: per word, the groups
    of vowels (a e i o u y), less a silent final e, at least one."""
    total = 0
    for word in re.findall(r"[a-z]+", s.lower()):
        n = len(_VOWEL_GROUP.findall(word))
        if word.endswith("e") and not word.endswith(("le", "ee")) and n > 1:
            n -= 1
        total += max(n, 1)
    return total


def to_text(x) -> str:
    """str(x): the text of a value (a token's text, a list as [a, b])."""
    if isinstance(x, str):
        return x
    if isinstance(x, Token):
        return x.text
    if isinstance(x, tuple):
        return "[" + ", ".join(repr(v) if isinstance(v, str) else to_text(v) for v in x) + "]"
    if isinstance(x, LMContext):
        return x.text
    if isinstance(x, bool):
        return "True" if x else "False"
    return str(x)


def _int(x) -> int:
    """int(x): a number or a numeric string as an int (floats truncate)."""
    if isinstance(x, str):
        return int(x.strip())
    if isinstance(x, float) and not math.isfinite(x):
        raise OpError(f"int(): cannot convert {x} to an int")
    return int(x)


def _float(x) -> float:
    """float(x): a number or a numeric string as a float."""
    return float(x.strip() if isinstance(x, str) else x)


def _range(a: int, b: int | None = None) -> tuple:
    """range(n) is [0, ..., n-1]; range(a, b) is [a, ..., b-1]."""
    lo, hi = (0, a) if b is None else (a, b)
    if hi - lo > 1_000_000:
        raise OpError(f"range() would have {hi - lo} elements, more than a million")
    return tuple(range(lo, hi))


_def(_len, name="len", args=("str|list|context|token",), returns="int", pure=True)
_def(_words, name="words", args=("str",), returns="list", pure=True)
_def(_lower, name="lower", args=("str",), returns="str", pure=True)
_def(_upper, name="upper", args=("str",), returns="str", pure=True)
_def(_strip, name="strip", args=("str",), returns="str", pure=True)
_def(_startswith, name="startswith", args=("str", "str"), returns="bool", pure=True)
_def(_endswith, name="endswith", args=("str", "str"), returns="bool", pure=True)
_def(_count, name="count", args=("str|list", "any"), returns="int", pure=True)
_def(syllables, name="syllables", args=("str",), returns="int", pure=True)
_def(to_text, name="str", args=("any",), returns="str", pure=True)
_def(_int, name="int", args=("float|str|bool",), returns="int", pure=True)
_def(_float, name="float", args=("float|str|bool",), returns="float", pure=True)
_def(_range, name="range", args=("int", "int"), min_args=1, max_args=2, returns="list", pure=True)


# maths


def _log(x: float) -> float:
    """log(x): natural logarithm; log(0) is -inf."""
    if x == 0:
        return -math.inf
    if x < 0:
        raise OpError(f"log() of a negative number ({x})")
    return math.log(x)


def _exp(x: float) -> float:
    """exp(x): e to the x (inf when too large)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _sqrt(x: float) -> float:
    """sqrt(x)."""
    if x < 0:
        raise OpError(f"sqrt() of a negative number ({x})")
    return math.sqrt(x)


def _extremum(name: str, pick):
    def fn(*xs):
        items = xs[0] if len(xs) == 1 and isinstance(xs[0], tuple) else xs
        if not items:
            raise OpError(f"{name}() of an empty list")
        if not (all(is_number(x) for x in items) or all(isinstance(x, str) for x in items)):
            raise OpError(f"{name}() needs numbers or strings, got {', '.join(show(x) for x in items[:3])}")
        return pick(items)

    fn.__name__ = name
    return fn


def _abs(x: float):
    """abs(x)."""
    return abs(x)


def _round(x: float, digits: int | None = None):
    """round(x[, digits])."""
    return round(x) if digits is None else round(x, digits)


def _sum(xs: tuple):
    """sum(list): the sum of a list of numbers."""
    if not all(is_number(x) for x in xs):
        raise OpError("sum() needs a list of numbers")
    return sum(xs)


_def(_log, name="log", args=("float",), returns="float", pure=True)
_def(_exp, name="exp", args=("float",), returns="float", pure=True)
_def(_sqrt, name="sqrt", args=("float",), returns="float", pure=True)
_def(_extremum("min", min), name="min", args=(), min_args=1, max_args=None, returns="any", pure=True)
_def(_extremum("max", max), name="max", args=(), min_args=1, max_args=None, returns="any", pure=True)
_def(_abs, name="abs", args=("float",), returns="number", pure=True)
_def(_round, name="round", args=("float", "int"), min_args=1, max_args=2, returns="number", pure=True)
_def(_sum, name="sum", args=("list",), returns="number", pure=True)

#: the names of the language's own builtins (the rest were added by users)
STANDARD = frozenset(BUILTINS.names())
