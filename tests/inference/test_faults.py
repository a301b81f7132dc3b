"""Faults leave the runtime usable.

- A language model whose batch call raises (on its 3rd call; for the tiny
  Hugging Face model, inside its forward pass): every particle waiting on
  that batch gets the error, the run raises one clear error, no task is left
  pending, and the same model then answers as a fresh one does.
- A run cancelled mid-way stops at once; afterwards the same model's pins
  are all released, its trie is intact, no request is left queued, and it
  answers as a fresh one does.
- Two inferences in one event loop on one model, and two threads calling
  ``ppl.infer`` on one model at once, give the results they give alone: the
  scheduler holds the model's lock (``scheduler.model_lock``) around every
  batch call.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time

import numpy as np
import pytest
from support.toy_programs import toy_lm

import ppl
from ppl.runtime.scheduler import Scheduler, model_lock

METHODS = {"steer": (ppl.smc_steer, {"n_particles": 3, "expand": 2}),
           "smc": (ppl.smc_standard, {"n_particles": 4}),
           "is": (ppl.importance_sampling, {"n_particles": 4})}


class Seen(list):
    """The exceptions the particles saw: one list shared by every clone."""

    def __deepcopy__(self, memo):
        return self


class Writer(ppl.Model):
    """Up to ``n`` tokens of the model after ``prompt``; records what its
    sampling raised (and raises it on)."""

    def __init__(self, lm, prompt: str = "", n: int = 6, seen: Seen | None = None):
        super().__init__()
        self.ctx, self.left, self.seen = lm.context(prompt), n, seen if seen is not None else Seen()

    async def step(self):
        try:
            tok = await self.sample(self.ctx.next_token())
        except Exception as exc:
            self.seen.append(exc)
            raise
        self.left -= 1
        if tok.is_eos or self.left == 0:
            self.finish()

    def key(self):
        return self.ctx.text


def tiny():
    pytest.importorskip("transformers")
    from support.tiny_models import tiny_cached

    return tiny_cached("llama")


LMS = {"toy": (toy_lm, ""), "tiny-hf": (tiny, "the quick")}


@contextlib.contextmanager
def fault_on_call(lm, n: int = 3):
    """The ``n``-th batch call of ``lm`` raises: inside the forward pass of a
    model that has one, else at the call."""
    original = lm.batch_next_token_logprobs
    calls = [0]

    def boom(*args, **kwargs):
        raise RuntimeError("injected fault in the forward pass")

    def batch(prefixes):
        calls[0] += 1
        if calls[0] != n:
            return original(prefixes)
        model = getattr(lm, "model", None)
        if model is None:
            raise RuntimeError("injected fault in the batch call")
        model.forward = boom
        try:
            original(prefixes)
        finally:
            del model.forward
        raise AssertionError("the faulty batch needed no forward pass")  # pragma: no cover

    lm.batch_next_token_logprobs = batch
    try:
        yield calls
    finally:
        del lm.batch_next_token_logprobs


def answers(lm, prefixes) -> list[np.ndarray]:
    return [np.asarray(r, dtype=np.float64) for r in lm.batch_next_token_logprobs(prefixes)]


def assert_clean(lm) -> None:
    """No pin held, no half-written node (the trie's invariants), for a cached model."""
    gc.collect()
    trie = getattr(lm, "_trie", None)
    if trie is None:
        return
    lm.check_integrity()
    stack, held = [trie.root], 0
    while stack:
        node = stack.pop()
        held += node.pins
        stack.extend(node.children.values())
    assert held == 0 and trie.pending_pins == 0, f"{held} pins and {trie.pending_pins} pending pins left"


def same_as_fresh(lm, make, prompt) -> None:
    """The same inference on ``lm`` and on a fresh model: the same texts and
    weights (log-probs agree to float32 rounding), and the same log-probs
    for prefixes the faulty run touched."""
    fresh = make()
    tol = 1e-4 if hasattr(lm, "_trie") else 0.0  # cached keys and values vs a plain forward: float rounding
    a = ppl.infer(Writer(lm, prompt), method="smc", n_particles=4, seed=7)
    b = ppl.infer(Writer(fresh, prompt), method="smc", n_particles=4, seed=7)
    assert [p.key() for p in a.particles] == [p.key() for p in b.particles]
    assert np.allclose(a.log_weights, b.log_weights, atol=tol, rtol=0)
    prefixes = [tuple(p.ctx.prefix_ids) for p in a.particles]
    for x, y in zip(answers(lm, prefixes), answers(fresh, prefixes)):
        assert np.allclose(x, y, atol=tol, rtol=0)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("which", list(LMS))
def test_a_batch_that_raises_reaches_every_waiting_particle(method, which):
    make, prompt = LMS[which]
    lm = make()
    run, options = METHODS[method]
    seen = Seen()

    async def main():
        with fault_on_call(lm, 3) as calls:
            with pytest.raises(ppl.InferenceError) as info:
                await run(Writer(lm, prompt, seen=seen), seed=0, **options)
        assert calls[0] == 3  # the run stopped at the faulty batch
        assert asyncio.all_tasks() == {asyncio.current_task()}  # no task left pending
        return info.value

    message = str(asyncio.run(main()))
    assert "at step 3" in message and "injected fault" in message and len(message) < 400
    # every particle that waited on the third batch got the same error
    assert len(seen) >= 2 and len({id(e) for e in seen}) == 1
    assert isinstance(seen[0], (RuntimeError, ppl.errors.ForwardError))
    del seen[:]  # an exception's traceback holds the frames, and so the particles and their pins
    assert_clean(lm)
    same_as_fresh(lm, make, prompt)


@pytest.mark.parametrize("which", list(LMS))
def test_a_cancelled_run_stops_at_once_and_leaves_the_model_as_fresh(which):
    make, prompt = LMS[which]
    lm = make()
    scheduler = Scheduler()
    steps = []

    async def main():
        task = asyncio.ensure_future(ppl.smc_steer(Writer(lm, prompt, n=40), 4, 2, seed=0, scheduler=scheduler,
                                                   observer=lambda info: steps.append(info)))
        while len(steps) < 3:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(steps) == 3  # no step after the cancellation
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert scheduler.waiting == 0  # nothing queued, no future pending

    asyncio.run(main())
    del steps[:]  # the reports hold particles, and so pins
    assert_clean(lm)
    same_as_fresh(lm, make, prompt)


def test_two_inferences_in_one_event_loop_on_one_model():
    lm = toy_lm()

    async def both():
        return await asyncio.gather(ppl.smc_steer(Writer(lm), 3, 2, seed=1),
                                    ppl.smc_standard(Writer(lm), 4, seed=2))

    together = asyncio.run(both())
    alone = [ppl.infer(Writer(lm), method="steer", n_particles=3, expand=2, seed=1),
             ppl.infer(Writer(lm), method="smc", n_particles=4, seed=2)]
    for a, b in zip(together, alone):
        assert [p.key() for p in a.particles] == [p.key() for p in b.particles]
        assert list(a.log_weights) == list(b.log_weights) and a.log_Z == b.log_Z


class Exclusive(ppl.ToyLM):
    """A toy model that notices two batch calls running at once (each call
    lingers, so that unguarded threads would overlap)."""

    inside = 0
    overlaps = 0

    def batch_next_token_logprobs(self, prefixes):
        self.inside += 1
        if self.inside > 1:
            self.overlaps += 1
        time.sleep(0.002)
        try:
            return super().batch_next_token_logprobs(prefixes)
        finally:
            self.inside -= 1


def in_threads(fn, n: int = 2) -> list:
    out: list = [None] * n
    errors: list = []

    def work(i):
        try:
            out[i] = fn(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


def test_two_threads_on_one_model_take_turns_in_its_batches():
    from support.toy_programs import VOCAB, toy_next_probs

    lm = Exclusive(VOCAB, toy_next_probs, eos="<eos>")
    results = in_threads(lambda i: ppl.infer(Writer(lm), method="steer", n_particles=4, expand=2, seed=i))
    assert lm.overlaps == 0 and lm.calls > 10
    for i, r in enumerate(results):
        alone = ppl.infer(Writer(lm), method="steer", n_particles=4, expand=2, seed=i)
        assert [p.key() for p in r.particles] == [p.key() for p in alone.particles]
        assert list(r.log_weights) == list(alone.log_weights)
    assert model_lock(lm) is model_lock(lm) and model_lock(lm) is not model_lock(toy_lm())


def test_two_threads_on_one_cached_transformer():
    lm = tiny()
    def run(i):
        r = ppl.infer(Writer(lm, "the quick", n=8), method="smc", n_particles=4, seed=i)
        return [p.key() for p in r.particles], list(r.log_weights)  # the particles (and pins) go

    results = in_threads(run)
    assert_clean(lm)
    fresh = tiny()
    for i, (keys, log_weights) in enumerate(results):
        alone = ppl.infer(Writer(fresh, "the quick", n=8), method="smc", n_particles=4, seed=i)
        assert keys == [p.key() for p in alone.particles]
        assert np.allclose(log_weights, alone.log_weights, atol=1e-4)
