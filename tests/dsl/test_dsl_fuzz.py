"""Mutation fuzzing of the shipped ``.steer`` programs: whatever a mutant
does, it is checked and run within its budgets, and it either works or fails
with a located DSL error -- never a bare Python exception, never without
bound in time or memory.

Each mutant comes from one of the shipped programs (``examples/*.steer``,
``tests/dsl/steer/*.steer``) by a few token-level edits drawn by
hypothesis: swapping, deleting or duplicating tokens, inflating numbers
(``10 ** 9``, ``"ab" * 10 ** 7`` ...), replacing operators, inserting a
loop. It is checked (``check_source``), compiled with small
:class:`~ppl.dsl.Limits` (its own wall-clock budget, ``time_limit``, bounds
each run: no timing is asserted) and run with a few particles on a toy model
whose vocabulary covers printable ASCII. The memory a mutant allocates
(``tracemalloc`` peak of its compilation and run) must stay under a bound
derived from the limits. The figures (mutants tried, located errors, longest
check in CPU seconds, longest run, peak memory) are printed (``pytest -s``).
"""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import ppl  # noqa: E402
import ppl.dsl as dsl  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [p.read_text() for p in sorted((ROOT / "examples").glob("*.steer"))] + [
    p.read_text() for p in sorted((ROOT / "tests" / "dsl" / "steer").glob("*.steer"))
]
LIMITS = dsl.Limits(max_steps=24, max_iterations=5_000, max_operations=200_000, max_length=100_000,
                    max_int_bits=20_000, time_limit=2.0)
# A value is at most max_length elements (8 bytes a list slot, up to 4 bytes a character);
# a program names a few dozen of them; particles share them. Generous, but finite:
MEMORY_BOUND = 64 * 8 * LIMITS.max_length
METHODS = [("steer", {"n_particles": 2, "expand": 2}), ("smc", {"n_particles": 3}),
           ("is", {"n_particles": 2})]

TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\d+\.?\d*(?:e\d+)?|[A-Za-z_]\w*|\*\*|//|==|!=|<=|>=|\S')
OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or", "in", "not in"]
INFLATED = ["10 ** 9", "2 ** 19999", "10 ** 10 ** 5", "\"ab\" * 10 ** 7", "[0] * 10 ** 7", "range(10 ** 6)",
            "str(range(99999))", "-1", "0", "1e308", "[[[[1]]]] * 99999"]
SNIPPETS = ["while True:\n        x = [1] * 50000\n", "repeat 10 ** 9:\n        pass\n",
            "s = \"a\"\n    while True:\n        s = s + s\n", "x = 1\n    while True:\n        x = x * 3 ** 99\n"]


def toy_lm() -> ppl.ToyLM:
    """Printable ASCII, one token a character, EOS likely: runs are short."""
    vocab = [chr(c) for c in range(32, 127)] + ["\n", "\t", "<eos>"]
    p = np.full(len(vocab), 0.7 / (len(vocab) - 1))
    p[-1] = 0.3
    return ppl.ToyLM(vocab, lambda prefix: p, eos="<eos>")


def tokens(source: str) -> list[tuple[int, int]]:
    return [m.span() for m in TOKEN.finditer(source)]


@st.composite
def mutants(draw) -> str:
    source = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        spans = tokens(source)
        if not spans:
            break
        i = draw(st.integers(0, len(spans) - 1))
        a, b = spans[i]
        kind = draw(st.sampled_from(["swap", "delete", "duplicate", "inflate", "operator", "snippet"]))
        if kind == "swap":
            c, d = spans[draw(st.integers(0, len(spans) - 1))]
            if (c, d) < (a, b):
                (a, b), (c, d) = (c, d), (a, b)
            if b <= c:
                source = source[:a] + source[c:d] + source[b:c] + source[a:b] + source[d:]
        elif kind == "delete":
            source = source[:a] + source[b:]
        elif kind == "duplicate":
            source = source[:b] + " " + source[a:b] + source[b:]
        elif kind == "inflate":
            source = source[:a] + draw(st.sampled_from(INFLATED)) + source[b:]
        elif kind == "operator":
            source = source[:a] + draw(st.sampled_from(OPERATORS)) + source[b:]
        else:  # a loop inserted at the start of the body, on the line after the header
            line = source.find(":\n", source.find("program ")) + 2
            if line > 1:
                source = source[:line] + "    " + draw(st.sampled_from(SNIPPETS)) + source[line:]
    return source


def located(exc: dsl.DSLError) -> bool:
    return bool(exc.diagnostics) and all(d.line >= 1 and d.column >= 0 and d.message for d in exc.diagnostics)


def try_mutant(source: str, method: str, options: dict, figures: dict) -> None:
    """Check and run one mutant; record the figures; fail on anything but
    success or a located DSL error."""
    figures["tried"] += 1
    t0 = time.process_time()
    diagnostics = dsl.check_source(source, "mutant.steer", limits=LIMITS)
    figures["check_s"] = max(figures["check_s"], time.process_time() - t0)
    if diagnostics:
        figures["located"] += 1
        assert all(d.line >= 1 and d.message for d in diagnostics), diagnostics
        return
    tracemalloc.start()  # the check again (compile), and the run: what they allocate at most
    try:
        factory = dsl.compile(source, "mutant.steer", limits=LIMITS)
        try:
            model = factory(toy_lm())
        except dsl.DSLArgumentError:
            figures["located"] += 1  # a parameter left without a default: named, not placed
            return
        t0 = time.perf_counter()
        try:
            ppl.infer(model, method=method, seed=0, **options)
            figures["ok"] += 1
        except ppl.InferenceError as exc:
            cause = exc.__cause__
            assert isinstance(cause, dsl.DSLRuntimeError) and located(cause), \
                f"{type(cause).__name__}: {cause}\n--- mutant ---\n{source}"
            figures["located"] += 1
        finally:
            figures["run_s"] = max(figures["run_s"], time.perf_counter() - t0)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        figures["peak_bytes"] = max(figures["peak_bytes"], peak)
        assert peak < MEMORY_BOUND, f"{peak} bytes allocated by\n{source}"


def fuzz(n: int):
    figures = {"tried": 0, "ok": 0, "located": 0, "check_s": 0.0, "run_s": 0.0, "peak_bytes": 0}
    dsl.check_source("program warm():\n    pass\n")  # the parser is built once, not timed

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutants(), st.sampled_from(METHODS))
    def one(source, method):
        try_mutant(source, method[0], method[1], figures)

    one()
    print(f"\nfuzz: {figures['tried']} mutants, {figures['ok']} ran, {figures['located']} located errors, "
          f"longest check {figures['check_s']:.3f} s (CPU), longest run {figures['run_s']:.3f} s, "
          f"peak {figures['peak_bytes'] / 1e6:.1f} MB")
    assert figures["tried"] == figures["ok"] + figures["located"]
    return figures


def test_mutants_of_the_shipped_programs_fail_only_with_located_errors():
    figures = fuzz(200)
    assert figures["ok"] > 0 and figures["located"] > 0  # both outcomes were reached


@pytest.mark.slow
def test_many_mutants_fail_only_with_located_errors():
    fuzz(3000)
