"""``ctx.sample_until(stop, max_tokens=, where=)`` and ``ctx.sample_word()``:
several tokens in one step, the model's own distribution as the target."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.stats import check_mean, check_posterior
from support.toy_programs import LACKS_C, VOCAB, toy_lm

import ppl
from ppl.errors import ArgumentError

M = 200


@ppl.program
async def until_b(lm):
    ctx = lm.context("")
    text = await ctx.sample_until("b", max_tokens=3, where=LACKS_C)
    ppl.factor(0.7 * text.count("a"))
    return text


def exact_until_b(lm):
    """Enumerate: tokens without "c" until a "b", EOS or three tokens."""
    post: dict = {}

    def walk(ids: tuple, log_g: float):
        text = lm.decode(ids)
        if ids and (ids[-1] == lm.eos_token_id or "b" in text) or len(ids) == 3:
            post[text] = post.get(text, 0.0) + math.exp(log_g + 0.7 * text.count("a"))
            return
        for t, p in enumerate(lm.next_probs(ids)):
            if VOCAB[t] != "c":
                walk(ids + (t,), log_g + math.log(p))

    walk((), 0.0)
    Z = sum(post.values())
    return Z, {k: v / Z for k, v in post.items()}


@pytest.mark.parametrize("method,kw", [("is", {"n_particles": 4}), ("steer", {"n_particles": 4, "expand": 3})])
def test_sample_until_against_enumeration(method, kw):
    lm = toy_lm()
    Z, exact = exact_until_b(lm)
    runs = []
    for m in range(M):
        r = ppl.infer(until_b(lm), method=method, seed=30_000 + m, **kw)
        runs.append((math.exp(r.log_Z), r.posterior()))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, exact, kw["n_particles"])


def test_sample_until_is_one_step_and_stops_at_the_stop():
    lm = toy_lm()
    r = ppl.infer(until_b(lm), method="is", n_particles=20, seed=1)
    assert r.n_steps == 1  # the whole call is one step
    for p in r.particles:
        text = p.value
        assert "c" not in text and len(text) <= 3
        assert "b" not in text[:-1]  # nothing is drawn after the stop


WORDS = ["a", "b", " a", " b", ".", "<eos>"]


def word_probs(prefix):
    seed = 5 + sum((t + 1) * 7**i for i, t in enumerate(prefix))
    p = np.random.default_rng(seed).dirichlet(np.full(len(WORDS), 2.0))
    if not prefix:  # the first token starts a word
        p[[0, 1, 4, 5]] = 0.0
        p /= p.sum()
    return p


@ppl.program
async def three_words(lm):
    ctx = lm.context("")
    words = []
    for _ in range(3):
        words.append(await ctx.sample_word(max_tokens=4))
        if ctx.finished:
            break
    return tuple(words), ctx.text


class ThreeWords(ppl.Model):
    def __init__(self, lm):
        super().__init__()
        self.ctx, self.words = lm.context(""), []

    async def step(self):
        self.words.append(await self.ctx.sample_word(max_tokens=4))
        if self.ctx.finished or len(self.words) == 3:
            self.finish()


def test_sample_word_splits_at_a_leading_space():
    lm = ppl.ToyLM(WORDS, word_probs)
    r = ppl.infer(three_words(lm), method="is", n_particles=30, seed=0)
    for p in r.particles:
        words, text = p.value
        assert all(w.strip() for w in words[:-1])  # only a last word cut by EOS may be empty
        assert all(" " not in w[1:] for w in words)  # a space token only at a word's start
        joined = "".join(words)
        # the token that ended the last word is already in the context
        assert text.startswith(joined) and (text == joined or text[len(joined)] == " ")
    assert r.n_steps == max(len(p.value[0]) for p in r.particles)  # one step per word


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_word_class_and_function_forms_agree(seed):
    lm = ppl.ToyLM(WORDS, word_probs)
    rc = ppl.infer(ThreeWords(lm), method="steer", n_particles=4, expand=3, seed=seed)
    rf = ppl.infer(three_words(lm), method="steer", n_particles=4, expand=3, seed=seed)
    assert [tuple(p.words) for p in rc.particles] == [p.value[0] for p in rf.particles]
    assert np.array_equal(rc.log_weights, rf.log_weights)


@pytest.mark.parametrize("call,match", [
    (lambda ctx: ctx.sample_until(""), "non-empty stop string"),
    (lambda ctx: ctx.sample_until(".", max_tokens=0), r"sample_until\(\): max_tokens must be"),
    (lambda ctx: ctx.sample_word(max_tokens=-1), r"sample_word\(\): max_tokens must be"),
])
def test_bad_arguments(call, match):
    import asyncio

    with pytest.raises(ArgumentError, match=match):
        asyncio.run(call(toy_lm().context("")))
