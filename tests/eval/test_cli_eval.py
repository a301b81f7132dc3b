"""``ppl eval`` through its parser (the lead registers it in ``ppl.cli``)."""

from __future__ import annotations

import argparse
import json

import pytest

from ppl.cli_eval import add_eval_parser, cmd_eval
from ppl.errors import UsageError

PROGRAM = '''
import ppl
from support.toy_programs import toy_lm


def make_lm():
    return toy_lm()


class Lip(ppl.Model):
    def __init__(self, lm, banned: str = "c", n: int = 3):
        super().__init__()
        self.ctx, self.mask, self.n = lm.context(""), ppl.lacks(banned), n

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(self.mask))
        if tok.is_eos or len(self.ctx) == self.n:
            self.finish()

    def result_key(self):
        return self.ctx.text
'''

METRIC = '''
def length(input, result):
    post = result.posterior()
    return {"length": sum(w * len(x) for x, w in post.items()), "empty": float("" in post)}
'''


def parse(argv):
    parser = argparse.ArgumentParser(prog="ppl")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["eval", *argv])


@pytest.fixture
def files(tmp_path):
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "metric.py").write_text(METRIC)
    (tmp_path / "in.jsonl").write_text('{"id": "c"}\n{"id": "b", "banned": "b"}\n')
    return tmp_path


def argv(files, *extra):
    return [str(files / "prog.py"), "--inputs", str(files / "in.jsonl"), "--metric",
            f"{files / 'metric.py'}:length", "--output", str(files / "out"), "--quiet", *extra]


def test_eval_writes_the_table_and_resumes(files, capsys):
    args = argv(files, "--methods", "lcd,steer", "--particles", "1,3", "--expand", "2", "--seeds", "2",
                "--arg", "n=2")
    assert cmd_eval(parse(args)) == 0
    out, err = capsys.readouterr()
    assert out.startswith("| method | N | length (95% CI) | empty (95% CI) |") and out.count("\n| lcd |") == 2
    assert "ppl: 16 runs, 0 died or raised" in err and "report.html" in err
    lines = (files / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 2 * 2
    assert {json.loads(line)["args"]["n"] for line in lines} == {2}
    csv = (files / "out" / "summary.csv").read_text()
    assert cmd_eval(parse(args)) == 0
    assert "from an earlier run" in capsys.readouterr().err
    assert (files / "out" / "results.jsonl").read_text().count("\n") == len(lines)
    assert (files / "out" / "summary.csv").read_text() == csv


def test_bad_usage(files):
    with pytest.raises(UsageError, match="unknown method 'nope'"):
        cmd_eval(parse(argv(files, "--methods", "is,nope")))
    with pytest.raises(UsageError, match="integers >= 1"):
        cmd_eval(parse(argv(files, "--particles", "4,0")))
    with pytest.raises(UsageError, match="integers separated by commas"):
        cmd_eval(parse(argv(files, "--particles", "four")))
    with pytest.raises(UsageError, match="resampling"):
        cmd_eval(parse(argv(files, "--methods", "smc", "--resampling", "bogus")))
    with pytest.raises(UsageError, match="MODULE:FUNCTION"):
        cmd_eval(parse([*argv(files)[:4], "nonsense", *argv(files)[5:]]))
    (files / "bad.jsonl").write_text('{"banned": 3}\n')
    with pytest.raises(UsageError, match="bad.jsonl:1"):
        cmd_eval(parse([argv(files)[0], "--inputs", str(files / "bad.jsonl"), *argv(files)[3:]]))
    assert not (files / "out").exists()


def test_a_run_that_dies_exits_1(files, capsys):
    (files / "in.jsonl").write_text('{"banned": "abc"}\n')  # only EOS left... allowed: the empty text
    assert cmd_eval(parse(argv(files, "--methods", "is", "--particles", "2", "--arg", "n=1"))) == 0
    (files / "die.py").write_text(PROGRAM + "\n\nclass Dies(Lip):\n    async def step(self):\n"
                                  "        self.condition(False)\n")
    args = argv(files, "--methods", "is", "--particles", "2")
    args[0] = f"{files / 'die.py'}:Dies"
    args[args.index("--output") + 1] = str(files / "out2")
    assert cmd_eval(parse(args)) == 1
    assert "| is | 2 |" in capsys.readouterr().out
