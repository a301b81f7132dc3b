"""Haiku: three lines of 5, 7 and 5 syllables.

What it shows: a constraint that needs outside knowledge (how many syllables
a word has), from the CMU Pronouncing Dictionary (the ``pronouncing``
package, which ships its data; install the ``gallery`` extra), with a
vowel-group rule for words it does not know. Each token is drawn by AWRS
(``where_checked``) against a predicate on the whole text: no line may go
over its syllable budget, at most three lines, letters and light punctuation
only. When a line ends (a newline) it must have exactly its count, checked by
the same predicate, so every finished particle is a 5-7-5 haiku.

Counting a word that is still being written is an estimate (" fl" may become
"flower"), so the predicate only checks the budget for finished words and
for the unfinished one by the rule; the exact 5-7-5 check happens on whole
lines.

Good output: three short lines about the autumn wind, 5, 7 and 5 syllables
by the dictionary. The prompt is an instruction, so the documented run sends
it as a user message under the model's chat template (``--chat``). With the
dictionary installed, every word must also be a dictionary word (a word being
written must start one), which keeps the model from padding lines with
made-up words. At the documented settings the default model's best haiku
(P 0.80) is "Autumn wind whispers, / the rustling leaves rest in peace; / a
stark image yet,": on topic and scanning, its last line weak. The counts are
what the program guarantees, not the poetry: a 135M-parameter model writes
clumsy lines, and a low-weight result strings together syllables the CMU
dictionary happens to list ("dai - dae - ee - ai - ai").

Run: ppl run examples/haiku.py --particles 8 --expand 3 --seed 0 --chat
Also written as examples/haiku_fn.py (@ppl.program) and examples/haiku.steer
(the DSL: the same AWRS, with this file's predicates imported as builtins).
"""

from __future__ import annotations

import re
from functools import lru_cache

import ppl

PATTERN = (5, 7, 5)
# An instruction: the documented run sends it as a user message (--chat).
PROMPT = "Write a haiku about the autumn wind."
WORD = re.compile(r"[A-Za-z']+")
ALLOWED = re.compile(r"[A-Za-z' ,.;:!?\n-]*")

try:  # the CMU Pronouncing Dictionary; the rule below covers its absence
    import pronouncing
except ImportError:  # pragma: no cover - the gallery extra installs it
    pronouncing = None


def rule_syllables(word: str) -> int:
    """Vowel groups (``aeiouy``), less a silent final "e", at least one."""
    w = word.lower().strip("'")
    groups = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and groups > 1:
        groups -= 1
    return max(1, groups)


@lru_cache(maxsize=100_000)
def word_syllables(word: str) -> int:
    """Syllables of one word: the CMU dictionary's first pronunciation, else the rule."""
    if pronouncing is not None:
        phones = pronouncing.phones_for_word(word.lower().strip("'"))
        if phones:
            return pronouncing.syllable_count(phones[0])
    return rule_syllables(word)


def syllables(line: str) -> int:
    """Syllables of a line of text (words are runs of letters and apostrophes)."""
    return sum(word_syllables(w) for w in WORD.findall(line))


@lru_cache(maxsize=1)
def _dictionary() -> tuple[frozenset, frozenset]:
    """(words, prefixes of words) of the CMU dictionary; empty without it."""
    if pronouncing is None:
        return frozenset(), frozenset()
    pronouncing.init_cmu()
    words = {w for w, _ in pronouncing.pronunciations if w.isalpha()}
    prefixes = {w[:i] for w in words for i in range(1, len(w) + 1)}
    return frozenset(words), frozenset(prefixes)


def known_words(text: str) -> bool:
    """Every finished word is a dictionary word and the word being written
    (the last one, when the text ends in a letter) starts one. Always true
    without the dictionary."""
    words, prefixes = _dictionary()
    if not words:
        return True
    found = WORD.findall(text.lower())
    if found and text[-1:].isalpha():
        *found, last = found
        if last.strip("'") not in prefixes:
            return False
    return all(w.strip("'") in words for w in found if w.strip("'"))


def haiku_prefix_ok(text: str, pattern=PATTERN) -> bool:
    """Whether ``text`` can still become a haiku: complete lines (followed by
    a newline) have exactly their count, the line being written is within
    its budget, and there are no more lines than the pattern has."""
    body = text.lstrip(" ")
    if not ALLOWED.fullmatch(body) or body.startswith("\n") or not known_words(body):
        return False
    lines = body.split("\n")
    if len(lines) > len(pattern) + 1 or (len(lines) == len(pattern) + 1 and lines[-1] != ""):
        return False
    *done, current = lines
    if any(syllables(line) != n for line, n in zip(done, pattern)):
        return False
    return len(done) == len(pattern) or syllables(current) <= pattern[len(done)]


def is_haiku(text: str, pattern=PATTERN) -> bool:
    """``text`` is exactly ``len(pattern)`` lines with these syllable counts."""
    lines = text.strip().split("\n")
    return len(lines) == len(pattern) and all(syllables(l) == n for l, n in zip(lines, pattern))


@ppl.builtin(name="haiku_prefix_ok", replace=True)
def _haiku_prefix_ok_builtin(text: str) -> bool:
    """``haiku_prefix_ok`` (the 5-7-5 pattern) as a builtin of the steer
    language, for examples/haiku.steer (``--import examples/haiku.py``)."""
    return haiku_prefix_ok(text)


@ppl.builtin(name="is_haiku", replace=True)
def _is_haiku_builtin(text: str) -> bool:
    """``is_haiku`` (the 5-7-5 pattern) as a builtin of the steer language."""
    return is_haiku(text)


# No special tokens except EOS.
PLAIN = ppl.no_special()


class Haiku(ppl.Model):
    """Three lines of 5-7-5 syllables after the prompt; at most ``max_tokens`` tokens."""

    def __init__(self, lm, prompt: str = PROMPT, max_tokens: int = 40):
        super().__init__()
        self.ctx = lm.context(prompt)
        self.left = max_tokens

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(PLAIN).where_checked(haiku_prefix_ok))
        self.left -= 1
        text = self.ctx.text
        if tok.is_eos or text.count("\n") >= len(PATTERN) or self.left == 0:
            self.condition(is_haiku(text))
            self.finish()

    def result_key(self):
        return self.ctx.text.strip()


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0", "--chat"]))
