"""``step:`` blocks: several primitives in one SMC step, so that a ``.steer``
program is the same Feynman-Kac model as its class form (the boundary comes
before the block, never inside it; blocks nest)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from support.gallery_helpers import load_example

import ppl
import ppl.dsl as dsl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VOCAB = ["a", "b", "c", ".", "<eos>"]


def keyed_probs(prefix: tuple[int, ...]) -> np.ndarray:
    """A prefix-dependent next-token distribution (Dirichlet draws keyed by the prefix)."""
    seed = 3 + sum((t + 1) * 7**i for i, t in enumerate(prefix))
    return np.random.default_rng(seed).dirichlet(np.full(len(VOCAB), 1.5))


def toy() -> ppl.ToyLM:
    return ppl.ToyLM(VOCAB, keyed_probs)


def same_run(r_class, r_steer, key=lambda p: p.result_key()) -> None:
    assert [key(p) for p in r_class.particles] == [p.value for p in r_steer.particles]
    assert np.array_equal(r_class.log_weights, r_steer.log_weights)
    assert r_class.log_Z == r_steer.log_Z
    assert r_class.n_steps == r_steer.n_steps
    assert r_class.resampled_at == r_steer.resampled_at


@pytest.mark.parametrize("method,options", [("steer", {"expand": 3}), ("smc", {"ess_threshold": 0.9}),
                                            ("is", {})])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prompt_intersection_steer_and_class_agree_run_for_run(method, options, seed):
    lm = toy()
    cls = load_example("prompt_intersection").PromptIntersection
    steer = dsl.load(EXAMPLES / "prompt_intersection.steer")
    r_class = ppl.infer(cls(lm, "ab", "ba", 5), method=method, n_particles=6, seed=seed, **options)
    r_steer = ppl.infer(steer(lm, prompt_a="ab", prompt_b="ba", n=5), method=method, n_particles=6,
                        seed=seed, **options)
    same_run(r_class, r_steer)


UNGROUPED = '''program p(n: int = 3):
    a = lm("ab")
    b = lm("ba")
    repeat n:
        tok ~ a.next_token()
        observe b.next_token() = tok
        if tok.is_eos: return a.text
    return a.text
'''


def test_without_the_block_every_token_primitive_is_a_step():
    grouped = UNGROUPED.replace("        tok ~ a.next_token()\n        observe b.next_token() = tok\n",
                                "        step:\n            tok ~ a.next_token()\n"
                                "            observe b.next_token() = tok\n")
    assert grouped != UNGROUPED
    lm = ppl.ToyLM(["a", "b", "<eos>"], lambda p: [0.45, 0.45, 0.1])
    r_un = ppl.infer(dsl.compile(UNGROUPED, "u.steer")(lm), method="smc", n_particles=2, seed=0,
                     ess_threshold=0.0)
    r_gr = ppl.infer(dsl.compile(grouped, "g.steer")(lm), method="smc", n_particles=2, seed=0,
                     ess_threshold=0.0)
    assert max(len(p.value) for p in r_gr.particles) == 3
    assert r_gr.n_steps == 3  # one step per token
    assert r_un.n_steps == 6  # the sample and the observe of a token are two steps


class Twice(ppl.Model):
    """Two tokens a step, a factor between them (one if the first is EOS)."""

    def __init__(self, lm):
        super().__init__()
        self.ctx = lm.context("")

    async def step(self):
        t1 = await self.sample(self.ctx.next_token().where(ppl.lacks(".")))
        self.factor(-0.5 * (t1.text == "a"))
        if t1.is_eos:
            self.finish()
            return
        t2 = await self.sample(self.ctx.next_token())
        if t2.is_eos or len(self.ctx) >= 4:
            self.finish()

    def result_key(self):
        return self.ctx.text


TWICE = '''program twice():
    ctx = lm("")
    while True:
        step:
            t1 ~ ctx.next_token() where lacks(".")
            step:
                factor -0.5 * (t1.text == "a")
                if t1.is_eos: return ctx.text
                t2 ~ ctx.next_token()
        if t2.is_eos or len(ctx.tokens) >= 4: return ctx.text
'''


@pytest.mark.parametrize("method,options", [("steer", {"expand": 3}), ("smc", {"ess_threshold": 1.0})])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nested_blocks_with_a_factor_between_samples_agree_run_for_run(method, options, seed):
    lm = toy()
    steer = dsl.compile(TWICE, "twice.steer")
    r_class = ppl.infer(Twice(lm), method=method, n_particles=4, seed=seed, **options)
    r_steer = ppl.infer(steer(lm), method=method, n_particles=4, seed=seed, **options)
    same_run(r_class, r_steer)


class Echo(ppl.Model):
    """Sample a token on one context, observe it on another unless it is EOS."""

    def __init__(self, lm, n=4):
        super().__init__()
        self.a, self.b, self.left = lm.context("ab"), lm.context("ba"), n

    async def step(self):
        tok = await self.sample(self.a.next_token())
        if tok.is_eos:
            self.finish()
            return
        await self.observe(self.b.next_token(), tok)
        self.left -= 1
        if self.left == 0:
            self.finish()

    def result_key(self):
        return self.a.text


ECHO = '''program echo(n: int = 4):
    a = lm("ab")
    b = lm("ba")
    repeat n:
        step:
            tok ~ a.next_token()
            if tok.is_eos: break
            observe b.next_token() = tok
    return a.text
'''


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_break_leaves_the_block(seed):
    lm = toy()
    r_class = ppl.infer(Echo(lm), method="smc", n_particles=5, seed=seed, ess_threshold=1.0)
    r_steer = ppl.infer(dsl.compile(ECHO, "echo.steer")(lm), method="smc", n_particles=5, seed=seed,
                        ess_threshold=1.0)
    same_run(r_class, r_steer)


def test_a_block_is_bounded_by_max_steps_tokens():
    src = '''program p():
    ctx = lm("")
    step:
        while True:
            observe ctx.next_token() = "a"
'''
    f = dsl.compile(src, "block.steer").with_limits(max_steps=5)
    lm = ppl.ToyLM(["a", "b", "<eos>"], lambda p: [0.5, 0.4, 0.1])
    with pytest.raises(ppl.InferenceError) as info:
        ppl.infer(f(lm), method="smc", n_particles=2, seed=0)
    err = info.value.__cause__
    assert isinstance(err, dsl.DSLRuntimeError)
    assert str(err).startswith("block.steer:3:5: the step block at line 3 took more than 5 language-model "
                               "tokens in one step")


def test_one_step_for_a_whole_block_exact_weight():
    """Two observed tokens in one block: one step, weight log p(a) + log p(b | a)."""
    src = '''program p():
    ctx = lm("")
    step:
        observe ctx.next_token() = "a"
        step:
            observe ctx.next_token() = "b"
    return ctx.text
'''
    lm = ppl.ToyLM(["a", "b", "<eos>"], lambda p: [0.5, 0.4, 0.1] if not p else [0.2, 0.7, 0.1])
    r = ppl.infer(dsl.compile(src, "w.steer")(lm), method="smc", n_particles=2, seed=0)
    assert r.n_steps == 1
    assert [p.value for p in r.particles] == ["ab", "ab"]
    assert r.log_Z == pytest.approx(math.log(0.5) + math.log(0.7), abs=1e-12)


def test_step_is_a_word_of_the_language():
    with pytest.raises(dsl.DSLError, match=r"s.steer:2:10: 'step' is a word of the language, not a name"):
        dsl.compile("program p():\n    step = 1\n", "s.steer")


@pytest.mark.parametrize("method,options", [("steer", {"expand": 3}), ("smc", {"ess_threshold": 0.9})])
@pytest.mark.parametrize("seed", [0, 1])
def test_lipogram_steer_and_class_agree_run_for_run(method, options, seed):
    lm = ppl.ToyLM(["a", "e", "E", "b.", "<eos>"], keyed_probs)
    cls = load_example("lipogram").Lipogram
    steer = dsl.load(EXAMPLES / "lipogram.steer")
    r_class = ppl.infer(cls(lm, "a", 6), method=method, n_particles=6, seed=seed, **options)
    r_steer = ppl.infer(steer(lm, prompt="a", n=6), method=method, n_particles=6, seed=seed, **options)
    same_run(r_class, r_steer, key=lambda p: p.ctx.text)
    assert not any("e" in p.value.lower() for p in r_steer.particles)
