"""Locally constrained decoding: importance sampling's draws, equal weights.

Its posterior is the proposal q (the masked, locally renormalised model),
not the target P: checked exactly on a toy model where the two differ."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import MAX_LEN, Lip
from ppl.runtime.inference import lcd  # noqa: F401 - registers "lcd"
from ppl.runtime.inference.registry import get_method
from support.stats import z_quantile
from support.toy_programs import VOCAB, toy_next_probs

import ppl

ALLOWED = [VOCAB.index(t) for t in ("a", "b", "<eos>")]
EOS = VOCAB.index("<eos>")


def exact_q_and_p() -> tuple[dict, dict]:
    """q(s) = prod_t p(x_t) / p(C_t) and P(s) ∝ prod_t p(x_t) over the strings
    of Lip (no "c"; EOS or MAX_LEN tokens), by enumeration."""
    q, gamma = {}, {}

    def walk(prefix, log_q, log_p):
        if (prefix and prefix[-1] == EOS) or len(prefix) == MAX_LEN:
            text = "".join(VOCAB[t] for t in prefix if t != EOS)
            q[text], gamma[text] = math.exp(log_q), math.exp(log_p)
            return
        probs = np.asarray(toy_next_probs(prefix), dtype=float)
        mass = probs[ALLOWED].sum()
        for t in ALLOWED:
            walk(prefix + (t,), log_q + math.log(probs[t] / mass), log_p + math.log(probs[t]))

    walk((), 0.0, 0.0)
    Z = sum(gamma.values())
    return q, {s: g / Z for s, g in gamma.items()}


def test_lcd_is_registered_and_takes_only_the_step_limit():
    method = get_method("lcd")
    assert list(method.options) == ["max_steps"] and "weights ignored" in method.summary


def test_lcd_draws_are_importance_samplings_with_equal_weights(lm):
    a = ppl.infer(Lip(lm), method="lcd", n_particles=50, seed=3)
    b = ppl.infer(Lip(lm), method="is", n_particles=50, seed=3)
    assert [str(p) for p in a.particles] == [str(p) for p in b.particles]
    assert np.all(a.log_weights == 0.0) and np.allclose(a.weights, 1 / 50)
    assert not np.allclose(b.weights, 1 / 50)
    assert a.log_Z == b.log_Z  # the importance-sampling estimate of the same draws
    assert a.settings["weights"].startswith("equal") and a.method == "locally_constrained_decoding"


def test_lcd_posterior_is_the_proposal_not_the_target(lm):
    """With N = 2000 particles every string's frequency is within
    z * sqrt(q (1 - q) / N) of q (Bonferroni over the strings), and at least
    one string is far outside that band around P."""
    q, P = exact_q_and_p()
    assert 0.5 * sum(abs(q[s] - P[s]) for s in q) > 0.05  # the two differ on this model
    N = 2000
    post = ppl.infer(Lip(lm), method="lcd", n_particles=N, seed=0).posterior()
    z = z_quantile(1e-4, k=len(q))
    for s, qs in q.items():
        assert abs(post.get(s, 0.0) - qs) <= z * math.sqrt(qs * (1 - qs) / N) + 1e-12, s
    assert any(abs(post.get(s, 0.0) - P[s]) > z * math.sqrt(P[s] * (1 - P[s]) / N) for s in q)


class DiesOnA(Lip):
    async def step(self):
        await super().step()
        self.condition(self.ctx.text != "a")


def test_dead_particles_stay_dead(lm):
    r = ppl.infer(DiesOnA(lm), method="lcd", n_particles=200, seed=1)
    dead = [p.result_key() == "a" for p in r.particles]
    assert any(dead) and not all(dead)
    assert all((lw == -math.inf) == d for lw, d in zip(r.log_weights, dead))
    assert np.allclose(r.weights[~np.array(dead)], 1 / (len(dead) - sum(dead)))


@pytest.mark.parametrize("n", [1, 3])
def test_lcd_in_a_map_reproduces_infer(lm, n):
    outcomes = sorted(ppl.map(Lip, [{}, {"banned": "b"}], lm=lm, method="lcd", n_particles=n, seed=4),
                      key=lambda o: o.index)
    for o in outcomes:
        alone = ppl.infer(Lip(lm, **o.input), method="lcd", n_particles=n, seed=ppl.run_seed(4, o.index))
        assert o.result.posterior() == alone.posterior() and o.log_Z == alone.log_Z
