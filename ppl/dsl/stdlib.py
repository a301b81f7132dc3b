"""The steer language's own builtins, each registered in
:data:`~ppl.dsl.builtins.BUILTINS` where it is defined: ``lm`` (a context
on the program's language model) and the constants ``EOS``, ``inf``, ``pi``;
distributions (``bernoulli``, ``categorical``, ``geometric``,
``uniform_int``); token constraints (``lacks``, ``contains``, ``no_special``,
``matches_token``, ``token_predicate`` of a builtin ``str -> bool``) and, when
:mod:`ppl.constraints` provides them, the sequence constraints ``regex``,
``grammar``, ``json_schema``, ``choice``; text (``len``, ``words``,
``lower`` ... ``split``, ``join``, ``replace``, ``syllables``, ``str``, ``int``,
``float``, ``range``: each charges its work and checks the size of what it builds); and
maths (``log``, ``exp``, ``sqrt``, ``min``, ``max``, ``abs``, ``round``,
``sum``). The reference is ``docs/dsl.md``.
"""

from __future__ import annotations

import functools
import inspect
import math
import re

from .. import constraints
from ..constraints import TokenConstraint
from ..context import LMContext
from ..distributions import Bernoulli, Categorical, Distribution, Geometric, Token
from ..errors import ArgumentError
from .builtins import BUILTINS, Builtin, builtin
from .limits import budget
from .operators import OpError, eq
from .values import EOS, is_int, is_number, short, show


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
            f"lm(): {short(constraint)} is a token constraint: use it on each token, "
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
    budget().charge(len(probs))
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
    n = hi - lo + 1
    budget().length(n, "list of values")
    return Categorical([1.0 / n] * n, values=range(lo, hi + 1))


@builtin(name="lacks", args=("str",), returns="constraint", pure=True)
def _lacks(chars: str):
    """lacks(chars): tokens whose text has none of the characters."""
    return constraints.lacks(chars)


@builtin(name="contains", args=("str",), returns="constraint", pure=True)
def _contains(text: str):
    """contains(text): tokens whose text contains text."""
    return constraints.contains(text)


@builtin(name="no_special", args=(), returns="constraint", pure=True)
def _no_special():
    """no_special(): every token except the model's special tokens (EOS stays
    allowed); combine it with and: lacks("e") and no_special()."""
    return constraints.no_special()


@builtin(name="not_eos", args=(), returns="constraint", pure=True)
def _not_eos():
    """not_eos(): every token except EOS (the text may not end here)."""
    return constraints.not_eos()


@functools.lru_cache(maxsize=256)
def _matches_token_cached(pattern: str):
    return constraints.matches_token(pattern)


@builtin(name="matches_token", args=("str",), returns="constraint", pure=True)
def _matches_token(pattern: str):
    """matches_token(pattern): tokens whose whole text matches the regular
    expression (Python re.fullmatch; EOS counts as the empty text)."""
    try:
        return _matches_token_cached(pattern)
    except ArgumentError as exc:
        raise OpError(str(exc)) from None


@functools.lru_cache(maxsize=256)
def _token_predicate_cached(fn):
    return constraints.token_predicate(fn, name=getattr(fn, "__name__", None))


@builtin(name="token_predicate", args=("any",), returns="constraint")
def _token_predicate(predicate):
    """token_predicate(NAME): tokens whose text the builtin NAME (str -> bool)
    accepts; EOS is given the empty text. Each token of a model is checked
    once per call site."""
    if not callable(predicate):
        raise OpError("token_predicate() takes the name of a builtin from str to bool, "
                      f"got {show(predicate)}")
    return _token_predicate_cached(predicate)


def _optional_constraints() -> None:
    """The sequence constraints ``regex``, ``grammar``, ``json_schema`` and
    ``choice``, when ``ppl.constraints`` provides them: languages of whole
    texts, attached to a context with ``lm(prompt, constraint)``."""
    specs = {"regex": ("str",), "grammar": ("str",), "json_schema": ("str",), "choice": ("list",)}
    for name, args in specs.items():
        fn = getattr(constraints, name, None)
        if callable(fn) and name not in BUILTINS:
            first = next(iter(inspect.signature(fn).parameters), None)
            BUILTINS.add(Builtin(name, fn=fn, arg_types=args, min_args=1, max_args=1, returns="any",
                                 arg_names=(first,) if first else None,
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
    budget().bulk(len(s))
    return tuple(s.split())


@builtin(name="lower", args=("str",), returns="str", pure=True)
def _lower(s: str) -> str:
    """lower(s): s in lower case."""
    budget().bulk(len(s))
    return s.lower()


@builtin(name="upper", args=("str",), returns="str", pure=True)
def _upper(s: str) -> str:
    """upper(s): s in upper case."""
    budget().bulk(len(s))
    return s.upper()


@builtin(name="strip", args=("str",), returns="str", pure=True)
def _strip(s: str) -> str:
    """strip(s): s without leading and trailing whitespace."""
    budget().bulk(len(s))
    return s.strip()


@builtin(name="startswith", args=("str", "str"), returns="bool", pure=True)
def _startswith(s: str, prefix: str) -> bool:
    """startswith(s, prefix)."""
    return s.startswith(prefix)


@builtin(name="endswith", args=("str", "str"), returns="bool", pure=True)
def _endswith(s: str, suffix: str) -> bool:
    """endswith(s, suffix)."""
    return s.endswith(suffix)


@builtin(name="split", args=("str", "str"), min_args=1, max_args=2, returns="list", pure=True)
def _split(s: str, sep: str | None = None) -> tuple:
    """split(s, sep): the parts of s between occurrences of sep (split(s):
    the whitespace-separated words, as words(s))."""
    budget().bulk(len(s))
    if sep is None:
        return tuple(s.split())
    if sep == "":
        raise OpError("split() needs a non-empty separator")
    budget().length(s.count(sep) + 1, "list")
    return tuple(s.split(sep))


@builtin(name="join", args=("list", "str"), min_args=1, max_args=2, returns="str", pure=True)
def _join(items: tuple, sep: str = "") -> str:
    """join(items, sep): the strings (or tokens) of items with sep between
    them; join(items): with nothing between."""
    texts = []
    for i, x in enumerate(items):
        if not isinstance(x, (str, Token)):
            raise OpError(f"join() needs a list of strings; item {i} is {show(x)}")
        texts.append(x if isinstance(x, str) else x.text)
    budget().length(sum(map(len, texts)) + len(sep) * max(len(texts) - 1, 0), "string")
    return sep.join(texts)


@builtin(name="replace", args=("str", "str", "str"), returns="str", pure=True)
def _replace(s: str, old: str, new: str) -> str:
    """replace(s, old, new): s with every occurrence of old replaced by new."""
    budget().bulk(len(s))
    n = s.count(old) if old else len(s) + 1
    budget().length(len(s) + n * (len(new) - len(old)), "string")
    return s.replace(old, new)


@builtin(name="count", args=("str|list", "any"), returns="int", pure=True)
def _count(s, sub) -> int:
    """count(s, sub): non-overlapping occurrences of sub in a string, or of
    a value in a list."""
    if isinstance(s, str):
        budget().bulk(len(s))
        if not isinstance(sub, (str, Token)):
            raise OpError(f"count() on a string needs a string to count, got {show(sub)}")
        return s.count(sub if isinstance(sub, str) else sub.text)
    budget().charge(len(s))
    return sum(1 for x in s if eq(x, sub))


_VOWEL_GROUP = re.compile(r"[aeiouy]+")


@builtin(name="syllables", args=("str",), returns="int", pure=True)
def syllables(s: str) -> int:
    """syllables(s): an estimate of the syllables in s: per word, the groups
    of vowels (a e i o u y), less a silent final e, at least one."""
    budget().charge(len(s))
    total = 0
    for word in re.findall(r"[a-z]+", s.lower()):
        n = len(_VOWEL_GROUP.findall(word))
        if word.endswith("e") and not word.endswith(("le", "ee")) and n > 1:
            n -= 1
        total += max(n, 1)
    return total


@builtin(name="str", args=("any",), returns="str", pure=True)
def _str(x) -> str:
    """str(x): the text of a value (a token's text, a list as [a, b]);
    its length is worked out before it is built."""
    b = budget()
    b.length(text_size(x, b.limits.max_length + 1), "string")
    return to_text(x)


def text_size(x, limit: int, memo: dict | None = None) -> int:
    """The length of ``to_text(x)``, or some number above ``limit`` once it
    is known to be longer (each list is measured once, however shared)."""
    if isinstance(x, str):
        return len(x)
    if isinstance(x, tuple):
        memo = {} if memo is None else memo
        size = memo.get(id(x))
        if size is None:
            size = 2 + 2 * max(len(x) - 1, 0)
            for v in x:
                size += text_size(v, limit, memo) + (2 if isinstance(v, str) else 0)
                if size > limit:
                    break
            memo[id(x)] = size
        return size
    if isinstance(x, bool):
        return 5
    if is_int(x):
        return max(1, (abs(x).bit_length() * 30103) // 100000 + 2)
    if isinstance(x, (LMContext, Token)):
        return len(to_text(x))
    return len(str(x)) if isinstance(x, float) else 40


def to_text(x) -> str:
    """The text of a value (a token's text, a list as [a, b])."""
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
    if is_int(x) and x.bit_length() > 13_000:
        raise OpError("str() of an integer of more than 3,900 digits")
    return str(x)


@builtin(name="int", args=("float|str|bool",), returns="int", pure=True)
def _int(x) -> int:
    """int(x): a number or a numeric string as an int (floats truncate)."""
    if isinstance(x, str):
        budget().bulk(len(x))
        return int(x.strip())
    if isinstance(x, float) and not math.isfinite(x):
        raise OpError(f"int(): cannot convert {short(x)} to an int")
    return int(x)


@builtin(name="float", args=("float|str|bool",), returns="float", pure=True)
def _float(x) -> float:
    """float(x): a number or a numeric string as a float."""
    if isinstance(x, str):
        budget().bulk(len(x))
    return float(x.strip() if isinstance(x, str) else x)


@builtin(name="range", args=("int", "int"), min_args=1, max_args=2, returns="list", pure=True)
def _range(a: int, b: int | None = None) -> tuple:
    """range(n) is [0, ..., n-1]; range(a, b) is [a, ..., b-1]."""
    lo, hi = (0, a) if b is None else (a, b)
    budget().length(max(hi - lo, 0), "list")
    return tuple(range(lo, hi))


@builtin(name="log", args=("float",), returns="float", pure=True)
def _log(x: float) -> float:
    """log(x): natural logarithm; log(0) is -inf."""
    if x == 0:
        return -math.inf
    if x < 0:
        raise OpError(f"log() of a negative number ({short(x)})")
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
        raise OpError(f"sqrt() of a negative number ({short(x)})")
    return math.sqrt(x)


def _extremum(name: str, pick):
    def fn(*xs):
        items = xs[0] if len(xs) == 1 and isinstance(xs[0], tuple) else xs
        budget().charge(len(items))
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
    if digits is None:
        return round(x)
    if is_int(x) and digits < 0 and -digits * 3.32 > abs(x).bit_length() + 2:
        return 0  # rounds to a power of ten above |x| (never built)
    if isinstance(x, float):
        digits = max(min(digits, 400), -400)  # past these, round() gives x or 0.0 anyway
    return round(x, digits)


@builtin(name="sum", args=("list",), returns="number", pure=True)
def _sum(xs: tuple):
    """sum(list): the sum of a list of numbers."""
    budget().charge(len(xs))
    if not all(is_number(x) for x in xs):
        raise OpError("sum() needs a list of numbers")
    return sum(xs)


#: the names of the language's own builtins (the rest were added by users)
STANDARD = frozenset(BUILTINS.names())
