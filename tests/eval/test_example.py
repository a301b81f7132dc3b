"""The shipped evaluation, examples/eval_choices.py: its program and metric
exactly on a toy model, and (slow) its point on the default model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.gallery_helpers import EXAMPLES, load_example
from support.stats import z_quantile
from support.toy_programs import VOCAB, toy_lm, toy_next_probs

import ppl
from ppl.evaluation import evaluate
from ppl.inputs import read_inputs

CHOICES = ["a", "ba", "bc", "ccc"]


def ids(text):
    return tuple(VOCAB.index(ch) for ch in text)


def exact_p_and_q():
    """P(c) ∝ prod_t p(c_t | c_<t) and the masked proposal's q(c) = prod_t p(c_t) / p(C_t)."""
    tree = {c[:k]: {d[k] for d in CHOICES if d.startswith(c[:k]) and len(d) > k} for c in CHOICES for k in range(len(c))}
    p, q = {}, {}
    for c in CHOICES:
        lp = lq = 0.0
        for k in range(len(c)):
            probs = toy_next_probs(ids(c[:k]))
            lp += math.log(probs[VOCAB.index(c[k])])
            lq += math.log(probs[VOCAB.index(c[k])] / sum(probs[VOCAB.index(t)] for t in tree[c[:k]]))
        p[c], q[c] = math.exp(lp), math.exp(lq)
    Z = sum(p.values())
    return {c: v / Z for c, v in p.items()}, q


def test_the_answer_tree_refuses_ambiguous_choices():
    ex = load_example("eval_choices")
    with pytest.raises(ppl.PPLError, match="'a' is a token prefix of 'ab'"):
        ex.PickAnswer(toy_lm(), "", ["a", "ab"])
    with pytest.raises(ppl.PPLError, match="distinct"):
        ex.PickAnswer(toy_lm(), "", ["a", "a"])


def test_exact_posterior_and_metric_on_a_toy_model():
    ex = load_example("eval_choices")
    lm = toy_lm()
    P, q = exact_p_and_q()
    got = ex.exact_posterior(lm, "", CHOICES)
    assert got == pytest.approx(P, abs=1e-9)
    tv_q = 0.5 * sum(abs(P[c] - q[c]) for c in CHOICES)
    assert tv_q > 0.05  # masking is biased on this model
    N = 2000
    inp = {"prompt": "", "choices": CHOICES}
    lcd = ex.metric(inp, ppl.infer(ex.PickAnswer(lm, **inp), method="lcd", n_particles=N, seed=0), lm)
    # |TV(q_hat, P) - TV(q, P)| <= (1/2) sum_c |q_hat(c) - q(c)|, each within z sqrt(q (1 - q) / N)
    tol = 0.5 * sum(z_quantile(1e-4, k=len(CHOICES)) * math.sqrt(q[c] * (1 - q[c]) / N) for c in CHOICES)
    assert abs(lcd["tv"] - tv_q) <= tol
    weighted = ex.metric(inp, ppl.infer(ex.PickAnswer(lm, **inp), method="is", n_particles=N, seed=0), lm)
    assert weighted["tv"] < tv_q / 3 and weighted["mode"] == 1.0


def test_the_shipped_inputs_fit_the_program():
    ex = load_example("eval_choices")
    lines = read_inputs(EXAMPLES / "data" / "eval_choices.jsonl", ex.PickAnswer)
    assert len(lines) >= 8 and len({line.id for line in lines}) == len(lines)


@pytest.mark.slow
def test_on_the_default_model_masking_stays_biased(default_lm, tmp_path):
    """Three inputs whose masked proposal is far from the posterior: at
    N = 16, lcd's distance stays large and importance sampling's falls."""
    ex = load_example("eval_choices")
    lines = [line for line in read_inputs(EXAMPLES / "data" / "eval_choices.jsonl", ex.PickAnswer)
             if line.id in ("france", "sum", "water")]
    ev = evaluate(ex.PickAnswer, [line.args for line in lines], ids=[line.id for line in lines],
                  lm=default_lm, metric=ex.metric, methods=("lcd", "is"), particles=(16,), output=tmp_path)
    by = {r["method"]: r for r in ev.rows}
    assert by["lcd"]["tv_mean"] > 0.5 and by["is"]["tv_mean"] < by["lcd"]["tv_mean"] - 0.3
    assert np.isfinite(by["is"]["tokens_computed"]) and (tmp_path / "report.html").is_file()
