"""The seams a contributor extends: registered inference methods and
resampling schemes, the Weights value, values shared on clone, and the one
exception tree. An algorithm or scheme added the documented way runs through
the one driver and passes the same exact-answer test as the shipped ones."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from ppl.runtime import inference
from ppl.runtime.inference import registry
from ppl.runtime.inference.driver import Selection, run
from ppl.runtime.inference.smc import step_every_live
from ppl.runtime.resampling import RESAMPLERS, Weights, get_resampler, resampling_scheme
from support.stats import check_mean, check_posterior
from support.toy_programs import Scored, toy_lm

import ppl
from ppl import errors


@pytest.fixture
def scratch_registries():
    """Registries restored after the test, so that added names do not leak."""
    methods, schemes = dict(registry._METHODS), dict(RESAMPLERS)
    yield
    registry._METHODS.clear()
    registry._METHODS.update(methods)
    RESAMPLERS.clear()
    RESAMPLERS.update(schemes)


class _AlwaysResample:
    """Bootstrap SMC that resamples multinomially after every step: the
    smallest algorithm one writes against the driver."""

    name = "always_resample"
    extend = staticmethod(step_every_live)

    def __init__(self, n_particles):
        self.N, self.settings = n_particles, {}

    def select(self, candidates, weights: Weights, rng):
        if weights.ESS == 0.0 or all(p.done for p in candidates):
            return Selection(candidates, list(range(self.N)), weights.lw)
        kept = [int(a) for a in get_resampler("multinomial")(weights.W, self.N, rng)]
        seen, out = set(), []
        for a in kept:
            out.append(candidates[a] if a not in seen else candidates[a].clone())
            seen.add(a)
        for p in out:
            p.log_weight = weights.log_mean
        return Selection(out, kept, np.full(self.N, weights.log_mean), resampled=True)


def _exact_check(runs_of, n_particles):
    Z, exact = Scored.exact(toy_lm())
    runs = [(math.exp(r.log_Z), r.posterior(key=lambda p: p.key())) for r in runs_of]
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, exact, n_particles)


def test_a_registered_method_runs_through_infer_and_is_exact(scratch_registries):
    @registry.register_method("always", "bootstrap SMC resampling after every step")
    async def always(model, n_particles, *, seed=None, observer=None, history=False, scheduler=None):
        return await run(model, _AlwaysResample(n_particles), n_particles, seed=seed,
                         observer=observer, history=history, scheduler=scheduler)

    assert "always" in inference.methods()
    assert inference.get_method("always").options == {}
    lm = toy_lm()
    results = [ppl.infer(Scored(lm), method="always", n_particles=6, seed=500 + m) for m in range(200)]
    assert all(r.method == "always_resample" and r.resampled_at for r in results)
    _exact_check(results, 6)


def test_a_registered_resampling_scheme_is_usable_by_name(scratch_registries):
    @resampling_scheme("reversed_systematic")
    def reversed_systematic(W, n, rng):
        """Systematic resampling over the particles in reverse order: still
        ``E[copies of j] = n W_j``, with other strata."""
        return len(W) - 1 - RESAMPLERS["systematic"](W[::-1], n, rng)

    assert "reversed_systematic" in RESAMPLERS

    lm = toy_lm()
    results = [ppl.infer(Scored(lm), method="smc", n_particles=6, ess_threshold=1.0,
                         resampling="reversed_systematic", seed=900 + m) for m in range(200)]
    _exact_check(results, 6)


def test_unknown_names_list_what_is_registered():
    with pytest.raises(ValueError, match="unknown method 'nope'; valid methods are: steer, smc, is"):
        ppl.infer(Scored(toy_lm()), method="nope", n_particles=2)
    with pytest.raises(ValueError, match="valid names are: multinomial, residual, stratified, systematic"):
        get_resampler("nope")


def test_registering_a_name_twice_is_refused(scratch_registries):
    with pytest.raises(ValueError, match="already registered"):
        resampling_scheme("systematic")(lambda W, n, rng: np.zeros(n, dtype=np.int64))
    with pytest.raises(ValueError, match="already registered"):
        registry.register_method("steer", "another")(_async_noop)
    with pytest.raises(TypeError, match="must be an async function"):
        registry.register_method("sync", "a plain function")(lambda model, n_particles: None)


async def _async_noop(model, n_particles):
    return None


def test_method_options_are_read_from_the_signature():
    assert list(inference.get_method("steer").options) == ["expand", "max_steps"]
    assert list(inference.get_method("smc").options) == ["ess_threshold", "resampling", "max_steps"]
    assert list(inference.get_method("is").options) == ["max_steps"]
    assert list(inference.get_method("lcd").options) == ["max_steps"]


def test_weights_value():
    lw = np.array([0.0, math.log(3.0), -math.inf, math.log(4.0)])
    w = Weights(lw)
    assert w.W.tolist() == pytest.approx([0.125, 0.375, 0.0, 0.5])
    assert w.ESS == pytest.approx(1.0 / (0.125**2 + 0.375**2 + 0.5**2))
    assert w.log_mean == pytest.approx(math.log(2.0))
    with pytest.raises(ValueError):
        w.W[0] = 1.0  # immutable
    dead = Weights(np.full(3, -np.inf))
    assert dead.ESS == 0.0 and dead.log_mean == -math.inf and not dead.W.any()


def test_values_are_shared_and_contexts_follow_their_clone():
    lm = toy_lm()
    c, s, pot = ppl.lacks("c"), ppl.regex("a+"), ppl.potential(lambda text: 0.0)
    dist = ppl.Categorical([0.5, 0.5])
    for value in (c, s, pot, dist, lm):
        assert copy.deepcopy(value) is value

    class Holder(ppl.Model):
        def __init__(self):
            super().__init__()
            self.ctx = lm.context("")
            self.next = self.ctx.next_token().where(c)
            self.c = c

        async def step(self):
            self.finish()

    m = Holder()
    clone = m.clone()
    assert clone.c is c
    assert clone.next is not m.next and clone.next.context is clone.ctx  # bound to the clone's handle
    assert clone.next.constraint is m.next.constraint


def test_every_error_is_a_ppl_error():
    for name in ("ArgumentError", "ArgumentTypeError", "ModelError", "WeightError", "InferenceError", "NestedEventLoopError", "ConstraintError",
                 "BackendError", "ForwardError", "TokenIdError", "ModelLoadError", "ModelNotInstalledError",
                 "UsageError"):
        assert issubclass(getattr(errors, name), ppl.PPLError), name
    assert issubclass(errors.TokenIdError, ValueError) and issubclass(errors.ConstraintError, ValueError)
    from ppl.dsl import DSLError

    assert issubclass(DSLError, ppl.PPLError)


@pytest.mark.parametrize("bad", [
    lambda lm: ppl.infer(Scored(lm), n_particles=0, expand=2),
    lambda lm: ppl.infer(Scored(lm), method="steer", n_particles=2, expand=0),
    lambda lm: ppl.infer(Scored(lm), method="smc", n_particles=2, ess_threshold=2.0),
    lambda lm: ppl.infer(Scored(lm), method="smc", n_particles=2, resampling="nope"),
    lambda lm: ppl.infer("not a program", n_particles=2, expand=2),
    lambda lm: ppl.Categorical([0.5, 0.6]),
    lambda lm: ppl.load_lm(backend="nope"),
    lambda lm: ppl.ToyLM(["a"], lambda p: [1.0]),
    lambda lm: ppl.program(lambda: None),
], ids=["particles", "expand", "threshold", "scheme", "not-a-program", "probs", "backend", "toy-vocab", "sync-program"])
def test_bad_input_is_a_ppl_error(bad):
    """``except ppl.PPLError`` catches what a user's input can cause."""
    with pytest.raises(ppl.PPLError):
        bad(toy_lm())
