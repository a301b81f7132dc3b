"""Sequence constraints with state: regex, Lark grammars, JSON schema, choice.

A :class:`SequenceConstraint` describes a language ``L`` of texts. Attached to
a context (``lm.context(prompt, constraint=c)`` or ``ctx.constrain(c)``) it
restricts every ``ctx.next_token()`` to the tokens that keep the generated
text a viable prefix of some string in ``L``, and allows EOS only where the
text is in ``L``. Sampling such a next-token distribution draws from
``p(. | allowed)`` and multiplies the weight by ``p(allowed)``, so the target
is the language model restricted to ``L``::

    gamma(s) = p(s) * 1[text(s) in L]      (s ends with EOS)

The masks come from `llguidance <https://github.com/guidance-ai/llguidance>`_
(``LLMatcher``), which reads Lark-syntax grammars, regular expressions and JSON
schemas and computes a token mask for a whole vocabulary in microseconds. The
matcher state of a context is a :class:`ConstraintState`: immutable by
convention (advancing it copies the matcher with ``deep_copy`` and consumes
the token in the copy), so particles that share a prefix share its state and
its cached mask, and cloning a particle copies nothing.

**Tokenisations.** By default the masks allow *every* tokenisation of a viable
text (llguidance's ``no_forcing`` option), which is what makes the target
exactly ``p`` restricted to ``L``. With ``fast_forward=True`` llguidance forces
the canonical tokenisation of text the grammar determines, and the context
appends those forced tokens in one batched step before the next free token;
observing them multiplies the weight by their probability under the model.
The target is then ``p`` restricted to the token sequences llguidance accepts
(text in ``L``, and every grammar-forced span tokenised canonically); see
``docs/constraints.md``.
"""

from __future__ import annotations

import json
import re
import weakref
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConstraintError

__all__ = [
    "ConstraintError",
    "SequenceConstraint",
    "ConstraintState",
    "regex",
    "grammar",
    "json_schema",
    "choice",
    "llg_tokenizer",
]


def _llguidance():
    try:
        import llguidance
    except ImportError as e:  # pragma: no cover - llguidance is a dependency
        raise ConstraintError(
            "sequence constraints (regex, grammar, json_schema, choice) need the "
            "'llguidance' package: pip install llguidance"
        ) from e
    return llguidance


# --- llguidance tokenizers, built once per language model -------------------------

_TOKENIZERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _BytesTokenizer:
    """What ``llguidance.TokenizerWrapper`` reads from a tokenizer, built from a
    language model's ``vocab_bytes``: tokens with no bytes (EOS, other special
    tokens) are marked special; text is tokenised by the model's ``encode``
    when it can, else greedily (longest token first)."""

    def __init__(self, lm):
        eos = int(lm.eos_token_id)
        raw = [bytes(b) for b in lm.vocab_bytes]
        self.eos_token_id = eos
        self.bos_token_id = None
        self.special_token_ids = [i for i, b in enumerate(raw) if not b or i == eos]
        special = set(self.special_token_ids)
        self.tokens = [
            f"<|ppl_special_{i}|>".encode() if i in special else b for i, b in enumerate(raw)
        ]
        self._by_bytes: dict[bytes, int] = {}
        for i, b in enumerate(raw):
            if i not in special:
                self._by_bytes.setdefault(b, i)
        self._longest = max((len(b) for b in self._by_bytes), default=1)
        self._lm = lm

    def __call__(self, s) -> list[int]:
        data = s.encode("utf-8") if isinstance(s, str) else bytes(s)
        try:  # the model's own tokenisation, when it has one
            ids = [int(t) for t in self._lm.encode(data.decode("utf-8"))]
            if b"".join(self._lm.vocab_bytes[t] for t in ids) == data:
                return ids
        except Exception:  # llguidance must never see an exception here
            pass
        out, pos = [], 0
        while pos < len(data):
            for n in range(min(self._longest, len(data) - pos), 0, -1):
                t = self._by_bytes.get(data[pos : pos + n])
                if t is not None:
                    out.append(t)
                    pos += n
                    break
            else:
                pos += 1  # a byte no token spells: skipped (only forcing uses this)
        return out


def llg_tokenizer(lm):
    """The ``llguidance.LLTokenizer`` of ``lm`` (built once per model, cached):
    from its Hugging Face fast tokenizer (``lm.tokenizer``) when it has one,
    else from ``lm.vocab_bytes`` and ``lm.eos_token_id``."""
    cached = _TOKENIZERS.get(lm)
    if cached is not None:
        return cached
    llg = _llguidance()
    hf_tok = lm.tokenizer
    tok = None
    if hf_tok is not None and hasattr(hf_tok, "backend_tokenizer"):
        import llguidance.hf

        tok = llguidance.hf.from_tokenizer(hf_tok, eos_token=int(lm.eos_token_id))
        if tok.vocab_size > lm.vocab_size:
            tok = None  # the tokenizer knows tokens the model cannot emit: use the byte table
    if tok is None:
        tok = llg.LLTokenizer(llg.TokenizerWrapper(_BytesTokenizer(lm)))
    _TOKENIZERS[lm] = tok
    return tok


# --- constraints --------------------------------------------------------------------

_NO_FORCING = '%llguidance { "no_forcing": true }\n'


class SequenceConstraint:
    """A language ``L`` given to llguidance as a Lark-syntax grammar.

    Build one with :func:`regex`, :func:`grammar`, :func:`json_schema` or
    :func:`choice`; attach it with ``lm.context(prompt, constraint=c)`` or
    ``ctx.constrain(c)``. The grammar is checked when the constraint is built
    (errors raise :class:`ConstraintError` naming the problem).
    """

    def __init__(self, lark: str, description: str, *, fast_forward: bool = False):
        self.lark = lark
        self.description = description
        self.fast_forward = bool(fast_forward)
        llg = _llguidance()
        text = lark if self.fast_forward else _NO_FORCING + lark
        self._grammar = llg.LLMatcher.grammar_from_lark(text)
        is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(self._grammar)
        if is_error:
            raise ConstraintError(f"{description}: {messages[0] if messages else 'invalid grammar'}")

    # a value: shared by every particle, never copied when one is cloned
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    def matcher(self, lm):
        """A fresh ``llguidance.LLMatcher`` for this language on ``lm``."""
        llg = _llguidance()
        m = llg.LLMatcher(llg_tokenizer(lm), self._grammar, log_level=0)
        if m.is_error():
            raise ConstraintError(f"{self.description}: {m.get_error()}")
        return m

    def __repr__(self) -> str:
        return self.description + (" [fast_forward]" if self.fast_forward else "")


def _bare_name(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*(\.lark)?", text.strip()) is not None


def _short(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def regex(pattern: str, *, fast_forward: bool = False) -> SequenceConstraint:
    """Texts that fully match the regular expression ``pattern`` (Rust ``regex``
    syntax, close to Python's; ``\\d`` means ``[0-9]``)."""
    if not isinstance(pattern, str):
        raise ConstraintError(f"regex() needs a pattern string, got {pattern!r}")
    llg = _llguidance()
    body = llg.regex_to_lark(pattern)
    return SequenceConstraint(f"start: /{body}/\n", f"regex({pattern!r})", fast_forward=fast_forward)


def grammar(lark_text: str, *, fast_forward: bool = False) -> SequenceConstraint:
    """Texts generated by a context-free grammar written in Lark syntax (as
    llguidance reads it: ``start`` is the start rule, ``%ignore``,
    ``%import common.X``, ``/regex/`` terminals, ``?rule`` and ``-> alias``).

    A bare name such as ``"json"`` or ``"arithmetic.lark"`` names a grammar
    shipped in ``grammar/`` (see ``ppl.grammars.available()``)."""
    if not isinstance(lark_text, str) or not lark_text.strip():
        raise ConstraintError(f"grammar() needs Lark grammar text or a shipped grammar's name, got {lark_text!r}")
    name = None
    if _bare_name(lark_text):
        shipped = _shipped()
        try:
            name = lark_text.strip()
            lark_text = shipped.read(name)
        except FileNotFoundError as e:
            raise ConstraintError(str(e)) from None
    desc = f"grammar({name!r})" if name else f"grammar({_short(lark_text)!r})"
    return SequenceConstraint(lark_text, desc, fast_forward=fast_forward)


def _shipped():
    """The ``ppl.grammars`` package of shipped ``.lark`` files (imported on
    use: the constraints do not depend on where the files are installed)."""
    import importlib

    return importlib.import_module("ppl.grammars")


def json_schema(
    schema, *, whitespace_flexible: bool = False, fast_forward: bool = False
) -> SequenceConstraint:
    """JSON documents valid under ``schema`` (a dict or a JSON string).

    With ``whitespace_flexible=False`` (the default) the JSON is written
    compactly except for a single space after ``:`` and ``,``, which keeps a
    small model from padding with whitespace; ``True`` allows any JSON
    whitespace between tokens."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise ConstraintError(f"json_schema(): the schema is not valid JSON: {e}") from None
    if not isinstance(schema, (dict, bool)):
        raise ConstraintError(f"json_schema() needs a JSON schema (a dict or JSON text), got {schema!r}")
    spec = dict(schema) if isinstance(schema, dict) else {} if schema else {"not": {}}
    options = dict(spec.get("x-guidance", {}))
    options.setdefault("whitespace_flexible", bool(whitespace_flexible))
    if not whitespace_flexible:
        options.setdefault("item_separator", ", ")
        options.setdefault("key_separator", ": ")
    spec["x-guidance"] = options
    text = json.dumps(spec)
    return SequenceConstraint(
        f"start: %json {text}\n", f"json_schema({_short(json.dumps(schema), 60)})", fast_forward=fast_forward
    )


def choice(options: Iterable[str], *, fast_forward: bool = False) -> SequenceConstraint:
    """Exactly one of the strings ``options``."""
    if isinstance(options, str):
        raise ConstraintError(f"choice() needs a list of strings, got the string {options!r}")
    options = list(options)
    if not options or not all(isinstance(o, str) for o in options):
        raise ConstraintError(f"choice() needs a non-empty list of strings, got {options!r}")
    alts = " | ".join(json.dumps(o) for o in options)
    return SequenceConstraint(f"start: {alts}\n", f"choice({options!r})", fast_forward=fast_forward)


# --- the state of a constrained context ---------------------------------------------


def _bits_to_mask(bits: bytes, n_llg: int, vocab_size: int) -> np.ndarray:
    mask = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), bitorder="little")[:n_llg].astype(bool)
    if n_llg < vocab_size:
        mask = np.concatenate([mask, np.zeros(vocab_size - n_llg, dtype=bool)])
    elif n_llg > vocab_size:
        mask = mask[:vocab_size]
    return mask


class ConstraintState:
    """The matchers of one context at one prefix, one per attached constraint.

    Immutable by convention: :meth:`advance` returns a new state (each matcher
    copied with ``deep_copy`` and advanced by the token), so a state and its
    cached mask can be shared by every clone that holds the same prefix.
    A state in which a token was refused, or no token is allowed, is *dead*:
    its mask is all ``False`` and the next constrained sample weighs zero.
    """

    __slots__ = ("lm", "constraints", "matchers", "dead", "ended", "_mask", "_forced", "__weakref__")

    def __init__(
        self, lm, constraints: Sequence[SequenceConstraint], matchers, dead: bool = False, ended: bool = False
    ):
        self.lm = lm
        self.constraints = tuple(constraints)
        self.matchers = tuple(matchers)
        self.dead = dead or any(m.is_error() for m in self.matchers)
        self.ended = ended  # EOS was accepted: the text is complete and final
        self._mask: np.ndarray | None = None
        self._forced: tuple[int, ...] | None = None

    # a value: shared by every particle, never copied when one is cloned
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    @classmethod
    def start(cls, lm, constraints: Sequence[SequenceConstraint], token_ids: Sequence[int] = ()):
        """A fresh state, advanced through ``token_ids`` (text already generated)."""
        state = cls(lm, constraints, [c.matcher(lm) for c in constraints])
        return state.advance_many(token_ids) if token_ids else state

    def with_constraint(self, constraint: SequenceConstraint, token_ids: Sequence[int]):
        """This state plus ``constraint``, which reads ``token_ids`` first."""
        extra = ConstraintState.start(self.lm, [constraint], token_ids)
        return ConstraintState(
            self.lm, self.constraints + extra.constraints,
            [m.deep_copy() for m in self.matchers] + list(extra.matchers),
            dead=self.dead or extra.dead,
            ended=self.ended and extra.ended,
        )

    def advance(self, token_id: int) -> "ConstraintState":
        return self.advance_many((token_id,))

    def advance_many(self, token_ids: Sequence[int]) -> "ConstraintState":
        if self.dead:
            return self
        ids = [int(t) for t in token_ids]
        if not ids:
            return self
        if self.ended:
            return ConstraintState(self.lm, self.constraints, self.matchers, dead=True)
        eos = self.lm.eos_token_id
        end = eos in ids
        if end:
            if ids.index(eos) != len(ids) - 1:
                return ConstraintState(self.lm, self.constraints, self.matchers, dead=True)
            ids = ids[:-1]
        state = self
        if ids:
            matchers, dead = [], False
            for m in self.matchers:
                m = m.deep_copy()
                if m.try_consume_tokens(ids) != len(ids) or m.is_error():
                    dead = True
                matchers.append(m)
            state = ConstraintState(self.lm, self.constraints, matchers, dead)
        if end:
            # EOS is not fed to the matchers: it is allowed exactly where the
            # text is complete, and ends the text.
            ok = state.accepting
            state = ConstraintState(self.lm, self.constraints, state.matchers, dead=not ok, ended=ok)
        return state

    def allows(self, token_ids: Sequence[int]) -> bool:
        """Whether the tokens can be consumed one after another from here."""
        if self.dead:
            return False
        ids = [int(t) for t in token_ids]
        if self.ended:
            return not ids
        eos = self.lm.eos_token_id
        if eos in ids:
            return self.advance_many(ids).ended
        return all(m.validate_tokens(ids) == len(ids) for m in self.matchers)

    def mask(self) -> np.ndarray:
        """``bool[vocab_size]``: the tokens that keep the text viable (EOS only
        where it is complete). Computed once per state."""
        if self._mask is None:
            V = self.lm.vocab_size
            if self.dead or self.ended:
                mask = np.zeros(V, dtype=bool)
            else:
                mask = np.ones(V, dtype=bool)
                for m in self.matchers:
                    n = llg_tokenizer(self.lm).vocab_size
                    mask &= _bits_to_mask(m.compute_bitmask(), n, V)
                    if m.is_error():
                        mask[:] = False
            mask.setflags(write=False)
            self._mask = mask
        return self._mask

    @property
    def accepting(self) -> bool:
        """Whether the text so far is complete (in every constraint's language)."""
        return not self.dead and (self.ended or all(m.is_accepting() for m in self.matchers))

    def forced(self) -> tuple[int, ...]:
        """Tokens the constraints force next (fast-forward), or ``()``.

        Only constraints built with ``fast_forward=True`` force tokens; with
        several constraints, all must force and the common prefix is used."""
        if self._forced is None:
            forced: tuple[int, ...] = ()
            if (
                not self.dead
                and not self.ended
                and self.matchers
                and all(c.fast_forward for c in self.constraints)
            ):
                lists = [tuple(int(t) for t in m.compute_ff_tokens()) for m in self.matchers]
                n = min(len(x) for x in lists)
                common = []
                for i in range(n):
                    if all(x[i] == lists[0][i] for x in lists):
                        common.append(lists[0][i])
                    else:
                        break
                eos = self.lm.eos_token_id
                if eos in common:
                    common = common[: common.index(eos)]
                forced = tuple(common)
            self._forced = forced
        return self._forced

    def __repr__(self) -> str:
        what = ", ".join(repr(c) for c in self.constraints)
        flag = " dead" if self.dead else " ended" if self.ended else (" accepting" if self.accepting else "")
        return f"<ConstraintState {what}{flag}>"
