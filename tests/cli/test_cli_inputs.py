"""``ppl run PROGRAM --inputs FILE.jsonl``: data-set runs from the command line.

Every input line is checked before anything runs (``FILE:LINE: ...``, exit
status 2); each finished run's record is appended to ``--output`` at once;
a rerun resumes (after a SIGKILL too) with the results of an uninterrupted
run; the exit status says whether every run was ok.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pytest

import ppl
from ppl.cli import main

PROGRAMS = textwrap.dedent('''
    import os
    import time

    import ppl

    def make_lm():
        delay = float(os.environ.get("TOY_DELAY", "0"))

        def probs(prefix):
            if delay:
                time.sleep(delay)
            return [0.3, 0.3, 0.2, 0.2] if len(prefix) < 4 else [0, 0, 0, 1]

        return ppl.ToyLM(["a", "b", "e", "<eos>"], probs)

    @ppl.program
    async def lipogram(lm, prompt: str = "", n: int = 3, banned="e"):
        ctx = lm.context(prompt)
        for _ in range(n):
            tok = await ppl.sample(ctx.next_token().where(ppl.lacks(banned)))
            if tok.is_eos:
                break
        return ctx.text

    class Picky(ppl.Model):
        """Needs a word; raises on "boom"; every particle dies on "never"."""

        def __init__(self, lm, word: str, scale: float = 1.0, tags: list | None = None):
            super().__init__()
            self.ctx, self.word = lm.context(""), word

        async def step(self):
            if self.word == "boom":
                raise ValueError("boom goes the program")
            await self.sample(self.ctx.next_token())
            self.condition(self.word != "never")
            self.finish()
''')

STEER = '''
program lipo(n: int = 2, banned: str = "e", weights: list = [1]):
    ctx = lm("")
    repeat n:
        tok ~ ctx.next_token() where lacks(banned)
        if tok == EOS: break
    return ctx.text
'''


@pytest.fixture
def progs(tmp_path):
    path = tmp_path / "progs.py"
    path.write_text(PROGRAMS)
    return path


def write_lines(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def read_records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def located(err, path):
    """The ``FILE:LINE:`` messages in ``err``."""
    return re.findall(rf"^{re.escape(str(path))}:\d+: .*$", err, re.M)


def comparable(records):
    """Records by id without what depends on timing and concurrency."""
    out = {}
    for r in records:
        assert r["id"] not in out, f"id {r['id']!r} twice"
        out[r["id"]] = {k: v for k, v in r.items() if k not in ("wall_time", "stats")}
    return out


INPUTS = [{"prompt": "a", "n": 2}, {"id": "bee", "prompt": "b"}, {"n": 4}, {"banned": "ab"}]
RUN = ["--particles", "4", "--expand", "2", "--quiet"]


def test_every_input_gives_one_record(progs, tmp_path, capsys):
    inputs = write_lines(tmp_path / "in.jsonl", INPUTS[:2] + [""] + INPUTS[2:])  # a blank line is skipped
    out = tmp_path / "out.jsonl"
    assert main(["run", f"{progs}:lipogram", "--inputs", str(inputs), "--output", str(out), *RUN]) == 0
    assert capsys.readouterr().err.strip() == f"ppl: 4 inputs: 4 ok, 0 died, 0 errors; results in {out}"
    records = {r["id"]: r for r in read_records(out)}
    assert set(records) == {1, "bee", 4, 5}  # default ids are line numbers
    first = records[1]
    assert list(first)[:4] == ["id", "index", "args", "status"]
    assert first["args"] == {"prompt": "a", "n": 2} and first["status"] == "ok" and first["error"] is None
    assert set(first) >= {"log_Z", "top", "n_steps", "wall_time", "stats"}
    assert [records[i]["index"] for i in (1, "bee", 4, 5)] == [0, 1, 2, 3]
    for r in records.values():
        assert 1 <= len(r["top"]) <= 5 and sum(t["weight"] for t in r["top"]) <= 1 + 1e-9
        banned = set(r["args"].get("banned", "e"))
        assert all(not banned & set(t["value"]) for t in r["top"])
        assert "scheduler" in r["stats"]
    # the same runs as ppl.map with seed 0 (the data-set default)
    from ppl.program_files import find_program

    _, _, program, module = find_program(f"{progs}:lipogram")
    args = [{k: v for k, v in i.items() if k != "id"} for i in INPUTS]
    direct = ppl.map(program, args, lm=module.make_lm(), n_particles=4, expand=2, seed=0, ids=[1, "bee", 4, 5])
    from ppl.runtime.many.output import record_of

    assert comparable(record_of(o) for o in direct) == comparable(records.values())


@pytest.mark.parametrize("k", [0, 1, 3])
def test_top(progs, tmp_path, k):
    inputs = write_lines(tmp_path / "in.jsonl", [{"n": 4}])
    out = tmp_path / "out.jsonl"
    assert main(["run", f"{progs}:lipogram", "--inputs", str(inputs), "--output", str(out), "--top", str(k),
                 *RUN]) == 0
    (record,) = read_records(out)
    assert len(record["top"]) == k
    weights = [t["weight"] for t in record["top"]]
    assert weights == sorted(weights, reverse=True)


def test_records_go_to_stdout_without_output(progs, tmp_path, capsys):
    inputs = write_lines(tmp_path / "in.jsonl", INPUTS)
    assert main(["run", f"{progs}:lipogram", "--inputs", str(inputs), *RUN]) == 0
    captured = capsys.readouterr()
    assert sorted(json.loads(line)["index"] for line in captured.out.splitlines()) == [0, 1, 2, 3]
    assert "results in stdout" in captured.err


def test_arg_fills_in_what_a_line_leaves_out(progs, tmp_path):
    inputs = write_lines(tmp_path / "in.jsonl", [{"n": 1}, {}])
    out = tmp_path / "out.jsonl"
    assert main(["run", f"{progs}:lipogram", "--inputs", str(inputs), "--output", str(out), "--arg", "n=2",
                 "--arg", "banned=ab", *RUN]) == 0
    assert [r["args"] for r in read_records(out)] == [{"n": 1, "banned": "ab"}, {"n": 2, "banned": "ab"}]


BAD_LINES = [
    ('{"n": 2', "not valid JSON: Expecting ',' delimiter (column 8)"),
    ("[1, 2]", "expected a JSON object of lipogram's arguments, got a list"),
    ('"text"', "expected a JSON object of lipogram's arguments, got a string"),
    ({"promt": "a"}, "unknown argument 'promt'; did you mean 'prompt'? (lipogram's parameters: prompt, n, banned)"),
    ({"n": "three"}, "argument 'n' must be an integer, got \"three\""),
    ({"n": 2.5}, "argument 'n' must be an integer, got 2.5"),
    ({"n": True}, "argument 'n' must be an integer, got true"),
    ({"prompt": 3}, "argument 'prompt' must be a string, got 3"),
    ({"banned": None}, "argument 'banned' must be a string, got null"),  # typed by its default
    ({"id": 1.5}, "\"id\" must be a string or an integer, got 1.5"),
    ({"id": [1]}, "\"id\" must be a string or an integer, got [1]"),
]


@pytest.mark.parametrize("line,message", BAD_LINES, ids=[m.split(" ")[0] + str(i) for i, (_, m) in enumerate(BAD_LINES)])
def test_a_bad_line_is_reported_at_its_line_and_nothing_runs(progs, tmp_path, capsys, line, message):
    inputs = write_lines(tmp_path / "in.jsonl", [{"n": 1}, line])
    out = tmp_path / "out.jsonl"
    assert main(["run", f"{progs}:lipogram", "--inputs", str(inputs), "--output", str(out), *RUN]) == 2
    err = capsys.readouterr().err
    assert f"{inputs}: 1 bad input line; nothing was run:\n{inputs}:2: {message}\n" in err + "\n", err
    assert not out.exists()


def test_every_bad_line_is_reported_up_to_twenty(progs, tmp_path, capsys):
    lines = [{"id": "x"}, {"id": "x"}, {"n": "one"}, {"word": "w"}] + [{"bad": i} for i in range(30)]
    inputs = write_lines(tmp_path / "in.jsonl", lines)
    assert main(["run", f"{progs}:lipogram", "--inputs", str(inputs), *RUN]) == 2
    err = capsys.readouterr().err
    assert f"{inputs}: 33 bad input lines; nothing was run" in err
    assert f"{inputs}:2: duplicate id \"x\" (first on line 1)" in err
    assert f"{inputs}:3: argument 'n' must be an integer" in err
    assert f"{inputs}:4: unknown argument 'word'" in err
    assert len(located(err, inputs)) == 20 and "... and 13 more" in err


def test_missing_and_typed_arguments_of_a_class_program(progs, tmp_path, capsys):
    lines = [{}, {"word": "w", "scale": 2}, {"word": "w", "scale": "big"}, {"word": "w", "tags": ["a"]},
             {"word": "w", "tags": "a"}, {"word": "w", "tags": None}]
    inputs = write_lines(tmp_path / "in.jsonl", lines)
    assert main(["run", f"{progs}:Picky", "--inputs", str(inputs), *RUN]) == 2
    err = capsys.readouterr().err
    assert f"{inputs}:1: missing argument 'word' (Picky has no default for it)" in err
    assert f"{inputs}:3: argument 'scale' must be a number, got \"big\"" in err
    assert f"{inputs}:5: argument 'tags' must be a list or null, got \"a\"" in err
    assert len(located(err, inputs)) == 3  # lines 2, 4 and 6 are fine


def test_steer_programs_are_checked_by_their_declared_types(progs, tmp_path, capsys):
    steer = tmp_path / "lipo.steer"
    steer.write_text(STEER)
    lines = [{"n": 1}, {"n": "two"}, {"banned": 1}, {"weights": {"a": 1}}, {"weights": [1, 2.5]}, {"nn": 1}]
    inputs = write_lines(tmp_path / "in.jsonl", lines)
    argv = ["run", str(steer), "--model", str(progs), "--inputs", str(inputs), *RUN]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{inputs}:2: argument 'n' must be an integer, got \"two\"" in err
    assert f"{inputs}:3: argument 'banned' must be a string, got 1" in err
    assert f"{inputs}:4: argument 'weights' must be a list, got {{\"a\": 1}}" in err
    assert f"{inputs}:6: unknown argument 'nn'; did you mean 'n'?" in err
    assert len(located(err, inputs)) == 4
    good = write_lines(tmp_path / "good.jsonl", [{"n": 1}, {"weights": [1, 2.5]}, {"banned": "ab"}])
    out = tmp_path / "out.jsonl"
    argv = ["run", str(steer), "--model", str(progs), "--inputs", str(good), "--output", str(out), *RUN]
    assert main(argv) == 0
    assert [r["status"] for r in read_records(out)] == ["ok"] * 3


def test_input_file_problems(progs, tmp_path, capsys):
    assert main(["run", str(progs) + ":lipogram", "--inputs", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl: no such file" in capsys.readouterr().err
    empty = write_lines(tmp_path / "empty.jsonl", ["", "  "])
    assert main(["run", str(progs) + ":lipogram", "--inputs", str(empty)]) == 2
    assert "no inputs" in capsys.readouterr().err


def test_exit_1_when_a_run_errors_or_dies(progs, tmp_path, capsys):
    inputs = write_lines(tmp_path / "in.jsonl", [{"word": "fine"}, {"word": "boom"}, {"word": "never"}])
    out = tmp_path / "out.jsonl"
    assert main(["run", f"{progs}:Picky", "--inputs", str(inputs), "--output", str(out), *RUN]) == 1
    err = capsys.readouterr().err
    assert f"ppl: 3 inputs: 1 ok, 1 died, 1 error; results in {out}" in err
    records = {r["id"]: r for r in read_records(out)}
    assert records[1]["status"] == "ok"
    assert records[2]["status"] == "error" and "boom goes the program" in records[2]["error"]
    assert records[2]["log_Z"] is None and records[2]["top"] == []
    assert records[3]["status"] == "all particles died" and records[3]["log_Z"] is None
    # a resumed run counts what is already there
    assert main(["run", f"{progs}:Picky", "--inputs", str(inputs), "--output", str(out), *RUN]) == 1
    assert "1 ok, 1 died, 1 error" in capsys.readouterr().err and len(read_records(out)) == 3


@pytest.mark.parametrize("argv,message", [
    (["--output", "o.jsonl"], "--output goes with --inputs FILE.jsonl"),
    (["--output", "o.jsonl", "--max-concurrent", "2"], "--output, --max-concurrent go with --inputs"),
    (["--top", "0"], "--top 0: the number of results to show is an integer >= 1"),
    (["--workers", "2"], "--workers goes with --inputs"),
    (["--inputs", "{in}", "--json", "r.json"], "--json writes one run's result"),
    (["--inputs", "{in}", "--threads-per-worker", "1"], "--threads-per-worker goes with --workers or --ray-address"),
    (["--inputs", "{in}", "--top", "-1"], "--top -1: the number of results"),
    (["--inputs", "{in}", "--output", "{in}"], "is the input file"),
    (["--inputs", "{in}", "--max-concurrent", "0"], "max_concurrent must be an integer >= 1"),
    (["--inputs", "{in}", "--particles", "0"], "n_particles must be an integer >= 1"),
    (["--inputs", "{in}", "--method", "smc", "--resampling", "bogus"], "valid names are"),
    (["--inputs", "{in}", "--method", "smc", "--ess-threshold", "2"], "ess_threshold must be a number in [0, 1]"),
    (["--inputs", "{in}", "--expand", "0"], "expand must be an integer >= 1"),
])
def test_flags(progs, tmp_path, capsys, argv, message):
    inputs = write_lines(tmp_path / "in.jsonl", [{"n": 1}])
    argv = [a.replace("{in}", str(inputs)) for a in argv]
    assert main(["run", f"{progs}:lipogram", "--quiet", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_kill_loses_nothing_and_a_rerun_resumes(progs, tmp_path):
    """SIGKILL mid-run, then the same command: every id once, and the
    records of an uninterrupted run."""
    lines = [{"prompt": "ab"[i % 2], "n": 1 + i % 4, **({"id": f"q{i}"} if i % 3 else {})} for i in range(24)]
    inputs = write_lines(tmp_path / "in.jsonl", lines)
    out, whole = tmp_path / "out.jsonl", tmp_path / "whole.jsonl"
    argv = ["run", f"{progs}:lipogram", "--inputs", str(inputs), "--max-concurrent", "2", *RUN]
    proc = subprocess.Popen([sys.executable, "-m", "ppl.cli", *argv, "--output", str(out)],
                            env={**os.environ, "TOY_DELAY": "0.04"}, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 4:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = out.read_text().count("\n")
    assert 4 <= before < 24
    assert main([*argv, "--output", str(out)]) == 0
    assert main([*argv, "--output", str(whole)]) == 0
    resumed = comparable(read_records(out))
    assert set(resumed) == {line.get("id", i + 1) for i, line in enumerate(lines)}
    assert resumed == comparable(read_records(whole))


def test_a_truncated_last_line_is_dropped_and_rerun(progs, tmp_path, capsys):
    inputs = write_lines(tmp_path / "in.jsonl", INPUTS)
    out, whole = tmp_path / "out.jsonl", tmp_path / "whole.jsonl"
    argv = ["run", f"{progs}:lipogram", "--inputs", str(inputs), *RUN]
    assert main([*argv, "--output", str(whole)]) == 0
    lines = whole.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2])  # a kill in the middle of a write
    capsys.readouterr()
    assert main([*argv, "--output", str(out)]) == 0
    assert "(2 from an earlier run)" in capsys.readouterr().err
    text = out.read_text()
    assert text.startswith(lines[0] + lines[1]) and text.endswith("\n")
    assert comparable(read_records(out)) == comparable(read_records(whole))


def test_a_finished_output_is_left_as_it_is(progs, tmp_path, capsys):
    inputs = write_lines(tmp_path / "in.jsonl", INPUTS)
    out = tmp_path / "out.jsonl"
    argv = ["run", f"{progs}:lipogram", "--inputs", str(inputs), "--output", str(out), *RUN]
    assert main(argv) == 0
    first = out.read_text()
    assert main(argv) == 0
    assert out.read_text() == first
    assert "(4 from an earlier run)" in capsys.readouterr().err


def test_an_output_that_is_not_records_is_not_appended_to(progs, tmp_path, capsys):
    inputs = write_lines(tmp_path / "in.jsonl", INPUTS)
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "status": "ok"}\nnot json\n{"id": 2, "status": "ok"}\n')
    assert main(["run", f"{progs}:lipogram", "--inputs", str(inputs), "--output", str(out), *RUN]) == 2
    assert f"{out}:2: not a JSON record" in capsys.readouterr().err
    assert out.read_text().count("\n") == 3


def _pty_run(argv, env=None):
    """Run ``argv`` with stderr on a pseudo-terminal (100 columns); return what it showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(argv, stderr=slave, stdout=subprocess.DEVNULL, env=env)
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, shown.decode("utf-8", "replace")


def test_progress_on_a_terminal_and_quiet_otherwise(progs, tmp_path):
    inputs = write_lines(tmp_path / "in.jsonl", [{"n": 1 + i % 3} for i in range(6)])
    argv = [sys.executable, "-m", "ppl.cli", "run", f"{progs}:lipogram", "--inputs", str(inputs),
            "--particles", "2", "--expand", "2"]
    env = {**os.environ, "TOY_DELAY": "0.01"}
    code, shown = _pty_run([*argv, "--output", str(tmp_path / "a.jsonl")], env)
    assert code == 0
    assert "lipogram: 100%" in shown and "6/6" in shown and "input/s" in shown and "0 errors" in shown
    code, shown = _pty_run([*argv, "--output", str(tmp_path / "b.jsonl"), "--quiet"], env)
    assert code == 0 and "%|" not in shown and "6 inputs: 6 ok" in shown
    piped = subprocess.run([*argv, "--output", str(tmp_path / "c.jsonl")], capture_output=True, text=True, env=env)
    assert piped.returncode == 0 and "%|" not in piped.stderr and "6 inputs: 6 ok" in piped.stderr


def test_the_model_factory_travels(progs, tmp_path, monkeypatch):
    """With --workers / --ray-address, ppl.map gets engine="ray" and a
    picklable zero-argument model factory (not a model)."""
    import ppl.cli_map

    seen = {}

    def fake_map(program, inputs, **kwargs):
        seen.update(kwargs, program=program, inputs=inputs)
        return iter(())

    monkeypatch.setattr(ppl.cli_map, "map_inputs", fake_map)
    inputs = write_lines(tmp_path / "in.jsonl", [{"n": 1}])
    argv = ["run", f"{progs}:lipogram", "--inputs", str(inputs), "--quiet", "--output", str(tmp_path / "o.jsonl")]
    main([*argv, "--workers", "3", "--threads-per-worker", "1", "--max-concurrent", "4", "--seed", "7"])
    assert seen["engine"] == "ray" and seen["num_workers"] == 3 and seen["threads_per_worker"] == 1
    assert "address" not in seen and seen["max_concurrent"] == 4 and seen["seed"] == 7
    assert seen["inputs"] == [{"n": 1}] and seen["ids"] == [1] and seen["program"].__name__ == "lipogram"
    lm = pickle.loads(pickle.dumps(seen["lm"]))()  # the file's own make_lm(), found again by path
    assert isinstance(lm, ppl.ToyLM)
    seen.clear()
    main([*argv, "--ray-address", "auto", "--model", "some/model", "--dtype", "float32"])
    assert seen["engine"] == "ray" and seen["address"] == "auto" and "num_workers" not in seen
    factory = pickle.loads(pickle.dumps(seen["lm"]))
    assert factory.args == ("some/model",) and factory.keywords == {"backend": "hf", "dtype": "float32"}


@pytest.mark.slow
def test_the_gallery_data_set_on_the_default_model(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    openings = root / "examples" / "data" / "openings.jsonl"
    out = tmp_path / "out.jsonl"
    argv = ["run", str(root / "examples" / "lipogram.py"), "--inputs", str(openings), "--output", str(out),
            "--particles", "2", "--expand", "2", "--max-concurrent", "12", "--quiet"]
    assert main(argv) == 0
    records = comparable(read_records(out))
    assert set(records) == {json.loads(line)["id"] for line in openings.read_text().splitlines()}
    for r in records.values():
        assert r["status"] == "ok" and r["top"]
        assert all(not set(t["value"]) & set("eE") for t in r["top"]), r


def test_a_model_that_cannot_be_built_exits_1_before_any_run(progs, tmp_path, capsys):
    bad = tmp_path / "badlm.py"
    bad.write_text("def make_lm():\n    raise RuntimeError('no model today')\n")
    inputs = write_lines(tmp_path / "in.jsonl", [{"n": 1}])
    out = tmp_path / "out.jsonl"
    argv = ["run", f"{progs}:lipogram", "--inputs", str(inputs), "--output", str(out), "--model", str(bad), *RUN]
    assert main(argv) == 1
    assert f"make_lm() of {bad} raised RuntimeError: no model today" in capsys.readouterr().err
    assert not out.exists()
