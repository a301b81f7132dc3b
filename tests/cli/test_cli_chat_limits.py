"""``ppl run --chat/--system`` and the default step limit."""

from __future__ import annotations

import json
import textwrap

import pytest

from ppl.cli import DEFAULT_MAX_STEPS, main

PROGRAMS = textwrap.dedent('''
    import ppl
    from ppl.runtime.backends.toy import simple_chat_template

    VOCAB = ["a", "b", "<", ">", "<eos>"]

    def make_lm():
        return ppl.ToyLM(VOCAB, lambda p: [0.2] * 5,
                         chat_template=simple_chat_template(turn="<{content}>", generation="<>"))

    @ppl.program
    async def prompt_of(lm, prompt: str = "ab"):
        ctx = lm.context(prompt)
        await ppl.sample(ctx.next_token())
        return ctx.prompt

    class Endless(ppl.Model):
        """Never finishes: only the step limit stops it."""
        def __init__(self, lm):
            super().__init__()
            self.ctx = lm.context("a")

        async def step(self):
            await self.sample(self.ctx.next_token().where(ppl.not_eos()))
''')


@pytest.fixture
def program_file(tmp_path):
    path = tmp_path / "chatty.py"
    path.write_text(PROGRAMS)
    return path


def _values(path):
    return {p["value"] for p in json.loads(path.read_text())["particles"]}


def test_chat_puts_the_prompt_under_the_template(program_file, tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main(["run", f"{program_file}:prompt_of", "--particles", "2", "--seed", "0", "--quiet",
                 "--json", str(out)]) == 0
    assert _values(out) == {"ab"}
    assert main(["run", f"{program_file}:prompt_of", "--particles", "2", "--seed", "0", "--quiet",
                 "--chat", "--system", "ab", "--json", str(out)]) == 0
    assert _values(out) == {"<ab><ab><>"}  # the system message, the user's, the generation prompt


def test_chat_on_a_model_without_a_template_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "plain.py"
    path.write_text(PROGRAMS.replace("chat_template=simple_chat_template(", "eos=VOCAB[-1], **dict(")
                    .replace('turn="<{content}>", generation="<>"', ""))
    assert main(["run", f"{path}:prompt_of", "--particles", "2", "--quiet", "--chat"]) == 2
    assert "--chat" in capsys.readouterr().err


def test_a_program_that_never_finishes_stops_at_the_step_limit(program_file, tmp_path, capsys):
    out = tmp_path / "out.json"
    code = main(["run", f"{program_file}:Endless", "--particles", "2", "--expand", "1", "--seed", "0",
                 "--quiet", "--max-steps", "7", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "stopped at max_steps=7: 2 of 2 particles unfinished" in text
    data = json.loads(out.read_text())
    assert data["status"] == "max_steps" and data["n_steps"] == 7
    assert DEFAULT_MAX_STEPS == 4096
