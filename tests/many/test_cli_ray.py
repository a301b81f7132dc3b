"""``ppl run PROGRAM --inputs FILE --workers 2``: Ray workers from the command
line write the same records as a local run.

The command starts its own local Ray cluster (Ray is not initialised when
this module runs; ``test_map_ray`` starts and stops its own) and shuts it
down after the run; the program and its ``make_lm()`` come from a file.
"""

from __future__ import annotations

import json
import textwrap

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine needs the optional extra: pip install 'ppl-steer[ray]'")

from ppl.cli import main  # noqa: E402

PROGRAM = textwrap.dedent('''
    import ppl

    def make_lm():
        return ppl.ToyLM(["a", "b", "e", "<eos>"],
                         lambda p: [0.3, 0.3, 0.2, 0.2] if len(p) < 4 else [0, 0, 0, 1])

    @ppl.program
    async def lipogram(lm, prompt: str = "", n: int = 3, banned="e"):
        ctx = lm.context(prompt)
        for _ in range(n):
            tok = await ppl.sample(ctx.next_token().where(ppl.lacks(banned)))
            if tok.is_eos:
                break
        return ctx.text
''')


@pytest.fixture(autouse=True)
def no_ray_yet():
    if ray.is_initialized():
        ray.shutdown()


def _records(path) -> dict:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len({r["id"] for r in lines}) == len(lines), "an id twice"
    return {r["id"]: {k: v for k, v in r.items() if k not in ("wall_time", "stats")} for r in lines}


def test_workers_2_writes_the_records_of_a_local_run(tmp_path):
    program = tmp_path / "lipo.py"
    program.write_text(PROGRAM)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"id": f"q{i}", "prompt": p, "banned": b}) + "\n"
                              for i, (p, b) in enumerate((p, b) for p in ("", "a", "b") for b in ("e", "ae"))))
    flags = ["--inputs", str(inputs), "--particles", "4", "--expand", "2", "--seed", "3", "--quiet"]
    assert main(["run", str(program), *flags, "--output", str(tmp_path / "local.jsonl")]) == 0
    assert not ray.is_initialized()
    assert main(["run", str(program), *flags, "--output", str(tmp_path / "ray.jsonl"), "--workers", "2",
                 "--threads-per-worker", "1", "--max-concurrent", "2"]) == 0
    assert not ray.is_initialized()  # the cluster the command started is gone
    local, mapped = _records(tmp_path / "local.jsonl"), _records(tmp_path / "ray.jsonl")
    assert sorted(mapped) == sorted(local) == [f"q{i}" for i in range(6)]
    assert mapped == local
