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
                 "--expand", "2", "--seed", "3", "--json", str(out_json), "--verbose"])
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
    (["run", "prog.steer"], "prog.steer: no such file"),
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
    assert ".steer" in done.stdout and "@ppl.program" in done.stdout
    done = subprocess.run([sys.executable, "-m", "ppl.cli", "frobnicate"], capture_output=True, text=True)
    assert done.returncode == 2


def test_models_lists_the_default(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "SmolLM2-135M-Instruct" in out and "cache folder" in out


STEER = '''
program lipo(n: int = 3):
    ctx = lm("")
    repeat n:
        tok ~ ctx.next_token() where lacks("e")
        if tok == EOS: break
    return shout(ctx.text)
'''

EXTENSION = '''
import ppl

@ppl.builtin
def shout(text: str) -> str:
    return text.upper()
'''


@pytest.fixture(scope="session")
def extension_file(tmp_path_factory):
    """One file for the session: its builtin registers once per process (a
    different file registering the same name again is an error)."""
    path = tmp_path_factory.mktemp("ext") / "shout.py"
    path.write_text(EXTENSION)
    return path


@pytest.fixture
def steer_files(tmp_path, program_file, extension_file):
    (tmp_path / "lipo.steer").write_text(STEER)
    return tmp_path / "lipo.steer", extension_file


def test_run_steer_program(steer_files, program_file, capsys):
    steer, ext = steer_files
    code = main(["run", str(steer), "--import", str(ext), "--model", str(program_file),
                 "--arg", "n=2", "--particles", "4", "--seed", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lipo on ToyLM: smc_steer" in out
    table = out.split("result\n")[1].split("\n\n")[0]
    results = [line.split(None, 1)[1] for line in table.splitlines()]
    results = ["" if r == "'' (empty)" else r for r in results]
    assert results and all(set(r) <= {"A", "B"} for r in results), out


def test_steer_errors(steer_files, program_file, capsys, tmp_path):
    steer, ext = steer_files
    # an unknown function is reported before running, exit 1
    unknown = tmp_path / "unknown.steer"
    unknown.write_text(STEER.replace("shout(", "whisper("))
    assert main(["run", str(unknown), "--model", str(program_file)]) == 1
    assert "unknown function 'whisper'" in capsys.readouterr().err
    assert main(["run", str(steer), "--import", str(ext), "--model", str(program_file), "--arg", "n=two"]) == 2
    assert "--arg n=two" in capsys.readouterr().err
    assert main(["run", str(steer), "--import", "no_such_module_xyz"]) == 2
    assert "--import no_such_module_xyz" in capsys.readouterr().err


def test_check_command(steer_files, capsys, tmp_path):
    steer, ext = steer_files
    assert main(["check", str(steer), "--import", str(ext)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.steer"
    bad.write_text("program p():\n    x = y\n    return x\n")
    assert main(["check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:2:9: " in out and "1 error in" in out


def test_bench_outside_the_source_tree(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick"]) == 2
    assert "run `ppl bench` from the repository root" in capsys.readouterr().err


def test_bench_passes_its_arguments_on(capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "ppl.cli", "bench", "--help"], cwd=root,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "--quick" in done.stdout and "--memory" in done.stdout
