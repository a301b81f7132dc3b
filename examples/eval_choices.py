"""Answer with one of a few choices: where masking alone goes wrong.

What it shows: locally constrained decoding (``lcd``: a token mask at every
step, what constrained-decoding libraries do) samples each token from the
model renormalised over the tokens that can still lead to an allowed answer.
When an answer begins with a common token but goes on improbably (" The
capital is Paris" against " Paris"), the mask cannot know: it gives the
common first token its full mass and then forces the rest. The model's own
posterior over the answers, ``P(c) ∝ p(c | prompt)``, is exactly computable
here (a few forward passes), so the evaluation's metric (``metric`` below) is the
total-variation distance to it. Importance sampling and SMC
correct the mask with the weights ``p(C_t)``, and their distance goes to 0 as
``N`` grows, while lcd's stays at the distance between the masked proposal and
the posterior.

Run: ppl eval examples/eval_choices.py --inputs examples/data/eval_choices.jsonl \
         --metric examples/eval_choices.py:metric --methods lcd,is,smc,steer \
         --particles 1,4,16 --output eval-choices
Good output: lcd's distance stays near 0.4 at every N; the others' fall towards 0.
"""

from __future__ import annotations

import weakref

import numpy as np

import ppl


def answer_tree(lm, choices) -> tuple[dict, dict]:
    """The token tree of ``choices`` (each encoded as the model encodes it):
    ``allowed[prefix]`` the token constraint of the tokens that continue
    ``prefix`` to some choice, ``answers[ids]`` the choice spelled by ``ids``.
    ``ppl.PPLError`` when a choice's tokens begin another's (the answer
    would be ambiguous)."""
    encoded = {tuple(lm.encode(c)): c for c in choices}
    if len(encoded) != len(choices) or not all(encoded):
        raise ppl.PPLError(f"the choices must be distinct, non-empty texts, got {choices!r}")
    for ids, c in encoded.items():
        for k in range(1, len(ids)):
            if ids[:k] in encoded:
                raise ppl.PPLError(f"choice {encoded[ids[:k]]!r} is a token prefix of {c!r}")
    nexts: dict[tuple, set] = {}
    for ids in encoded:
        for k in range(len(ids)):
            nexts.setdefault(ids[:k], set()).add(ids[k])
    allowed = {prefix: _only(sorted(toks), lm.vocab_size) for prefix, toks in nexts.items()}
    return allowed, encoded


def _only(token_ids: list[int], vocab_size: int) -> ppl.TokenConstraint:
    mask = np.zeros(vocab_size, dtype=bool)
    mask[token_ids] = True
    return ppl.TokenConstraint(lambda lm: mask, f"one of tokens {token_ids}")


class PickAnswer(ppl.Model):
    """Decode tokens, masked to the answer tree, until one choice is spelled."""

    shared_attributes = ("allowed", "answers")

    def __init__(self, lm, prompt: str, choices: list):
        super().__init__()
        self.ctx = lm.context(prompt)
        self.allowed, self.answers = answer_tree(lm, choices)

    async def step(self):
        await self.sample(self.ctx.next_token().where(self.allowed[tuple(self.ctx.token_ids)]))
        if tuple(self.ctx.token_ids) in self.answers:
            self.finish()

    def result_key(self):
        return self.answers.get(tuple(self.ctx.token_ids), self.ctx.text)

    def __str__(self):
        return str(self.result_key())


# -- the metric: distance to the exact posterior ----------------------------------------
#
# The target of PickAnswer(lm, prompt, choices) is the model's own distribution
# over the choices, P(c) = p(c | prompt) / sum_c' p(c' | prompt), with
# p(c | prompt) = prod_t p(c_t | prompt, c_<t) over the tokens of c: computed
# exactly by one batch of next-token requests (every prefix of the answer tree).
# A run's estimate P_hat(c) is its normalised weight summed over the particles
# that answered c. metric() gives tv, the total-variation distance
# (1/2) sum_c |P_hat(c) - P(c)| (0: exact; 1 when every particle died), and
# mode, 1 if the run's most probable answer is the posterior's.


def exact_posterior(lm, prompt: str, choices) -> dict[str, float]:
    """``P(c)`` for every choice (see the module docstring)."""
    prompt_ids = tuple(lm.prompt_ids(prompt))
    encoded = [tuple(lm.encode(c)) for c in choices]
    prefixes = sorted({prompt_ids + ids[:k] for ids in encoded for k in range(len(ids))})
    rows = dict(zip(prefixes, lm.batch_next_token_logprobs(prefixes)))
    log_p = np.array([sum(float(rows[prompt_ids + ids[:k]][ids[k]]) for k in range(len(ids))) for ids in encoded])
    p = np.exp(log_p - log_p.max())
    return dict(zip(choices, p / p.sum()))


_EXACT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(prompt, choices): P}


def metric(input: dict, result, lm) -> dict[str, float]:
    """``tv`` and ``mode`` of one run (see above); ``ppl eval`` passes the model as ``lm``."""
    known = _EXACT.setdefault(lm, {})
    key = (input["prompt"], tuple(input["choices"]))
    if key not in known:
        known[key] = exact_posterior(lm, input["prompt"], input["choices"])
    exact = known[key]
    estimate = result.posterior()
    if not estimate:  # every particle died
        return {"tv": 1.0, "mode": 0.0}
    tv = 0.5 * sum(abs(estimate.get(c, 0.0) - p) for c, p in exact.items())
    tv += 0.5 * sum(w for c, w in estimate.items() if c not in exact)
    mode = float(next(iter(estimate)) == max(exact, key=exact.get))
    return {"tv": float(tv), "mode": mode}
