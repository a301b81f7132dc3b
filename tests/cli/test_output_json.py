"""``ppl run --json``: the ``run`` section (what was run, with what, where),
particles' values as posterior keys, deaths, and the history on request."""

from __future__ import annotations

import json
import textwrap

import pytest

from ppl.cli import main

PROGRAMS = textwrap.dedent('''
    import ppl

    def make_lm():
        return ppl.ToyLM(["a", "b", "<eos>"], lambda p: [0.4, 0.4, 0.2] if len(p) < 3 else [0, 0, 1])

    @ppl.program
    async def counted(lm, n: int = 3, tag="x"):
        ctx = lm.context("")
        for _ in range(n):
            tok = await ppl.sample(ctx.next_token())
            if tok.is_eos:
                break
        return (tag, ctx.text.count("a"))
''')


@pytest.fixture
def result(tmp_path):
    path = tmp_path / "progs.py"
    path.write_text(PROGRAMS)

    def run(*extra):
        out = tmp_path / "r.json"
        code = main(["run", f"{path}:counted", "--arg", "n=2", "--arg", "tag=t", "--particles", "4",
                     "--expand", "2", "--seed", "5", "--quiet", "--json", str(out), *extra])
        assert code == 0
        return path, json.loads(out.read_text())

    return run


def test_run_section_names_program_arguments_model_method_and_versions(result):
    path, data = result()
    run = data["run"]
    assert run["program"] == {"path": str(path), "name": "counted"}
    assert run["arguments"] == {"n": 2, "tag": "t"}
    assert run["model"]["name"] == "ToyLM" and run["model"]["class"] == "ToyLM"
    assert run["method"]["name"] == "smc_steer"
    assert run["method"]["settings"].items() >= {"n_particles": 4, "expand": 2}.items()
    assert run["seed"] == 5
    assert set(run) >= {"threads", "device", "dtype", "versions", "command"}
    assert run["versions"]["ppl"] and set(run["versions"]) >= {"torch", "transformers", "python"}


def test_particle_values_are_posterior_keys(result):
    _, data = result()
    values = [p["value"] for p in data["particles"]]
    assert all(isinstance(v, list) and v[0] == "t" and isinstance(v[1], int) for v in values), values
    assert all(p["text"] == str(("t", p["value"][1])) for p in data["particles"])
    assert data["deaths"]["n_dead"] == 0 and not data["deaths"]["all_died"]
    assert data["history"] is None


def test_history_on_request(result):
    _, data = result("--history")
    assert data["history"] and data["history"][0]["step"] == 1
    assert {"text", "added", "parent", "death"} <= set(data["history"][0]["particles"][0])


def test_a_fresh_seed_is_recorded(result, tmp_path):
    path = tmp_path / "progs.py"
    out = tmp_path / "s.json"
    assert main(["run", f"{path}:counted", "--particles", "2", "--quiet", "--json", str(out)]) == 0
    seed = json.loads(out.read_text())["run"]["seed"]
    assert isinstance(seed, int)
    again = tmp_path / "t.json"
    assert main(["run", f"{path}:counted", "--particles", "2", "--quiet", "--seed", str(seed),
                 "--json", str(again)]) == 0
    assert json.loads(again.read_text())["particles"] == json.loads(out.read_text())["particles"]
