"""Small steering programs on a toy language model, each paired with its exact
target ``gamma(s)`` written out independently of the primitives' code."""

from __future__ import annotations

import math

import numpy as np

import ppl
from support.exact import exact_target

VOCAB = ["a", "b", "c", "<eos>"]
A, B, C, EOS = range(4)
MAX_LEN = 4


def toy_next_probs(prefix: tuple[int, ...]) -> np.ndarray:
    """A fixed, prefix-dependent next-token distribution (Dirichlet(2) draws
    keyed by the prefix), so that the posterior is not uniform anywhere."""
    seed = 17 + sum((t + 1) * 5**i for i, t in enumerate(prefix))
    return np.random.default_rng(seed).dirichlet([2.0, 2.0, 2.0, 2.0])


def toy_lm() -> ppl.ToyLM:
    return ppl.ToyLM(VOCAB, toy_next_probs, eos="<eos>")


LACKS_C = ppl.lacks("c")


def _text(s) -> str:
    return "".join(VOCAB[t] for t in s if t != EOS)


class Lipogram(ppl.Model):
    """Tokens drawn from ``p(. | no "c")`` until EOS or MAX_LEN tokens."""

    def __init__(self, lm):
        super().__init__()
        self.ctx = lm.context("")

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(LACKS_C))
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            self.finish()

    def key(self):
        return self.ctx.text

    @staticmethod
    def exact(lm, prompt_ids=()):
        return exact_target(lm, MAX_LEN, lambda s: 0.0 if C not in s else -math.inf, prompt_ids=prompt_ids)


class LipogramProposal(Lipogram):
    """The same target written as the unconstrained model with a masked proposal."""

    async def step(self):
        tok = await self.sample(
            self.ctx.next_token(), proposal=self.ctx.next_token().where(LACKS_C)
        )
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            self.finish()


class TwistedLipogram(Lipogram):
    """The lipogram with an arbitrary twist at every step: same Z, same posterior."""

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(LACKS_C))
        text = self.ctx.text
        self.twist(-0.9 * text.count("b") + 0.4 * len(text))
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            self.finish()


class Scored(ppl.Model):
    """Unconstrained tokens, a factor per "a", and at the end a hard condition
    (no "cc") and a Bernoulli observation of the length's parity."""

    def __init__(self, lm):
        super().__init__()
        self.ctx = lm.context("")

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        self.factor(0.5 * (tok.text == "a"))
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            text = self.ctx.text
            self.condition("cc" not in text)
            await self.observe(ppl.Bernoulli(0.7), len(text) % 2 == 0)
            self.finish()

    def key(self):
        return self.ctx.text

    @staticmethod
    def exact(lm, prompt_ids=()):
        def log_g(s):
            text = _text(s)
            if "cc" in text:
                return -math.inf
            return 0.5 * text.count("a") + math.log(0.7 if len(text) % 2 == 0 else 0.3)

        return exact_target(lm, MAX_LEN, log_g, prompt_ids=prompt_ids)


class Rare(Scored):
    """Most particles die: only strings with exactly two "a" survive."""

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            self.condition(self.ctx.text.count("a") == 2)
            self.finish()

    @staticmethod
    def exact(lm, prompt_ids=()):
        return exact_target(lm, MAX_LEN, lambda s: 0.0 if _text(s).count("a") == 2 else -math.inf, prompt_ids=prompt_ids)


class ObservedPrefix(ppl.Model):
    """Observes the text "ab" first, then continues unconstrained."""

    def __init__(self, lm):
        super().__init__()
        self.ctx = lm.context("")

    async def start(self):
        await self.ctx.observe_text("ab")

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            self.finish()

    def key(self):
        return self.ctx.text

    @staticmethod
    def exact(lm, prompt_ids=()):
        return exact_target(lm, MAX_LEN, lambda s: 0.0 if s[:2] == (A, B) else -math.inf, prompt_ids=prompt_ids)


class Latent(ppl.Model):
    """A geometric length ``n = 1 + min(k, 2)`` and a binary bonus drawn with a
    proposal, then ``n`` lipogram tokens (or fewer, at EOS)."""

    def __init__(self, lm):
        super().__init__()
        self.ctx = lm.context("")

    async def start(self):
        k = await self.sample(ppl.Geometric(0.5))
        self.n = 1 + min(k, 2)
        self.bonus = await self.sample(
            ppl.Categorical([0.3, 0.7], values=[0, 1]),
            proposal=ppl.Categorical([0.8, 0.2], values=[0, 1]),
        )
        self.factor(0.4 * self.bonus)

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(LACKS_C))
        if tok.is_eos or len(self.ctx) == self.n:
            self.finish()

    def key(self):
        return (self.n, self.bonus, self.ctx.text)

    @staticmethod
    def exact(lm, prompt_ids=()):
        Z, post = 0.0, {}
        for n, pn in ((1, 0.5), (2, 0.25), (3, 0.25)):
            for bonus, pb in ((0, 0.3), (1, 0.7)):
                z, p = exact_target(lm, n, lambda s: 0.0 if C not in s else -math.inf, prompt_ids=prompt_ids)
                mass = pn * pb * math.exp(0.4 * bonus) * z
                Z += mass
                for text, q in p.items():
                    post[(n, bonus, text)] = mass * q
        return Z, {k: v / Z for k, v in post.items()}


PROGRAMS = [Lipogram, LipogramProposal, TwistedLipogram, Scored, Rare, ObservedPrefix, Latent]


# --- the same programs as decorated functions ---------------------------------


@ppl.program
async def lipogram_fn(lm):
    ctx = lm.context("")
    while True:
        tok = await ppl.sample(ctx.next_token().where(LACKS_C))
        if tok.is_eos or len(ctx) == MAX_LEN:
            return ctx.text


@ppl.program
async def twisted_lipogram_fn(lm):
    ctx = lm.context("")
    while True:
        tok = await ppl.sample(ctx.next_token().where(LACKS_C))
        ppl.twist(-0.9 * ctx.text.count("b") + 0.4 * len(ctx.text))
        if tok.is_eos or len(ctx) == MAX_LEN:
            return ctx.text


@ppl.program
async def scored_fn(lm):
    ctx = lm.context("")
    while True:
        tok = await ppl.sample(ctx.next_token())
        ppl.factor(0.5 * (tok.text == "a"))
        if tok.is_eos or len(ctx) == MAX_LEN:
            text = ctx.text
            ppl.condition("cc" not in text)
            await ppl.observe(ppl.Bernoulli(0.7), len(text) % 2 == 0)
            return text


@ppl.program
async def observed_prefix_fn(lm):
    ctx = lm.context("")
    await ctx.observe_text("ab")
    while True:
        tok = await ppl.sample(ctx.next_token())
        if tok.is_eos or len(ctx) == MAX_LEN:
            return ctx.text


@ppl.program
async def latent_fn(lm):
    ctx = lm.context("")
    n = 1 + min(await ppl.sample(ppl.Geometric(0.5)), 2)
    bonus = await ppl.sample(
        ppl.Categorical([0.3, 0.7], values=[0, 1]),
        proposal=ppl.Categorical([0.8, 0.2], values=[0, 1]),
    )
    ppl.factor(0.4 * bonus)
    while True:
        tok = await ppl.sample(ctx.next_token().where(LACKS_C))
        if tok.is_eos or len(ctx) == n:
            return (n, bonus, ctx.text)


lipogram_fn.exact = Lipogram.exact
twisted_lipogram_fn.exact = Lipogram.exact
scored_fn.exact = Scored.exact
observed_prefix_fn.exact = ObservedPrefix.exact
latent_fn.exact = Latent.exact

FUNCTION_PROGRAMS = [lipogram_fn, twisted_lipogram_fn, scored_fn, observed_prefix_fn, latent_fn]


# --- Scored's step as submodels (tests/language/test_submodels.py, tests/dsl/test_dsl_submodels.py) ---


class ScoredToken(ppl.Submodel):
    """A token from the model and a factor per "a": part of Scored's step."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def forward(self):
        tok = await self.sample(self.ctx.next_token())
        self.factor(0.5 * (tok.text == "a"))
        return tok


class Ending(ppl.Submodel):
    """Scored's end: no "cc", and a Bernoulli observation of the length's parity."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def forward(self):
        text = self.ctx.text
        self.condition("cc" not in text)
        await self.observe(ppl.Bernoulli(0.7), len(text) % 2 == 0)
        return text


class ScoredStep(ppl.Submodel):
    """A whole step of Scored, made of two nested submodels; returns whether it finished."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def forward(self):
        tok = await self.call(ScoredToken(self.ctx))
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            await self.call(Ending(self.ctx))
            return True
        return False


class ScoredNested(Scored):
    """Scored, its whole step one call (with nested calls inside)."""

    async def step(self):
        if await self.call(ScoredStep(self.ctx)):
            self.finish()


@ppl.program
async def scored_call_fn(lm):
    """Scored as a function whose token is a submodel call."""
    ctx = lm.context("")
    while True:
        tok = await ppl.call(ScoredToken(ctx))
        if tok.is_eos or len(ctx) == MAX_LEN:
            text = ctx.text  # the caller's own code after a call stays in its step
            ppl.condition("cc" not in text)
            await ppl.observe(ppl.Bernoulli(0.7), len(text) % 2 == 0)
            return text


@ppl.program
async def scored_nested_fn(lm):
    """Scored as a function whose whole step is one (nested) call."""
    ctx = lm.context("")
    while not await ppl.call(ScoredStep(ctx)):
        pass
    return ctx.text
