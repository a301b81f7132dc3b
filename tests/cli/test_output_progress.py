"""Progress where the time goes: the first load of a GGUF model says on stderr
that it is dequantising (and when it is done), and the step progress line
says what its counts mean and shows the step limit."""

from __future__ import annotations

import io
import math

import pytest

from ppl.runtime.observers import Progress


def test_first_load_of_a_gguf_file_says_it_dequantises(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from ppl.runtime.backends.hf import loading

    monkeypatch.setenv("PPL_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"not really a model")
    monkeypatch.setattr(loading, "_load_gguf", lambda path, dtype: ("model", "tokenizer"))
    monkeypatch.setattr(loading, "_finish_model", lambda model, device, dtype: model)
    monkeypatch.setattr(loading, "_write_cache", lambda *args: None)
    info: dict = {}
    assert loading._load_gguf_cached(gguf, "Tiny", None, info) == ("model", "tokenizer")
    err = capsys.readouterr().err
    assert "ppl: first use of Tiny: dequantising tiny.gguf" in err and "later loads read the cache" in err
    assert "ppl: Tiny dequantised in" in err


class _Particle:
    def __init__(self, done=False, dead=False):
        self.done, self.dead = done, dead


def test_progress_line_names_its_counts_and_the_step_limit():
    stream = io.StringIO()
    progress = Progress(stream=stream, step_limit=4096)
    candidates = [_Particle(), _Particle(done=True), _Particle(done=True, dead=True), _Particle()]
    progress({"step": 3, "n_particles": 3, "live": 1, "ess": 2.5, "particle_steps": 9,
              "candidates": candidates, "parents": [0, 0, 1, 2], "log_weights": [0, 0, -math.inf, 0],
              "kept": [0, 1, 2]})
    progress.close()
    line = stream.getvalue()
    assert "step 3/4096" in line and "3 particles: 1 running, 1 finished, 1 dead" in line
    assert "ESS 2.5 of 4 candidates" in line and line.endswith("\n")
