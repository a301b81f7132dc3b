"""Integration tests on the default model (SmolLM2-135M-Instruct, packaged).

Marked slow: they load the real model (a few seconds once it is cached, about
20 s the first time) and run short programs on it.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import ppl
from ppl.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lm(default_lm):
    return default_lm


def test_cached_logprobs_match_a_plain_forward(lm):
    """Mixed batches of shared and unshared prefixes, answered through the
    trie, equal one plain full forward of each sequence within 2e-4 (float32;
    the largest difference seen is about 6e-5)."""
    rng = random.Random(0)
    base = lm.prompt_ids("The capital of France is")
    prefixes = [tuple(base)]
    for _ in range(12):
        parent = rng.choice(prefixes)
        prefixes.append(parent + tuple(rng.randrange(17, lm.vocab_size) for _ in range(rng.randint(1, 6))))
    prefixes.append(tuple(rng.randrange(17, lm.vocab_size) for _ in range(40)))
    for start in range(0, len(prefixes), 5):  # several batches, extending earlier ones
        batch = prefixes[start:start + 5]
        rng.shuffle(batch)  # arrival order does not matter
        rows = lm.batch_next_token_logprobs(batch)
        for prefix, row in zip(batch, rows):
            with torch.no_grad():
                logits = lm.model(torch.tensor([prefix])).logits[0, -1, : lm.vocab_size]
            expected = torch.log_softmax(logits.float(), -1).numpy()
            assert np.max(np.abs(row - expected)) < 2e-4, prefix
    stats = lm.stats()
    assert stats["tokens_computed"] < stats["tokens_requested"]


def test_main_job_runs_and_keeps_the_constraint(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    code = main(["run", str(ROOT / "examples" / "lipogram.py"), "--particles", "4", "--expand", "2",
                 "--seed", "0", "--arg", "n=8", "--quiet", "--verbose", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "SmolLM2-135M-Instruct" in out and "forward_passes" in out  # --verbose shows the counters
    import json

    data = json.loads(out_json.read_text())
    assert data["status"] == "ok"
    assert all("e" not in p["value"].lower() for p in data["particles"] if p["weight"] > 0)


def test_steer_lipogram_on_the_default_model(capsys):
    code = main(["run", str(ROOT / "examples" / "lipogram.steer"), "--particles", "3", "--expand", "2",
                 "--seed", "1", "--arg", "n=6", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lipogram on SmolLM2-135M-Instruct" in out


def test_same_seed_same_result_on_the_real_model(lm):
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    from lipogram import Lipogram

    a = ppl.infer(Lipogram(lm, n=6), method="steer", n_particles=3, expand=2, seed=5)
    b = ppl.infer(Lipogram(lm, n=6), method="steer", n_particles=3, expand=2, seed=5)
    assert [str(p) for p in a.particles] == [str(p) for p in b.particles]
    assert a.log_Z == b.log_Z
