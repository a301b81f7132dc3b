"""The backend registry and the LanguageModel protocol's optional capabilities."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from ppl.runtime.backends import (
    ToyLM,
    available_backends,
    backend_summary,
    get_backend,
    load_lm,
    registry,
)
from ppl.runtime.lm import LanguageModel


def test_available_backends_lists_the_shipped_ones():
    names = available_backends()
    assert {"hf", "toy"} <= set(names) and names == sorted(names)
    assert "default" in backend_summary("hf")


def test_unknown_backend_lists_the_registered_names():
    with pytest.raises(ValueError, match=r"unknown backend 'vllm-nope'; registered backends: .*hf.*toy"):
        load_lm(backend="vllm-nope")
    with pytest.raises(ValueError, match="unknown backend"):
        backend_summary("vllm-nope")


def test_toy_backend_through_the_registry():
    lm = load_lm(backend="toy", vocab=["a", "b", "<eos>"])
    assert isinstance(lm, ToyLM) and lm.vocab == ["a", "b", "<eos>"]
    (lp,) = lm.batch_next_token_logprobs([(0,)])
    assert lp.shape == (3,)
    with pytest.raises(ValueError, match="takes no model name or path"):
        load_lm("gpt2", backend="toy")


def test_hf_backend_is_registered_where_it_is_defined():
    from ppl.runtime.backends.hf import loading

    assert get_backend("hf") is loading.load_lm


def test_register_backend_decorator(monkeypatch):
    monkeypatch.setattr(registry, "_LOADERS", dict(registry._LOADERS))
    monkeypatch.setattr(registry, "_SUMMARIES", dict(registry._SUMMARIES))

    @registry.register_backend("echo")
    def load_echo(name_or_path=None, **options):
        """Echo: returns its arguments."""
        return name_or_path, options

    assert "echo" in available_backends() and backend_summary("echo") == "Echo: returns its arguments."
    assert load_lm("x", backend="echo", k=1) == ("x", {"k": 1})

    def other(name_or_path=None):
        return None

    with pytest.raises(ValueError, match="already registered"):
        registry.register_backend("echo")(other)


def test_importing_ppl_and_the_registry_does_not_import_torch():
    code = (
        "import sys, ppl, ppl.runtime.backends as b; b.available_backends(); b.backend_summary('hf'); "
        "import ppl.runtime.backends.hf; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


class Minimal(LanguageModel):
    vocab = ["x", "<eos>"]
    vocab_bytes = [b"x", b""]
    eos_token_id = 1

    def batch_next_token_logprobs(self, prefixes):
        raise NotImplementedError

    def encode(self, text):
        return [0] * len(text)

    def decode(self, token_ids):
        return "x" * sum(1 for t in token_ids if t == 0)


def test_optional_capabilities_have_defaults():
    lm = Minimal()
    assert lm.name == "Minimal" and lm.special_ids == frozenset()
    assert lm.tokenizer is None and lm.load_info is None
    assert lm.pin((0, 0)) is None and lm.prompt_ids("xx") == [0, 0] and lm.stats() == {}
    lm.name = "mine"
    assert lm.name == "mine"


def test_toy_lm_satisfies_the_protocol():
    lm = ToyLM(["a", "<eos>"], lambda p: [0.5, 0.5])
    assert isinstance(lm, LanguageModel)
    assert lm.name == "ToyLM" and lm.special_ids == frozenset() and lm.pin((0,)) is None


def test_cached_transformer_satisfies_the_protocol():
    try:
        from tests.tiny_models import tiny_cached
    except ImportError:
        from support.tiny_models import tiny_cached

    lm = tiny_cached("gpt2")
    assert isinstance(lm, LanguageModel)
    assert lm.name == "tiny-gpt2" and lm.eos_token_id in lm.special_ids and lm.tokenizer is not None
    pin = lm.pin((1, 2))
    assert pin is not None and not pin.attached


def test_vllm_backend_without_vllm_says_how_to_install_it():
    import importlib.util

    from ppl.errors import BackendNotInstalledError, ModelLoadError

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here; tests/vllm_backend covers the backend")
    assert "vllm" in available_backends()
    with pytest.raises(BackendNotInstalledError, match="bootstrap-vllm.sh") as info:
        load_lm("some/folder", backend="vllm")
    assert isinstance(info.value, ModelLoadError) and "\n" not in str(info.value)
