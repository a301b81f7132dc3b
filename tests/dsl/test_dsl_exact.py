"""The exact-answer tests of the core, with the programs written as .steer
files (tests/steer/) on the toy LM: the same Z and posterior as the class
form, and, for the same seed, the very same run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from support.stats import check_mean, check_posterior
from support.toy_programs import (
    Latent,
    Lipogram,
    ObservedPrefix,
    Rare,
    Scored,
    scored_fn,
    toy_lm,
)

import ppl
import ppl.dsl as dsl

STEER = Path(__file__).parent / "steer"
M = 150  # runs per setting (test_exact_smc.py uses 200 for the class forms)

PROGRAMS = {
    "lipogram": Lipogram,
    "twisted_lipogram": Lipogram,  # a twist does not change the target
    "scored": Scored,
    "rare": Rare,
    "observed_prefix": ObservedPrefix,
    "latent": Latent,
}


def check(name: str, method: str, **kw) -> None:
    program = dsl.load(STEER / f"{name}.steer")
    lm = toy_lm()
    Z, exact = PROGRAMS[name].exact(lm)
    runs = []
    for m in range(M):
        r = ppl.infer(program(lm), method=method, seed=10_000 + m, **kw)
        assert len(r.particles) == kw["n_particles"]
        runs.append((math.exp(r.log_Z), r.posterior()))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, exact, kw["n_particles"])


@pytest.mark.parametrize("name", list(PROGRAMS))
@pytest.mark.parametrize(
    "method,kw",
    [("steer", {"n_particles": 6, "expand": 3}), ("smc", {"n_particles": 6, "ess_threshold": 1.0})],
    ids=["steer-6x3", "smc-always"],
)
def test_steer_programs_match_exact_answers(name, method, kw):
    check(name, method, **kw)


def test_scored_with_importance_sampling():
    check("scored", "is", n_particles=8)


def test_steer_and_class_forms_agree_run_for_run():
    """Same step semantics, same order of random draws: identical runs."""
    lm = toy_lm()
    lipogram = dsl.load(STEER / "lipogram.steer")
    scored = dsl.load(STEER / "scored.steer")
    for seed in range(5):
        for cls, prog in ((Lipogram, lipogram), (Scored, scored)):
            for method, kw in (("steer", {"n_particles": 6, "expand": 3}),
                               ("smc", {"n_particles": 6, "ess_threshold": 1.0})):
                a = ppl.infer(cls(lm), method=method, seed=seed, **kw)
                b = ppl.infer(prog(lm), method=method, seed=seed, **kw)
                assert b.log_Z == pytest.approx(a.log_Z, abs=1e-12)
                assert list(b.log_weights) == pytest.approx(list(a.log_weights), abs=1e-12)
                live = [i for i, lw in enumerate(a.log_weights) if lw > -math.inf]
                assert [str(b.particles[i]) for i in live] == [str(a.particles[i]) for i in live]
                assert b.n_steps == a.n_steps


def test_steer_and_decorated_forms_agree_run_for_run():
    lm = toy_lm()
    scored = dsl.load(STEER / "scored.steer")
    for seed in range(3):
        a = ppl.infer(scored_fn(lm), method="steer", n_particles=6, expand=3, seed=seed)
        b = ppl.infer(scored(lm), method="steer", n_particles=6, expand=3, seed=seed)
        assert b.log_Z == pytest.approx(a.log_Z, abs=1e-12)
        assert [p.value for p in b.particles] == [p.value for p in a.particles]


def test_twist_cancels_exactly():
    lm = toy_lm()
    plain = dsl.load(STEER / "lipogram.steer")
    twisted = dsl.load(STEER / "twisted_lipogram.steer")
    for seed in range(5):
        a = ppl.infer(plain(lm), method="is", n_particles=8, seed=seed)
        b = ppl.infer(twisted(lm), method="is", n_particles=8, seed=seed)
        assert b.log_Z == pytest.approx(a.log_Z, abs=1e-12)


def test_one_batch_per_step():
    lm = toy_lm()
    r = ppl.infer(dsl.load(STEER / "lipogram.steer")(lm), method="steer", n_particles=5, expand=3, seed=1)
    assert r.stats["scheduler"]["batches"] == r.n_steps == lm.calls
