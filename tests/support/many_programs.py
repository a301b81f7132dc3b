"""Programs and model factories for maps over many inputs, importable by
worker processes (Ray workers find ``support`` on their ``PYTHONPATH``)."""

from __future__ import annotations

import asyncio
import os
import time

import ppl
from support.toy_programs import VOCAB, toy_lm, toy_next_probs


class Prompted(ppl.Model):
    """Unconstrained tokens after a prompt, a factor ``bonus`` per "a", and at
    the end a hard condition (no "cc")."""

    def __init__(self, lm, prompt: str = "", bonus: float = 0.5):
        super().__init__()
        self.ctx, self.bonus = lm.context(prompt), bonus

    async def step(self):
        tok = await self.sample(self.ctx.next_token())
        self.factor(self.bonus * (tok.text == "a"))
        if tok.is_eos or len(self.ctx) == 4:
            self.condition("cc" not in self.ctx.text)
            self.finish()


class SlowToyLM(ppl.ToyLM):
    """The toy model, ``delay`` seconds per batch: runs last long enough to
    kill a worker in the middle of them."""

    def __init__(self, delay: float = 0.02):
        super().__init__(VOCAB, toy_next_probs, eos="<eos>")
        self.delay = delay

    def batch_next_token_logprobs(self, prefixes):
        time.sleep(self.delay)
        return super().batch_next_token_logprobs(prefixes)


def slow_toy_lm() -> SlowToyLM:
    return SlowToyLM()


def broken_lm():
    """A model factory that fails as a missing model does."""
    raise ppl.ModelLoadError("no model at /nowhere/model.gguf")



class Fatal(Prompted):
    """Kills the process it runs in on the prompt "cc" (a poison input), when
    that process is a Ray worker (the tests set ``PPL_TEST_RAY_WORKER`` there)."""

    async def step(self):
        if self.ctx.prompt == "cc" and os.environ.get("PPL_TEST_RAY_WORKER"):
            await asyncio.sleep(0.2)  # mid-run, after the worker's earlier outcomes went out
            os._exit(1)
        await super().step()


@ppl.program
async def torch_threads(lm):
    """The number of torch threads of the process it runs in (and nothing drawn)."""
    import torch

    return f"{torch.get_num_threads()} threads"


__all__ = ["Fatal", "Prompted", "SlowToyLM", "broken_lm", "slow_toy_lm", "toy_lm", "torch_threads"]
