"""``lm.chat(messages, system=None, add_generation_prompt=True)``: contexts
whose prompt is the model's chat template applied to the messages."""

from __future__ import annotations

import pytest

import ppl
from ppl.errors import ArgumentError
from ppl.runtime.backends.toy import simple_chat_template

VOCAB = ["<system>", "<user>", "<assistant>", "</>", "hi", "be", "nice", " ", "a", "b", "<eos>"]


def chat_lm(**kwargs) -> ppl.ToyLM:
    uniform = [1.0 / len(VOCAB)] * len(VOCAB)
    return ppl.ToyLM(VOCAB, lambda prefix: uniform, chat_template=simple_chat_template("<{role}>{content}</>"),
                     **kwargs)


def test_a_string_is_one_user_message():
    ctx = chat_lm().chat("hi")
    assert ctx.prompt == "<user>hi</><assistant>"
    assert ctx.prefix_ids == tuple(ctx.lm.encode("<user>hi</><assistant>"))
    assert ctx.text == "" and len(ctx) == 0


def test_system_and_messages():
    lm = chat_lm()
    ctx = lm.chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": "b"}], system="be nice")
    assert ctx.prompt == "<system>be nice</><user>hi</><assistant>a</><user>b</><assistant>"
    assert lm.chat("hi", add_generation_prompt=False).prompt == "<user>hi</>"


def test_chat_contexts_run_in_programs():
    @ppl.program
    async def reply(lm):
        ctx = lm.chat("hi", system="be nice")
        for _ in range(2):
            await ppl.sample(ctx.next_token().where(ppl.token_predicate(lambda t: t in ("a", "b"))))
        return ctx.text

    r = ppl.infer(reply(chat_lm()), n_particles=4, seed=0)
    assert r.status == "ok"
    assert set(r.posterior()) <= {"aa", "ab", "ba", "bb"}


def test_chat_accepts_context_options():
    ctx = chat_lm().chat("hi", constraint=ppl.regex("ab"))
    assert ctx.constraints and not ctx.accepting


def test_a_model_without_a_template_names_itself():
    lm = ppl.ToyLM(VOCAB, lambda prefix: [1.0 / len(VOCAB)] * len(VOCAB))
    with pytest.raises(ArgumentError, match=r"ToyLM has no chat template.*lm.context\(prompt\)"):
        lm.chat("hi")


@pytest.mark.parametrize("bad,match", [
    (42, "must be a string or a list"),
    ([{"role": "robot", "content": "hi"}], r"chat message #1 must be a dict with 'role'"),
    ([{"role": "user"}], r"chat message #1 .*'content'"),
    ([], "chat messages are empty"),
])
def test_bad_messages(bad, match):
    with pytest.raises(ArgumentError, match=match):
        chat_lm().chat(bad)


def test_two_system_messages_are_refused():
    with pytest.raises(ArgumentError, match="system= was given and the messages have a system message"):
        chat_lm().chat([{"role": "system", "content": "a"}, {"role": "user", "content": "hi"}], system="b")


@pytest.mark.slow
def test_default_model_uses_its_chat_template():
    lm = ppl.load_lm()
    ctx = lm.chat("Name a physicist.", system="Answer in one word.")
    assert ctx.prompt.startswith("<|im_start|>system\nAnswer in one word.<|im_end|>\n"
                                 "<|im_start|>user\nName a physicist.<|im_end|>\n")
    assert ctx.prompt.endswith("<|im_start|>assistant\n")
    expected = lm.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Name a physicist."}],
        tokenize=True, add_generation_prompt=True)
    expected = expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
    assert list(ctx.prefix_ids) == list(expected)
    assert lm.tokenizer.convert_ids_to_tokens(ctx.prefix_ids[0]) == "<|im_start|>"


def test_use_chat_makes_plain_prompts_chat_prompts():
    lm = chat_lm()
    lm.use_chat(system="be nice")
    assert lm.context("hi").prompt == "<system>be nice</><user>hi</><assistant>"
    assert lm.context("").prompt == ""  # an empty prompt stays empty
    assert lm.context("hi", prompt_ids=lm.encode("hi")).prompt == "hi"  # explicit ids are kept
    lm.use_chat(False)
    assert lm.context("hi").prompt == "hi"


def test_use_chat_needs_a_template():
    lm = ppl.ToyLM(VOCAB, lambda prefix: [1.0 / len(VOCAB)] * len(VOCAB))
    with pytest.raises(ArgumentError, match="ToyLM has no chat template"):
        lm.use_chat()
    assert lm.chat_defaults is None
