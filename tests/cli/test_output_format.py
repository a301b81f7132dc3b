"""What ``ppl run`` prints for one run: whole texts, wrapped, with their line
breaks; --top and --min-p; the legend; counters only with --verbose; the
all-died explanation; files written before printing; a closed pipe ends
quietly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from ppl.cli import main
from ppl.cli_output import format_result, result_rows, wrap

PROGRAMS = textwrap.dedent('''
    import ppl

    WORDS = ["alpha ", "beta ", "gamma ", "\\n", "e", "<eos>"]

    def make_lm():
        def probs(prefix):
            if len(prefix) >= 30:
                return [0, 0, 0, 0, 0, 1]
            return [0.25, 0.25, 0.2, 0.1, 0.1, 0.1] if len(prefix) >= 2 else [0.3, 0.3, 0.2, 0.1, 0.1, 0.0]
        return ppl.ToyLM(WORDS, probs)

    @ppl.program
    async def long(lm, n: int = 30):
        ctx = lm.context("")
        for _ in range(n):
            tok = await ppl.sample(ctx.next_token().where(ppl.lacks("e")))
            if tok.is_eos:
                break
        return ctx.text

    @ppl.program
    async def doomed(lm):
        ctx = lm.context("")
        for _ in range(3):
            await ppl.sample(ctx.next_token().where(ppl.lacks("\\n")))
            ppl.condition(len(ctx.text) < 7)
        return ctx.text

    class Hopeless(ppl.Model):
        def __init__(self, lm):
            super().__init__()
            self.ctx = lm.context("")

        async def step(self):
            await self.sample(self.ctx.next_token().where(ppl.lacks("abcdegilmpt\\n")))
''')


@pytest.fixture
def progs(tmp_path):
    path = tmp_path / "progs.py"
    path.write_text(PROGRAMS)
    return path


def _table(out: str) -> str:
    return out.split("result\n", 1)[1].split("\n\nlog Z", 1)[0]


def test_wrap_keeps_line_breaks_and_indents():
    lines = wrap("one two three four five six seven\nsecond line", width=30, indent=8)
    assert lines[0].startswith("one two") and all(l.startswith(" " * 8) for l in lines[1:])
    assert any(l.strip() == "second line" for l in lines)
    assert all(len(l) <= 30 for l in lines)


def test_rows_fold_small_weights_and_never_print_zero():
    post = {"a": 0.7, "b": 0.29, "c": 0.00999, "d": 0.00001}
    rows = result_rows(post, top=10, min_p=0.01, width=80)
    assert [r.split()[0] for r in rows[1:3]] == ["0.7000", "0.2900"]
    assert "and 2 more results (each with P < 0.01; together P = 0.01)" in rows[-1]
    assert not any("0.0000" in r for r in rows)
    rows = result_rows(post, top=1, min_p=0.001, width=80)
    assert len(rows) == 3 and "and 3 more results (P < 0.001 or beyond --top 1" in rows[-1]


def test_full_texts_with_line_breaks_and_legend(progs, capsys):
    assert main(["run", f"{progs}:long", "--particles", "6", "--seed", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    table = _table(out)
    assert "..." not in table.replace("... and", "")  # nothing cut
    results = [l for l in table.splitlines() if l[:6].strip()]
    assert results and all(l[:6].strip().startswith("0.") or l[:6].strip().startswith("1.") for l in results)
    assert "\n        " in table  # continuation lines are indented under the text
    assert "P = normalised weight" in out and "log Z = log of the estimated normalising constant" in out
    assert "ESS (of the N*K = 18 candidates" in out
    assert "resampled after" not in out and "each step kept N = 6 of up to N*K = 18" in out
    assert "scheduler:" not in out and "ESS per step" not in out
    assert main(["run", f"{progs}:long", "--particles", "6", "--seed", "1", "--verbose", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "scheduler: batches" in out and "ESS per step" in out
    assert len([l for l in _table(out).splitlines() if l[:6].strip() and l[:6].strip()[0].isdigit()]) <= 2


def test_all_died_says_when_why_and_what_lived(progs, capsys, tmp_path):
    out_json = tmp_path / "d.json"
    assert main(["run", f"{progs}:doomed", "--particles", "4", "--seed", "0", "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    assert "no result: every particle died" in out
    assert "the last live particle died at step" in out
    assert "most were killed by condition: condition(False)" in out
    assert "last live texts (step" in out
    deaths = json.loads(out_json.read_text())["deaths"]
    assert deaths["all_died"] and deaths["main_cause"] == "condition" and deaths["last_alive_texts"]
    assert deaths["last_death_step"] == deaths["last_alive_step"] + 1


def test_a_constraint_with_no_allowed_token_is_named(progs, capsys):
    assert main(["run", f"{progs}:Hopeless", "--particles", "3", "--seed", "0"]) == 1
    out = capsys.readouterr().out
    assert "the last live particle died at step 1" in out and "killed by constraint" in out


def test_files_are_written_before_printing(progs, tmp_path, monkeypatch):
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"

    def closed(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("builtins.print", closed)
    code = main(["run", f"{progs}:long", "--particles", "3", "--seed", "0", "--quiet",
                 "--json", str(out_json), "--html", str(out_html)])
    monkeypatch.undo()
    assert code == 0 and out_json.stat().st_size > 0 and out_html.stat().st_size > 0


def test_a_pipe_closed_early_ends_quietly(progs):
    """`ppl run ... | head -0`: the reader is gone before anything is printed."""
    proc = subprocess.Popen([sys.executable, "-m", "ppl.cli", "run", f"{progs}:long", "--particles", "8",
                             "--seed", "0", "--top", "50", "--min-p", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away, as `head` does once it has its lines
    _, err = proc.communicate(timeout=120)
    assert b"Broken pipe" not in err and b"internal error" not in err, err
    assert proc.returncode == 0


def test_format_result_of_a_smc_run_counts_resamplings():
    result = SimpleNamespace(
        posterior=lambda: {"x": 1.0}, log_Z=0.5, n_steps=4, wall_time=0.1, status="ok",
        ess=[4.0, 2.0, 4.0, 3.0], resampled_at=[2], method="smc_standard", n_particles=4,
        settings={"ess_threshold": 0.5}, stats={}, weights=np.ones(4) / 4)
    out = format_result(result, "t", width=80)
    assert "resampled after 1 of 4 steps (when ESS < 0.5*N)" in out
    assert "log Z = 0.5000" in out and "ESS (of the N = 4 particles, before selection): last 3.0, lowest 2.0 at step 2" in out
