"""Detached results: what a worker process sends back instead of particles
that hold contexts that hold the model."""

from __future__ import annotations

import pickle

import numpy as np
from ppl.runtime.result import ParticleRecord
from support.many_programs import Prompted
from support.toy_programs import lipogram_fn, toy_lm

import ppl


def test_a_detached_result_summarises_as_the_original():
    lm = toy_lm()
    result = ppl.infer(Prompted(lm, "a"), n_particles=6, expand=2, seed=4, history=True)
    detached = result.detached()
    assert all(isinstance(p, ParticleRecord) for p in detached.particles)
    assert [str(p) for p in detached.particles] == [str(p) for p in result.particles]
    np.testing.assert_array_equal(detached.log_weights, result.log_weights)
    np.testing.assert_array_equal(detached.weights, result.weights)
    assert detached.log_Z == result.log_Z and detached.ess == result.ess and detached.status == result.status
    assert detached.posterior() == result.posterior()
    assert detached.to_dict() == result.to_dict()
    assert detached.detached().posterior() == result.posterior()  # detaching twice changes nothing
    again = pickle.loads(pickle.dumps(detached))
    assert again.posterior() == result.posterior() and again.history == result.history


def test_detached_records_keep_values_done_and_dead():
    lm = toy_lm()
    result = ppl.infer(lipogram_fn(lm), n_particles=4, expand=2, seed=1)
    for p, rec in zip(result.particles, result.detached().particles):
        assert rec.value == p.result_key() and rec.text == str(p)
        assert (rec.done, rec.dead, rec.log_weight) == (p.done, p.dead, p.log_weight)


def test_detached_outcomes_record_the_same_line():
    lm = toy_lm()
    for outcome in ppl.map(Prompted, [{"prompt": "b"}, {"prompt": "ab", "bonus": 0.0}], lm=lm, n_particles=4,
                           expand=2, seed=0):
        light = outcome.detached()
        assert light.record() == outcome.record()
        assert len(pickle.dumps(light)) < 4000  # no model, no contexts


def test_an_unpicklable_value_travels_as_its_repr():
    class Opaque:
        def __reduce__(self):
            raise TypeError("not picklable")

        def __repr__(self):
            return "<opaque>"

    class Particle:
        log_weight, done, dead = 0.0, True, False

        def result_key(self):
            return Opaque()

        def __str__(self):
            return "text"

    record = ParticleRecord.of(Particle())
    assert record.value == "<opaque>" and record.text == "text"
    pickle.dumps(record)
