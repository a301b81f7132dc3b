"""Helpers for tests/test_gallery.py: loading gallery examples by path, toy
language models whose vocabularies make each example's constraint
meaningful, and reading the finished live particles of a result."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np

import ppl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str):
    """Import ``examples/NAME.py`` as a module (once per process)."""
    path = EXAMPLES / f"{name}.py"
    module_name = f"ppl_gallery_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_steer(name: str):
    """Check and compile ``examples/NAME.steer``, after importing its Python
    form ``examples/NAME.py`` where there is one: the builtins a ``.steer``
    form uses (its documented ``--import``) are defined there."""
    if (EXAMPLES / f"{name}.py").is_file():
        load_example(name)
    return ppl.dsl.load(EXAMPLES / f"{name}.steer")


def finished(result) -> list:
    """The live particles of ``result``, each checked to be finished; at least one."""
    assert result.status == "ok", result.status
    live = [p for p, lw in zip(result.particles, result.log_weights) if lw > -math.inf]
    assert live, "no live particle"
    for p in live:
        assert p.done, f"a live particle did not finish: {p}"
    return live


def text_of(particle) -> str:
    """The generated text of a finished particle, whatever its form."""
    value = getattr(particle, "value", None)
    if isinstance(value, str):
        return value
    ctx = getattr(particle, "ctx", None) or getattr(particle, "a")
    return ctx.text


def word_lm(words: list[str], *, eos_weight: float = 0.3, seed: int = 0) -> ppl.ToyLM:
    """A ToyLM over ``words`` (plus ``<eos>``) with fixed random preferences
    that depend on the last token, so different prefixes differ."""
    vocab = list(words) + ["<eos>"]
    rng = np.random.default_rng(seed)
    table = rng.uniform(0.5, 2.0, size=(len(vocab) + 1, len(vocab)))
    table[:, -1] = eos_weight

    def next_probs(prefix):
        row = table[prefix[-1] if prefix else len(vocab)]
        return row / row.sum()

    return ppl.ToyLM(vocab, next_probs, eos="<eos>")
