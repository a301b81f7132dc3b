"""Toy programs for the evaluation tests: a masked lipogram with arguments,
and a program that dies or raises on request."""

from __future__ import annotations

import pytest
from support.toy_programs import toy_lm

import ppl

MAX_LEN = 3


class Lip(ppl.Model):
    """Tokens from ``p(. | no letter in banned)`` until EOS or MAX_LEN tokens."""

    def __init__(self, lm, banned: str = "c"):
        super().__init__()
        self.ctx = lm.context("")
        self.mask = ppl.lacks(banned)

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(self.mask))
        if tok.is_eos or len(self.ctx) == MAX_LEN:
            self.finish()

    def result_key(self):
        return self.ctx.text


class Flaky(Lip):
    """``mode="die"``: every particle dies; ``"raise"``: the program raises."""

    def __init__(self, lm, mode: str = "ok"):
        super().__init__(lm)
        self.mode = mode

    async def step(self):
        if self.mode == "raise":
            raise RuntimeError("flaky program")
        self.condition(self.mode != "die")
        await super().step()


@pytest.fixture
def lm():
    return toy_lm()
