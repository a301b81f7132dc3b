"""The ``ppl`` command line: running programs, and its error messages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ppl.cli import main

PROGRAMS = textwrap.dedent('''
    import ppl

    def make_lm():
        return ppl.ToyLM(["a", "b", "e", "<eos>"], lambda p: [0.3, 0.3, 0.2, 0.2] if len(p) < 4 else [0, 0, 0, 1])

    @ppl.program
    async def lipogram(lm, n: int = 3, banned="e"):
        ctx = lm.context("")
        for _ in range(n):
            tok = await ppl.sample(ctx.next_token().where(ppl.lacks(banned)))
            if tok.is_eos:
                break
        return ctx.text

    class Failing(ppl.Model):
        def __init__(self, lm, strict: bool = True):
            super().__init__()
            self.strict = strict

        async def step(self):
            raise ValueError("this program is broken")
''')


@pytest.fixture
def program_file(tmp_path):
    path = tmp_path / "progs.py"
    path.write_text(PROGRAMS)
    return path


def test_run_prints_posterior_and_counters(program_file, capsys, tmp_path):
    out_json = tmp_path / "out.json"
    code = main(["run", f"{program_file}:lipogram", "--arg", "n=2", "--particles", "8",
                 "--expand", "2", "--seed", "3", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lipogram on ToyLM: smc_steer" in out and "log Z = " in out and "ESS per step" in out
    assert "scheduler: batches" in out
    data = json.loads(out_json.read_text())
    assert data["status"] == "ok" and data["settings"]["n_particles"] == 8
    assert all("e" not in v for v in data["posterior"])


@pytest.mark.parametrize("method", ["smc", "is"])
def test_other_methods(program_file, capsys, method):
    assert main(["run", f"{program_file}:lipogram", "--method", method, "--particles", "4", "--quiet"]) == 0
    assert ("smc_standard" if method == "smc" else "importance_sampling") in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["run", "nope.py"], "nope.py: no such file"),
    (["run", "{f}"], "several programs (Failing, lipogram); pick one with"),
    (["run", "{f}:missing"], "no program named 'missing'; programs in the file: Failing, lipogram"),
    (["run", "{f}:lipogram", "--arg", "n=three"], "--arg n=three: not a valid int"),
    (["run", "{f}:lipogram", "--arg", "size=3"], "lipogram has no parameter 'size'; its parameters are: n, banned"),
    (["run", "{f}:lipogram", "--arg", "n"], "expected NAME=VALUE"),
    (["run", "{f}:Failing", "--arg", "strict=maybe"], "--arg strict=maybe: not a valid bool"),
    (["run", "{f}:lipogram", "--particles", "0"], "n_particles must be an integer >= 1"),
    (["run", "{f}:lipogram", "--method", "smc", "--resampling", "bogus"], "valid names are"),
    (["run", "prog.steer"], "steer DSL"),
])
def test_usage_errors_exit_2(program_file, capsys, argv, message):
    argv = [a.replace("{f}", str(program_file)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_program_that_raises_exits_1_naming_the_step(program_file, capsys):
    assert main(["run", f"{program_file}:Failing", "--particles", "2"]) == 1
    err = capsys.readouterr().err
    assert "Failing raised ValueError at step 1: this program is broken" in err
    assert "Traceback" not in err and "--debug" in err
    assert main(["run", f"{program_file}:Failing", "--particles", "2", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_file_that_fails_to_import(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("import ppl\nraise RuntimeError('no import for you')\n")
    assert main(["run", str(bad)]) == 1
    assert "bad.py: importing the file raised RuntimeError: no import for you" in capsys.readouterr().err


def test_help_and_entry_point():
    done = subprocess.run([sys.executable, "-m", "ppl.cli", "run", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--particles" in done.stdout and "--expand" in done.stdout
    done = subprocess.run([sys.executable, "-m", "ppl.cli", "frobnicate"], capture_output=True, text=True)
    assert done.returncode == 2


def test_models_lists_the_default(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "SmolLM2-135M-Instruct" in out and "cache folder" in out
