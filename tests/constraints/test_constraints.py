"""Sequence constraints (regex, Lark grammar, JSON schema, choice) against exact
answers on toy language models, plus their unit behaviour.

The target of a constrained context is ``gamma(s) = p(s) 1[text(s) in L]``,
written out below with Python's ``re`` and a hand-written recogniser,
independently of llguidance. The toy vocabulary has a two-letter token
(``"ab"``), so most texts have several tokenisations, and the target sums
over all of them.
"""

from __future__ import annotations

import asyncio
import copy
import math
import re

import numpy as np
import pytest
from support.exact import exact_target
from support.stats import check_mean, check_posterior

import ppl
from ppl.constraints import ConstraintError, choice, grammar, json_schema, regex

VOCAB = ["a", "b", "ab", "<eos>"]
A, B, AB, EOS = range(4)
MAX_LEN = 4
M = 200  # runs per setting


def next_probs(prefix):
    seed = 3 + sum((t + 1) * 5**i for i, t in enumerate(prefix))
    return np.random.default_rng(seed).dirichlet([2.0, 2.0, 2.0, 2.0])


def toy():
    return ppl.ToyLM(VOCAB, next_probs, eos="<eos>")


def text_of(s):
    return "".join(VOCAB[t] for t in s if t != EOS)


# --- the languages, written independently of llguidance ---------------------------

REGEX = "(ab)+b?"
DYCK = 'start: ("a" start "b")*'  # balanced a/b, "a" opens and "b" closes


def in_regex(text):
    return re.fullmatch(REGEX, text) is not None


def in_dyck(text):
    depth = 0
    for ch in text:
        depth += 1 if ch == "a" else -1
        if depth < 0:
            return False
    return depth == 0


LANGUAGES = {"regex": (lambda: regex(REGEX), in_regex), "grammar": (lambda: grammar(DYCK), in_dyck)}


def exact(lm, member):
    """Every token sequence (EOS-terminated or cut at MAX_LEN) whose text is in L."""
    return exact_target(lm, MAX_LEN, lambda s: 0.0 if member(text_of(s)) else -math.inf)


# --- programs -------------------------------------------------------------------------


class Constrained(ppl.Model):
    """Tokens from the constrained context until EOS; at MAX_LEN tokens the
    text must be complete."""

    def __init__(self, lm, constraint):
        super().__init__()
        self.ctx = lm.context("", constraint=constraint)

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        if tok.is_eos:
            self.finish()
        elif len(self.ctx) == MAX_LEN:
            self.condition(self.ctx.accepting)
            self.finish()

    def key(self):
        return self.ctx.text


class ConstrainedProposal(Constrained):
    """The same target: the unconstrained model observed through a constrained
    context is the constrained next-token distribution; here it is written as
    ``sample(p_constrained, proposal=p_constrained.where(anything))``."""

    async def step(self):
        d = self.ctx.next_token()
        tok = await self.sample(d, proposal=self.ctx.next_token().where(lambda t: True))
        if tok.is_eos:
            self.finish()
        elif len(self.ctx) == MAX_LEN:
            self.condition(self.ctx.accepting)
            self.finish()


@ppl.program
async def constrained_fn(lm, constraint):
    ctx = lm.context("")
    ctx.constrain(constraint)
    while True:
        tok = await ppl.sample(ctx.next_token())
        if tok.is_eos:
            return ctx.text
        if len(ctx) == MAX_LEN:
            ppl.condition(ctx.accepting)
            return ctx.text


def _key(p):
    return p.key() if hasattr(p, "key") else p.value


def run_many(make, method, runs=M, **kw):
    out = []
    for m in range(runs):
        r = ppl.infer(make(), method=method, seed=20_000 + m, **kw)
        out.append((math.exp(r.log_Z), r.posterior(key=_key)))
    return out


SETTINGS = [
    ("steer", {"n_particles": 6, "expand": 3}),
    ("smc", {"n_particles": 6, "ess_threshold": 1.0}),
    ("is", {"n_particles": 4}),
]


@pytest.mark.parametrize("language", sorted(LANGUAGES))
@pytest.mark.parametrize("method,kw", SETTINGS, ids=[m for m, _ in SETTINGS])
def test_exact_Z_and_posterior(language, method, kw):
    lm = toy()
    build, member = LANGUAGES[language]
    constraint = build()
    Z, post = exact(lm, member)
    assert 0 < Z < 1 and len(post) > 3  # a non-trivial target
    runs = run_many(lambda: Constrained(lm, constraint), method, **kw)
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, post, kw["n_particles"])


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_exact_decorated_and_proposal_forms(language):
    lm = toy()
    build, member = LANGUAGES[language]
    constraint = build()
    Z, post = exact(lm, member)
    for make in (lambda: constrained_fn(lm, constraint), lambda: ConstrainedProposal(lm, constraint)):
        runs = run_many(make, "steer", runs=120, n_particles=6, expand=3)
        check_mean([z for z, _ in runs], Z)
        check_posterior(runs, post, 6)


def test_every_finished_particle_is_in_the_language():
    lm = toy()
    for language, (build, member) in LANGUAGES.items():
        r = ppl.infer(Constrained(lm, build()), method="steer", n_particles=8, expand=3, seed=1)
        for p, lw in zip(r.particles, r.log_weights):
            if lw > -math.inf:
                assert member(p.ctx.text), (language, p.ctx.text)


# --- fast-forward ---------------------------------------------------------------------

SINGLE = ["a", "b", "c", "<eos>"]
FF_REGEX = "(a|b)ca(b|c)?"  # after the first letter "ca" is forced


def single_lm():
    def probs(prefix):
        seed = 11 + sum((t + 1) * 5**i for i, t in enumerate(prefix))
        return np.random.default_rng(seed).dirichlet([2.0] * 4)

    return ppl.ToyLM(SINGLE, probs, eos="<eos>")


class UntilEOS(ppl.Model):
    def __init__(self, lm, constraint):
        super().__init__()
        self.ctx = lm.context("", constraint=constraint)
        self.steps = 0

    async def step(self):
        self.steps += 1
        tok = await self.sample(self.ctx.next_token())
        if tok.is_eos:
            self.finish()

    def key(self):
        return self.ctx.text


def test_fast_forward_appends_forced_tokens_with_their_probability():
    """One step appends the free token and the forced "ca" after it (at the
    next step): the weight gains p(forced) exactly, and three steps suffice
    for a four-letter text."""
    lm = single_lm()
    c = regex(FF_REGEX, fast_forward=True)
    ctx = lm.context("", constraint=c)
    ctx._append(0)  # "a"
    assert ctx._state.forced() == (2, 0)  # "c", "a"
    d = ctx.next_token()

    async def go():
        return await d.log_mass(), await d.log_prob(1)

    log_mass, log_p_b = asyncio.run(go())
    p_c = next_probs_single(lm, (0,))[2]
    p_a = next_probs_single(lm, (0, 2))[0]
    after = next_probs_single(lm, (0, 2, 0))
    assert log_mass == pytest.approx(math.log(p_c * p_a * (after[1] + after[2] + after[3])))
    assert log_p_b == pytest.approx(math.log(p_c * p_a * after[1]))
    d._commit(ppl.Token(1, "b"))
    assert ctx.text == "acab"


def next_probs_single(lm, prefix):
    return np.exp(lm.batch_next_token_logprobs([prefix])[0])


@pytest.mark.parametrize("method,kw", SETTINGS[:2], ids=[m for m, _ in SETTINGS[:2]])
def test_fast_forward_exact(method, kw):
    """With one-letter tokens every text has one tokenisation, so forcing does
    not change the target: Z and the posterior are those of p restricted to L."""
    lm = single_lm()
    Z, post = exact_target(lm, 6, lambda s: 0.0 if re.fullmatch(FF_REGEX, lm.decode(s)) else -math.inf)
    c = regex(FF_REGEX, fast_forward=True)
    runs = run_many(lambda: UntilEOS(lm, c), method, **kw)
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, post, kw["n_particles"])
    r = ppl.infer(UntilEOS(lm, c), method=method, seed=0, **kw)
    assert max(p.steps for p in r.particles) <= 3  # "x", then "ca" + "y", then EOS


def test_forcing_uses_the_canonical_tokenisation():
    """With a two-letter token, forced text is tokenised canonically (the
    model's own ``encode``): "aabb" is forced as "a", "ab", "b", and only
    that tokenisation is allowed (without fast_forward every one is)."""
    lm = toy()
    forced = regex("a(ab)b", fast_forward=True)
    ctx = lm.context("", constraint=forced)
    assert ctx._state.forced() == (A, AB, B)
    assert ctx._state.mask().tolist() == [True, False, False, False]
    ctx._append(A)
    assert ctx._state.forced() == (AB, B)
    free = lm.context("", constraint=regex("a(ab)b"))
    assert free._state.forced() == ()
    free._append(A)
    assert free._state.mask().tolist() == [True, False, True, False]


# --- unit behaviour ---------------------------------------------------------------------


def test_masks_eos_only_where_complete():
    lm = toy()
    ctx = lm.context("", constraint=regex(REGEX))
    m = ctx._state.mask()
    assert m.tolist() == [True, False, True, False]  # "a", "ab"; no "b", no EOS
    ctx._append(AB)
    assert ctx.accepting and ctx._state.mask()[EOS]
    ctx._append(B)  # "abb": complete, nothing may follow
    assert ctx._state.mask().tolist() == [False, False, False, True]


def test_clones_share_the_state_until_they_append():
    lm = toy()
    ctx = lm.context("", constraint=grammar(DYCK))
    ctx._append(A)
    clone = copy.deepcopy(ctx)
    assert clone._state is ctx._state  # shared, with its mask
    clone._append(B)
    assert clone.text == "ab" and ctx.text == "a"
    assert clone.accepting and not ctx.accepting
    assert ctx._state.mask().tolist() == [True, True, True, False]


def test_impossible_state_kills_the_particle_not_the_run():
    lm = toy()

    class Dead(ppl.Model):
        def __init__(self):
            super().__init__()
            self.ctx = lm.context("", constraint=regex("c"))  # no token spells "c"

        async def step(self):
            await self.sample(self.ctx.next_token())
            self.finish()

    r = ppl.infer(Dead(), method="steer", n_particles=3, expand=2, seed=0)
    assert all(lw == -math.inf for lw in r.log_weights)
    assert r.log_Z == -math.inf


def test_constrain_reads_the_text_already_generated():
    lm = toy()
    ctx = lm.context("")
    ctx._append(B)
    ctx.constrain(regex(REGEX))  # "b" is no prefix of (ab)+b?
    assert not ctx.viable and not ctx._state.mask().any()
    ctx = lm.context("")
    ctx._append(A)
    ctx.constrain(regex(REGEX))
    assert ctx.viable and ctx._state.mask().tolist() == [False, True, False, False]


def test_observe_text_respects_the_constraint():
    lm = toy()

    class Obs(ppl.Model):
        def __init__(self, text):
            super().__init__()
            self.text = text
            self.ctx = lm.context("", constraint=regex(REGEX))

        async def step(self):
            await self.ctx.observe_text(self.text)
            self.finish()

    good = ppl.infer(Obs("ab"), method="is", n_particles=1, seed=0)
    assert good.log_Z == pytest.approx(math.log(next_probs(())[AB]))
    bad = ppl.infer(Obs("b"), method="is", n_particles=1, seed=0)
    assert bad.log_Z == -math.inf


def test_two_constraints_intersect():
    lm = toy()
    ctx = lm.context("", constraint=[regex("(ab)*"), regex("a.*")])
    assert ctx._state.mask().tolist() == [True, False, True, False]  # no empty text
    ctx._append(AB)
    assert ctx.accepting


def test_choice_and_json_schema_on_toy_bytes():
    lm = toy()
    ctx = lm.context("", constraint=choice(["ab", "ba"]))
    assert ctx._state.mask().tolist() == [True, True, True, False]
    ctx._append(B)
    assert ctx._state.mask().tolist() == [True, False, False, False]
    js = json_schema({"type": "integer"})
    assert "%json" in js.lark


def test_errors_name_the_problem():
    with pytest.raises(ConstraintError, match="unclosed group"):
        regex("(ab")
    with pytest.raises(ConstraintError, match="unknown name"):
        grammar("start: foo")
    with pytest.raises(ConstraintError, match="no grammar named"):
        grammar("no_such_grammar")
    with pytest.raises(ConstraintError, match="not valid JSON"):
        json_schema("{nope")
    with pytest.raises(ConstraintError, match="list of strings"):
        choice("ab")
    with pytest.raises(ConstraintError, match="sequence constraint"):
        toy().context("", constraint=ppl.lacks("a"))


def test_shipped_grammars_compile():
    import importlib

    import lark

    shipped = importlib.import_module("ppl.grammars")
    examples = {
        "json": ['{"a": [1, 2.5, "x", null], "b": {"c": true}}', "[]"],
        "arithmetic": ["1+2*3", "(1.5 - -2) / 4"],
        "sql": ["SELECT name, age FROM people WHERE age > 30 AND city = 'Paris' ORDER BY age DESC LIMIT 5;"],
    }
    chars = [chr(i) for i in range(32, 127)] + ["<eos>"]
    lm = ppl.ToyLM(chars, lambda prefix: np.full(len(chars), 1 / len(chars)))
    for name in shipped.available():
        if name == "steer":
            continue  # the DSL's own grammar, read by lark, not a generation target
        c = grammar(name)
        assert ppl.grammars is shipped and ppl.grammar(name).description == c.description
        parser = lark.Lark(shipped.read(name))
        for text in examples.get(name, []):
            parser.parse(text)  # lark reads the same file
            ctx = lm.context("", constraint=c)
            for t in lm.encode(text):
                ctx._append(t)
            assert ctx.accepting, (name, text)
            ctx._append(lm.eos_token_id)
            assert ctx.accepting


def test_matches_token():
    from ppl.constraints import matches_token

    lm = toy()
    assert matches_token("a+b?").mask(lm).tolist() == [True, False, True, False]
    assert matches_token("b*").mask(lm).tolist() == [False, True, False, True]  # EOS is ""
    assert matches_token("a") is matches_token("a")
    with pytest.raises(ValueError, match="invalid regular expression"):
        matches_token("(")


def test_potentials_compose_and_keep_their_contract():
    from ppl.constraints import potential

    short = potential(lambda t: -0.5 * len(t))

    @potential
    async def has_b(text):
        return "b" in text

    both = short * has_b
    texts = ["", "ab", "aa", "bbb"]
    values = asyncio.run(both.check(texts))
    assert values == [-math.inf, -1.0, -math.inf, -1.5]
    batched = potential(lambda ts: [len(t) for t in ts], batched=True)
    assert asyncio.run(batched.check(texts)) == [0.0, 2.0, 2.0, 3.0]
    bad = potential(lambda t: float("nan"))
    with pytest.raises(ppl.WeightError, match="finite or -inf"):
        asyncio.run(bad("x"))


def test_potential_as_twist_keeps_the_target():
    """A twist from a potential changes intermediate targets only."""
    from ppl.constraints import potential

    lm = toy()
    pot = potential(lambda t: -0.7 * t.count("b"))

    class Twisted(Constrained):
        async def step(self):
            await super().step()
            if not self.done:
                self.twist(await pot(self.ctx))

    Z, post = exact(lm, in_dyck)
    runs = run_many(lambda: Twisted(lm, grammar(DYCK)), "steer", runs=120, n_particles=6, expand=3)
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, post, 6)


def test_eos_ends_the_text_and_keeps_it_accepting():
    lm = toy()
    ctx = lm.context("", constraint=regex(REGEX))
    ctx._append(AB)
    ctx._append(EOS)
    assert ctx.finished and ctx.accepting and ctx.viable
    assert not ctx._state.mask().any()
    # constraining a finished context checks that the text is complete
    done = lm.context("")
    done._append(A)
    done._append(EOS)
    done.constrain(regex(REGEX))
    assert not done.viable and not done.accepting
    done = lm.context("")
    done._append(AB)
    done._append(EOS)
    done.constrain(regex(REGEX))
    assert done.accepting


def test_constraints_travel_to_other_processes():
    """A program's module-level constraint goes with it to a Ray worker:
    pickled by value, without its per-model mask cache."""
    cloudpickle = pytest.importorskip("ray.cloudpickle")
    lm = ppl.ToyLM(["a", "e", "<eos>"], lambda prefix: [0.3, 0.3, 0.4])
    c = ppl.lacks("eE") & ppl.no_special()
    before = c.mask(lm).tolist()
    copy_ = cloudpickle.loads(cloudpickle.dumps(c))
    assert repr(copy_) == repr(c) and copy_.mask(lm).tolist() == before == [True, False, True]
    assert repr(cloudpickle.loads(cloudpickle.dumps(ppl.regex("a+")))) == "regex('a+')"
