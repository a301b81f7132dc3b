"""The steer language's own builtins, each registered in
:data:`~ppl.dsl.builtins.BUILTINS` where it is defined: ``lm`` (a context
on the program's language model) and the constants ``EOS``, ``inf``, ``pi``;
distributions (``bernoulli``, ``categorical``, ``geometric``,
``uniform_int``); token constraints (``lacks``, ``contains``) and, when
:mod:`ppl.constraints` provides them, the sequence constraints ``regex``,
``grammar``, ``json_schema``, ``choice``; text (``len``, ``words``,
``lower`` ... ``syllables``, ``str``, ``int``, ``float``, ``range``); and
maths (``log``, ``exp``, ``sqrt``, ``min``, ``max``, ``abs``, ``round``,
``sum``). The reference is ``docs/dsl.md``.
"""

from __future__ import annotations

import inspect
import math
import re

from .. import constraints
from ..constraints import TokenConstraint
from ..context import LMContext
from ..distributions import Bernoulli, Categorical, Distribution, Geometric, Token
from .builtins import BUILTINS, Builtin, builtin
from .operators import OpError, eq
from .values import EOS, is_number, show


@builtin(name="lm", args=("str", "any"), min_args=0, max_args=2, returns="context", needs_lm=True)
def _lm(lm, prompt: str = "", constraint=None) -> LMContext:
    """lm(prompt[, constraint]): a context on the model the program runs
    with; a sequence constraint (regex, grammar, json_schema, choice)
    restricts everything generated in it."""
    if lm is None:
        raise OpError("lm(): this program was started without a language model")
    if constraint is None:
        return lm.context(prompt)
    if isinstance(constraint, TokenConstraint):
        raise OpError(
            f"lm(): {constraint!r} is a token constraint: use it on each token, "
            "tok ~ ctx.next_token() where ...; lm(prompt, c) takes a sequence constraint "
            "(regex, grammar, json_schema, choice)"
        )
    return lm.context(prompt, constraint=constraint)


BUILTINS.constant("EOS", EOS, doc="the end-of-sequence token")
BUILTINS.constant("inf", math.inf, doc="floating-point infinity (log 0 is -inf)")
BUILTINS.constant("pi", math.pi, doc="3.14159...")


@builtin(name="bernoulli", args=("float",), returns="dist", pure=True)
def _bernoulli(p: float) -> Distribution:
    """bernoulli(p): True with probability p."""
    return Bernoulli(p)


@builtin(name="categorical", args=("list", "list"), min_args=1, max_args=2, returns="dist", pure=True)
def _categorical(probs: tuple, values: tuple | None = None) -> Distribution:
    """categorical(probs[, values]): values[i] with probability probs[i]
    (values default to 0, 1, ...)."""
    if not all(is_number(p) for p in probs):
        raise OpError("categorical(): probs must be a list of numbers")
    return Categorical(list(probs), values=None if values is None else list(values))


@builtin(name="geometric", args=("float",), returns="dist", pure=True)
def _geometric(p: float) -> Distribution:
    """geometric(p): failures before the first success, P(k) = (1-p)^k p."""
    return Geometric(p)


@builtin(name="uniform_int", args=("int", "int"), returns="dist", pure=True)
def _uniform_int(lo: int, hi: int) -> Distribution:
    """uniform_int(lo, hi): an int from lo to hi, both included."""
    if hi < lo:
        raise OpError(f"uniform_int(): hi ({hi}) must be >= lo ({lo})")
    if hi - lo >= 1_000_000:
        raise OpError("uniform_int(): the range has more than a million values")
    n = hi - lo + 1
    return Categorical([1.0 / n] * n, values=range(lo, hi + 1))


@builtin(name="lacks", args=("str",), returns="constraint", pure=True)
def _lacks(chars: str):
    """lacks(chars): tokens whose text has none of the characters."""
    return constraints.lacks(chars)


@builtin(name="contains", args=("str",), returns="constraint", pure=True)
def _contains(text: str):
    """contains(text): tokens whose text contains text."""
    return constraints.contains(text)


def _optional_constraints() -> None:
    """The sequence constraints ``regex``, ``grammar``, ``json_schema`` and
    ``choice``, when ``ppl.constraints`` provides them: languages of whole
    texts, attached to a context with ``lm(prompt, constraint)``."""
    specs = {"regex": ("str",), "grammar": ("str",), "json_schema": ("str",), "choice": ("list",)}
    for name, args in specs.items():
        fn = getattr(constraints, name, None)
        if callable(fn) and name not in BUILTINS:
            BUILTINS.add(Builtin(name, fn=fn, arg_types=args, min_args=1, max_args=1, returns="any",
                                 doc=(inspect.getdoc(fn) or "").split("\n")[0]))


_optional_constraints()


@builtin(name="len", args=("str|list|context|token",), returns="int", pure=True)
def _len(x) -> int:
    """len(x): characters of a string, elements of a list, tokens generated
    in a context, characters of a token."""
    if isinstance(x, Token):
        return len(x.text)
    return len(x)


@builtin(name="words", args=("str",), returns="list", pure=True)
def _words(s: str) -> tuple:
    """words(s): the whitespace-separated words of s."""
    return tuple(s.split())


@builtin(name="lower", args=("str",), returns="str", pure=True)
def _lower(s: str) -> str:
    """lower(s): s in lower case."""
    return s.lower()


@builtin(name="upper", args=("str",), returns="str", pure=True)
def _upper(s: str) -> str:
    """upper(s): s in upper case."""
    return s.upper()


@builtin(name="strip", args=("str",), returns="str", pure=True)
def _strip(s: str) -> str:
    """strip(s): s without leading and trailing whitespace."""
    return s.strip()


@builtin(name="startswith", args=("str", "str"), returns="bool", pure=True)
def _startswith(s: str, prefix: str) -> bool:
    """startswith(s, prefix)."""
    return s.startswith(prefix)


@builtin(name="endswith", args=("str", "str"), returns="bool", pure=True)
def _endswith(s: str, suffix: str) -> bool:
    """endswith(s, suffix)."""
    return s.endswith(suffix)


@builtin(name="count", args=("str|list", "any"), returns="int", pure=True)
def _count(s, sub) -> int:
    """count(s, sub): non-overlapping occurrences of sub in a string, or of
    a value in a list."""
    if isinstance(s, str):
        if not isinstance(sub, (str, Token)):
            raise OpError(f"count() on a string needs a string to count, got {show(sub)}")
        return s.count(sub if isinstance(sub, str) else sub.text)
    return sum(1 for x in s if eq(x, sub))


_VOWEL_GROUP = re.compile(r"[aeiouy]+")


@builtin(name="syllables", args=("str",), returns="int", pure=True)
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


@builtin(name="str", args=("any",), returns="str", pure=True)
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


@builtin(name="int", args=("float|str|bool",), returns="int", pure=True)
def _int(x) -> int:
    """int(x): a number or a numeric string as an int (floats truncate)."""
    if isinstance(x, str):
        return int(x.strip())
    if isinstance(x, float) and not math.isfinite(x):
        raise OpError(f"int(): cannot convert {x} to an int")
    return int(x)


@builtin(name="float", args=("float|str|bool",), returns="float", pure=True)
def _float(x) -> float:
    """float(x): a number or a numeric string as a float."""
    return float(x.strip() if isinstance(x, str) else x)


@builtin(name="range", args=("int", "int"), min_args=1, max_args=2, returns="list", pure=True)
def _range(a: int, b: int | None = None) -> tuple:
    """range(n) is [0, ..., n-1]; range(a, b) is [a, ..., b-1]."""
    lo, hi = (0, a) if b is None else (a, b)
    if hi - lo > 1_000_000:
        raise OpError(f"range() would have {hi - lo} elements, more than a million")
    return tuple(range(lo, hi))


@builtin(name="log", args=("float",), returns="float", pure=True)
def _log(x: float) -> float:
    """log(x): natural logarithm; log(0) is -inf."""
    if x == 0:
        return -math.inf
    if x < 0:
        raise OpError(f"log() of a negative number ({x})")
    return math.log(x)


@builtin(name="exp", args=("float",), returns="float", pure=True)
def _exp(x: float) -> float:
    """exp(x): e to the x (inf when too large)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


@builtin(name="sqrt", args=("float",), returns="float", pure=True)
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


builtin(_extremum("min", min), name="min", args=(), min_args=1, max_args=None, returns="any", pure=True)
builtin(_extremum("max", max), name="max", args=(), min_args=1, max_args=None, returns="any", pure=True)


@builtin(name="abs", args=("float",), returns="number", pure=True)
def _abs(x: float):
    """abs(x)."""
    return abs(x)


@builtin(name="round", args=("float", "int"), min_args=1, max_args=2, returns="number", pure=True)
def _round(x: float, digits: int | None = None):
    """round(x[, digits])."""
    return round(x) if digits is None else round(x, digits)


@builtin(name="sum", args=("list",), returns="number", pure=True)
def _sum(xs: tuple):
    """sum(list): the sum of a list of numbers."""
    if not all(is_number(x) for x in xs):
        raise OpError("sum() needs a list of numbers")
    return sum(xs)


#: the names of the language's own builtins (the rest were added by users)
STANDARD = frozenset(BUILTINS.names())
