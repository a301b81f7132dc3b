"""CPU threads: a default that does not oversubscribe a small or busy machine,
set by ``ppl.load_lm(threads=...)`` and ``ppl run --threads``, and shown in
the run's header."""

from __future__ import annotations

import pytest
import torch
from ppl.runtime.backends.hf.devices import default_threads, set_threads


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("cpus, env, expected", [
    (2, None, 1), (4, None, 2), (16, None, 8), (64, None, 8), (1, None, 1), (None, None, 1),
    (16, "3", 3), (2, "bogus", 1),
])
def test_the_default_rule(monkeypatch, cpus, env, expected):
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert default_threads() == expected


def test_set_threads(restore_threads):
    assert set_threads(2) == 2 and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads must be an integer >= 1, got 0"):
        set_threads(0)


def test_the_run_header_shows_the_threads(tmp_path, capsys, restore_threads):
    from ppl.cli import main

    program = tmp_path / "prog.py"
    program.write_text(
        "import ppl\n"
        "def make_lm():\n"
        "    return ppl.ToyLM(['a', '<eos>'], lambda prefix: [0.5, 0.5])\n"
        "class P(ppl.Model):\n"
        "    def __init__(self, lm):\n"
        "        super().__init__()\n"
        "        self.ctx = lm.context('')\n"
        "    async def step(self):\n"
        "        await self.sample(self.ctx.next_token())\n"
        "        self.finish()\n",
        encoding="utf-8",
    )
    assert main(["run", str(program), "--threads", "2", "--particles", "2", "--quiet"]) == 0
    assert "threads=2)" in capsys.readouterr().out.splitlines()[0]
    assert main(["run", str(program), "--threads", "0", "--particles", "2"]) == 2
