"""Every algorithm against exact answers on toy programs.

For each (program, algorithm, setting), ``M`` seeded runs give estimates
``Z_hat_m`` and weighted posteriors. The mean of ``Z_hat`` (not of
``log Z_hat``: only ``Z_hat`` is unbiased) must match the exact ``Z`` within
``z * sd / sqrt(M)``, and the ``Z_hat``-weighted pooled posterior must match the
exact posterior outcome by outcome and in total variation (see ``stats.py``).
"""

from __future__ import annotations

import math

import pytest
from support.stats import check_mean, check_posterior
from support.toy_programs import (
    FUNCTION_PROGRAMS,
    PROGRAMS,
    Lipogram,
    Scored,
    scored_fn,
    toy_lm,
)

import ppl

M = 200  # runs per setting


def _key(particle):
    """Class programs define key(); decorated ones return their key."""
    return particle.key() if hasattr(particle, "key") else particle.value


def run_many(program, method: str, runs: int = M, **kw):
    lm = toy_lm()
    out = []
    for m in range(runs):
        r = ppl.infer(program(lm), method=method, seed=10_000 + m, **kw)
        assert len(r.particles) == kw["n_particles"]
        out.append((math.exp(r.log_Z), r.posterior(key=_key)))
    return out


def check(program, method, **kw):
    Z, exact = program.exact(toy_lm())
    runs = run_many(program, method, **kw)
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, exact, kw["n_particles"])


SETTINGS = (
    [("steer", {"n_particles": n, "expand": k}) for n, k in [(1, 1), (4, 1), (4, 3), (10, 2), (16, 3)]]
    + [("smc", {"n_particles": 8, "resampling": s}) for s in ["multinomial", "stratified", "systematic", "residual"]]
    + [("smc", {"n_particles": 8, "ess_threshold": 1.0}), ("smc", {"n_particles": 1, "ess_threshold": 1.0})]
    + [("is", {"n_particles": 1}), ("is", {"n_particles": 8})]
)


@pytest.mark.parametrize("method,kw", SETTINGS, ids=[f"{m}-{kw}" for m, kw in SETTINGS])
def test_scored_program_every_setting(method, kw):
    check(Scored, method, **kw)


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.__name__ for p in PROGRAMS])
@pytest.mark.parametrize(
    "method,kw",
    [("steer", {"n_particles": 6, "expand": 3}), ("smc", {"n_particles": 6, "ess_threshold": 1.0})],
    ids=["steer-6x3", "smc-always"],
)
def test_every_program(program, method, kw):
    check(program, method, **kw)


@pytest.mark.parametrize("program", FUNCTION_PROGRAMS, ids=[p.__name__ for p in FUNCTION_PROGRAMS])
@pytest.mark.parametrize(
    "method,kw",
    [("steer", {"n_particles": 6, "expand": 3}), ("smc", {"n_particles": 6, "ess_threshold": 1.0})],
    ids=["steer-6x3", "smc-always"],
)
def test_every_decorated_program(program, method, kw):
    check(program, method, **kw)


def test_decorated_and_class_forms_agree_run_for_run():
    """Same seed, same random choices: the two forms give identical results."""
    lm = toy_lm()
    for seed in range(5):
        a = ppl.infer(Scored(lm), method="steer", n_particles=6, expand=3, seed=seed)
        b = ppl.infer(scored_fn(lm), method="steer", n_particles=6, expand=3, seed=seed)
        assert a.log_Z == pytest.approx(b.log_Z, abs=1e-12)
        assert [str(p) for p in a.particles] == [str(p) for p in b.particles]


def test_twist_does_not_change_the_target():
    from support.toy_programs import TwistedLipogram

    lm = toy_lm()
    assert TwistedLipogram.exact(lm) == Lipogram.exact(lm)
    # and, run by the same seeds, the untwisted and twisted IS estimates agree
    # exactly: the twist cancels in every finished particle's weight
    for seed in range(5):
        a = ppl.infer(Lipogram(lm), method="is", n_particles=8, seed=seed)
        b = ppl.infer(TwistedLipogram(lm), method="is", n_particles=8, seed=seed)
        assert a.log_Z == pytest.approx(b.log_Z, abs=1e-12)

