"""Cloning ``@ppl.program`` particles by copying their suspended coroutine
(:mod:`ppl.coroutine_copy`) instead of replaying their trace.

A copy and a replay are two ways to the same state, so a run must not be
able to tell them apart: the same seed gives the same run, to the last bit,
on every program of the toy suite and on programs that keep state in the
places a frame keeps it (loop iterators, lists, helper coroutines, step
blocks, submodels, generators, comprehensions). The unit tests check what a
copy is (independent locals, shared arguments, contexts copied as handles),
what it refuses (and that a refused copy falls back to replay and says so),
and that copying leaks no references."""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings

import numpy as np
import pytest
from support.exact import exact_target
from support.toy_programs import FUNCTION_PROGRAMS, LACKS_C, MAX_LEN, toy_lm

import ppl
from ppl import coroutine_copy

ProgramModel = sys.modules["ppl.program"].ProgramModel
ReplayWarning = sys.modules["ppl.program"].ReplayWarning
SETTINGS = [("steer", {"n_particles": 6, "expand": 3}), ("smc", {"n_particles": 8}), ("is", {"n_particles": 4})]


def test_available_on_cpython_3_11():
    if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11):
        assert coroutine_copy.available(), coroutine_copy.reason()
    else:  # pragma: no cover - the project runs on 3.11
        assert not coroutine_copy.available() and coroutine_copy.reason()


def runs(model_of, seeds=range(4), method="steer", **options):
    """The runs of ``model_of(lm)`` with coroutine copying, then by replay."""
    out = {}
    for mode in (True, False):
        ProgramModel.copy_frames = mode
        try:
            lm = toy_lm()
            with warnings.catch_warnings():
                warnings.simplefilter("error", ReplayWarning)  # copying must not fall back
                out[mode] = [ppl.infer(model_of(lm), method=method, seed=s, **options) for s in seeds]
        finally:
            ProgramModel.copy_frames = True
    return out[True], out[False]


def assert_same_runs(copied, replayed):
    for a, b in zip(copied, replayed):
        assert a.status == b.status == "ok"
        assert a.log_Z == b.log_Z  # bit for bit: the same draws in the same order
        assert list(a.log_weights) == list(b.log_weights)
        assert [str(p) for p in a.particles] == [str(p) for p in b.particles]


@pytest.mark.parametrize("program", FUNCTION_PROGRAMS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("method,options", SETTINGS, ids=[m for m, _ in SETTINGS])
def test_copy_and_replay_give_the_same_run(program, method, options):
    assert_same_runs(*runs(program, method=method, **options))


async def pick(ctx, choices):
    """A helper coroutine awaited by the program: its frame is copied too."""
    tok = await ppl.sample(ctx.next_token().where(LACKS_C))
    choices.append(tok.text)
    return tok


class Pair(ppl.Submodel):
    def __init__(self, ctx):
        self.ctx = ctx

    async def forward(self):
        a = await self.sample(self.ctx.next_token())
        self.factor(-0.3 * (a.text == "a"))
        return a


@ppl.program
async def stateful(lm, words=("x", "y")):
    """State in every place a frame keeps it: a for-loop iterator over a
    list, a list appended to, a dict, a generator, a comprehension over a
    local, a helper coroutine, a step block and a submodel."""
    ctx = lm.context("")
    seen, counts = [], {}
    labels = (w.upper() for w in words)
    limit = MAX_LEN
    for i in [0, 1]:
        tok = await pick(ctx, seen)
        counts[tok.text] = counts.get(tok.text, 0) + 1
        ppl.factor(-0.1 * len([s for s in seen if len(s) < limit]))
        if tok.is_eos:
            return ctx.text + "|" + next(labels)
    async with ppl.step():
        last = await ppl.sample(ctx.next_token())
        ppl.factor(-0.2 * counts.get("b", 0))
    if not last.is_eos and len(ctx) < MAX_LEN:
        await ppl.call(Pair(ctx))
    return ctx.text + "|" + next(labels) + str(sorted(counts.items()))


@pytest.mark.parametrize("method,options", SETTINGS, ids=[m for m, _ in SETTINGS])
def test_state_in_loops_helpers_blocks_and_submodels(method, options):
    copied, replayed = runs(stateful, seeds=range(6), method=method, **options)
    assert_same_runs(copied, replayed)
    assert len({r.log_Z for r in copied}) > 1  # the seeds gave different runs


# -- what a copy is --------------------------------------------------------------------------


class Yield:
    """An awaitable that suspends once and returns what it is sent."""

    def __await__(self):
        return (yield "suspended")


def finish(coro, value):
    try:
        coro.send(value)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine did not finish")


def test_a_copy_has_its_own_locals_and_shares_the_arguments():
    shared = {"arg": 1}

    async def body(arg):
        items = [1]
        got = await Yield()
        items.append(got)
        return arg, items

    coro = body(shared)
    coro.send(None)
    twin = coroutine_copy.copy_coroutine(coro, {id(shared): shared})
    a, b = finish(coro, "a"), finish(twin, "b")
    assert a == (shared, [1, "a"]) and b == (shared, [1, "b"])
    assert a[0] is b[0] and a[1] is not b[1]


def test_a_context_is_copied_as_a_handle():
    lm = toy_lm()

    async def body():
        ctx = lm.context("a")
        await Yield()
        return ctx

    coro = body()
    coro.send(None)
    twin = coroutine_copy.copy_coroutine(coro, {})
    c1, c2 = finish(coro, None), finish(twin, None)
    assert c1 is not c2 and c1.prefix_ids is c2.prefix_ids and c1.lm is c2.lm


def test_a_finally_block_runs_in_both():
    ran = []

    async def body():
        try:
            return await Yield()
        finally:
            ran.append("finally")

    coro = body()
    coro.send(None)
    twin = coroutine_copy.copy_coroutine(coro)
    assert (finish(coro, 1), finish(twin, 2)) == (1, 2)
    assert ran == ["finally", "finally"]


def refusal(body):
    coro = body()
    coro.send(None)
    try:
        with pytest.raises(coroutine_copy.NotCopyable) as info:
            coroutine_copy.copy_coroutine(coro)
        return str(info.value)
    finally:
        coro.close()


def test_what_cannot_be_copied_is_refused_with_the_reason():
    async def living_closure():
        n = 3
        f = lambda: n
        await Yield()
        return f()

    async def in_except():
        try:
            raise KeyError("k")
        except KeyError:
            await Yield()

    async def async_generator():
        async def agen():
            yield 1

        g = agen()
        await Yield()
        return g

    assert "captured by a living closure" in refusal(living_closure)
    assert "inside an except block" in refusal(in_except)
    assert "async_generator in a frame cannot be copied" in refusal(async_generator)


def test_a_refused_copy_falls_back_to_replay_and_warns():
    @ppl.program
    async def closure_program(lm):
        ctx = lm.context("")
        allowed = LACKS_C
        where = lambda d: d.where(allowed)
        while len(ctx) < MAX_LEN:
            tok = await ppl.sample(where(ctx.next_token()))
            if tok.is_eos:
                break
        return ctx.text

    @ppl.program
    async def plain_program(lm):
        ctx = lm.context("")
        while len(ctx) < MAX_LEN:
            tok = await ppl.sample(ctx.next_token().where(LACKS_C))
            if tok.is_eos:
                break
        return ctx.text

    lm = toy_lm()
    with pytest.warns(ReplayWarning, match="closure_program.*replaying.*living closure"):
        a = ppl.infer(closure_program(lm), method="steer", n_particles=6, expand=3, seed=5)
    b = ppl.infer(plain_program(lm), method="steer", n_particles=6, expand=3, seed=5)
    assert a.log_Z == b.log_Z and a.posterior() == b.posterior()


def test_copying_leaks_no_references():
    payload = object()

    async def body(x):
        keep = [x]
        await Yield()
        return keep

    coro = body(payload)
    coro.send(None)
    gc.collect()
    before = sys.getrefcount(payload)
    for _ in range(200):
        twin = coroutine_copy.copy_coroutine(coro, {id(payload): payload})
        finish(twin, None)
        other = coroutine_copy.copy_coroutine(coro, {id(payload): payload})
        other.close()
        del twin, other
    gc.collect()
    assert sys.getrefcount(payload) == before
    coro.close()


def test_cloned_particles_need_no_replay():
    """A clone of a suspended program particle runs on at once: no replayed
    site, and its trace is its parent's."""
    lm = toy_lm()
    program = FUNCTION_PROGRAMS[0]

    async def go():
        from ppl.runtime.scheduler import Scheduler

        rng, sched = np.random.default_rng(0), Scheduler()
        p = program(lm).clone()
        await sched.gather([p.advance(rng)])
        await sched.gather([p.advance(rng)])
        c = p.clone()
        assert c._coro is not None and c._replay_to == 0
        await sched.gather([c.advance(rng)])
        assert c.trace[: len(p.trace)] == p.trace

    asyncio.run(go())


@ppl.program
async def on_given_context(ctx):
    """A program handed a context: each particle extends its own handle."""
    while len(ctx) < MAX_LEN:
        tok = await ppl.sample(ctx.next_token().where(LACKS_C))
        if tok.is_eos:
            break
    return ctx.text


@pytest.mark.parametrize("method,options", SETTINGS, ids=[m for m, _ in SETTINGS])
def test_a_context_argument_is_each_particles_own(method, options):
    copied, replayed = runs(lambda lm: on_given_context(lm.context("")), method=method, **options)
    assert_same_runs(copied, replayed)
    plain = [ppl.infer(FUNCTION_PROGRAMS[0](toy_lm()), method=method, seed=s, **options) for s in range(4)]
    assert [r.log_Z for r in copied] == [r.log_Z for r in plain]


# -- what the review of the copier found (each was a crash or a wrong copy) ----------------------


def test_a_bound_builtin_method_follows_the_copy_of_its_object():
    async def body():
        seen = []
        add = seen.append
        add("x")
        add(await Yield())
        return seen

    coro = body()
    coro.send(None)
    twin = coroutine_copy.copy_coroutine(coro)
    assert (finish(coro, "a"), finish(twin, "b")) == (["x", "a"], ["x", "b"])


def test_a_weak_reference_follows_the_copy_of_its_referent():
    import weakref

    class Box:
        pass

    async def body():
        box = Box()
        ref = weakref.ref(box)
        box.value = await Yield()
        return ref().value

    coro = body()
    coro.send(None)
    twin = coroutine_copy.copy_coroutine(coro)
    assert (finish(coro, "a"), finish(twin, "b")) == ("a", "b")


def test_iterators_that_read_a_dict_or_set_live_are_refused():
    async def over_items():
        d = {"a": 0, "b": 0}
        for _key, _value in enumerate(d.items()):
            d["b"] = await Yield()
        return d

    assert "reads a dict or set live" in refusal(over_items)


def test_user_code_that_closes_the_original_during_the_copy_is_refused():
    holder = {}

    class Closer:
        def __deepcopy__(self, memo):
            holder["coro"].close()
            return Closer()

    async def body():
        closer = Closer()
        items = [object() for _ in range(3)]
        return await Yield(), items, closer

    coro = body()
    holder["coro"] = coro
    coro.send(None)
    with pytest.raises(coroutine_copy.NotCopyable, match="ran or changed while it was being copied"):
        coroutine_copy.copy_coroutine(coro)


def test_a_swapped_code_object_during_the_copy_is_refused():
    async def other():
        return 0

    class Swapper:
        def __deepcopy__(self, memo):
            body.__code__ = other.__code__
            return Swapper()

    async def body():
        swapper = Swapper()
        got = await Yield()
        return got, swapper

    original = body.__code__
    coro = body()
    coro.send(None)
    try:
        with pytest.raises(coroutine_copy.NotCopyable):
            coroutine_copy.copy_coroutine(coro)
    finally:
        body.__code__ = original
        coro.close()


def test_a_chain_too_deep_to_copy_is_refused_not_raised():
    async def chain(n):
        return await Yield() if n == 0 else await chain(n - 1)

    coro = chain(sys.getrecursionlimit() // 2)  # runs; copying takes several frames a level
    coro.send(None)
    with pytest.raises(coroutine_copy.NotCopyable, match="too deep"):
        coroutine_copy.copy_coroutine(coro)
    coro.close()


def test_a_refused_copy_runs_nothing_of_what_it_had_built():
    import threading

    ran = []

    def numbers():
        try:
            yield 1
            yield 2
        finally:
            ran.append("finally")

    async def body():
        numbers_left = numbers()
        next(numbers_left)
        lock = threading.Lock()  # cannot be copied: refused after the generator was
        return await Yield(), lock

    coro = body()
    coro.send(None)
    for _ in range(3):
        with pytest.raises(coroutine_copy.NotCopyable, match="lock"):
            coroutine_copy.copy_coroutine(coro)
    gc.collect()
    assert ran == []
    coro.close()
    assert ran == ["finally"]
