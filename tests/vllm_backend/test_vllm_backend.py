"""The vLLM backend against plain forward passes, the exact answers, and the gallery.

Runs in the vLLM environment (``bash scripts/bootstrap-vllm.sh`` makes
``.venv-vllm``; ``.ci/run`` runs this folder there as its own stage); skipped
where vLLM is not installed. The engines are tiny random Llamas saved as
folders (head size 64, which vLLM's CPU attention supports) and, for the
gallery programs, the default model through the HF backend's safetensors
cache. The reference is a plain transformers forward pass of each whole
prefix (no cache, batch of one): the HF backend's CachedTransformer is itself
tested against that reference, and it cannot run here, because vLLM pins a
transformers older than the one it needs for batches.

Tolerance: 1e-4 absolute on float32 log-probabilities (two float32 forward
passes that sum in different orders; measured differences are below 1e-5).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

vllm = pytest.importorskip("vllm")
torch = pytest.importorskip("torch")

import ppl  # noqa: E402
from ppl.errors import ArgumentError, ModelLoadError, TokenIdError  # noqa: E402
from support.stats import check_mean, check_posterior  # noqa: E402
from support.tiny_models import tiny_tokenizer  # noqa: E402
from support.toy_programs import VOCAB, Latent, Scored, TwistedLipogram  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-4


def _save_llama(folder: Path, vocab_size: int, tokenizer=None, seed: int = 0, sharpen: float = 1.0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
        eos_token_id=3 if tokenizer is None else tokenizer.eos_token_id,
        bos_token_id=3 if tokenizer is None else tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # far from uniform, so that differences show
        model.lm_head.weight.copy_(torch.randn(model.lm_head.weight.shape) * 0.2 * sharpen)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return _save_llama(tmp_path_factory.mktemp("tiny-llama"), 320, tiny_tokenizer())


@pytest.fixture(scope="module")
def tiny_vllm(tiny_folder):
    return ppl.load_lm(str(tiny_folder), backend="vllm", enforce_eager=True, max_model_len=256,
                       max_logprobs=-1, block_size=32)


@pytest.fixture(scope="module")
def plain(tiny_folder):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float32).eval()

    def logprobs(prefix, width=300):
        with torch.no_grad():
            logits = model(torch.tensor([list(prefix)])).logits[0, -1, :width]
        return torch.log_softmax(logits.float(), -1).numpy()

    return logprobs


def _prefix_sets(n_sets: int, seed: int = 0):
    """Random batches of prefixes: shared stems with branches, mixed lengths, repeats."""
    rng = np.random.default_rng(seed)
    for _ in range(n_sets):
        stem = [1] + rng.integers(4, 300, size=int(rng.integers(0, 40))).tolist()
        batch = []
        for _ in range(int(rng.integers(1, 9))):
            cut = int(rng.integers(1, len(stem) + 1))
            batch.append(tuple(stem[:cut] + rng.integers(4, 300, size=int(rng.integers(0, 6))).tolist()))
        if rng.random() < 0.3:
            batch.append(batch[0])
        yield batch


def test_logprobs_match_a_plain_forward(tiny_vllm, plain):
    assert tiny_vllm.capture == "logits" and len(tiny_vllm.vocab) == 300
    worst = 0.0
    for batch in _prefix_sets(50):
        rows = tiny_vllm.batch_next_token_logprobs(batch)
        for prefix, row in zip(batch, rows):
            assert row.dtype == np.float32 and row.shape == (300,)
            worst = max(worst, float(np.abs(row - plain(prefix)).max()))
    assert worst < TOL, worst
    assert tiny_vllm.stats()["engine_calls"] == 50


def test_logprob_output_mode_gives_the_same_rows(tiny_vllm, plain):
    from ppl.runtime.backends.vllm.engine_lm import VLLMLanguageModel

    by_dicts = VLLMLanguageModel(tiny_vllm.llm, tiny_vllm.tokenizer, name="tiny", capture="logprobs")
    batch = next(_prefix_sets(1, seed=3))
    for prefix, a, b in zip(batch, by_dicts.batch_next_token_logprobs(batch),
                            tiny_vllm.batch_next_token_logprobs(batch)):
        assert np.abs(a - b).max() < TOL and np.abs(a - plain(prefix)).max() < TOL


def test_vocabulary_is_the_hf_backends(tiny_vllm):
    from ppl.runtime.backends.hf.vocab import vocab_tables

    texts, raw, eos, special = vocab_tables(tiny_vllm.tokenizer)
    assert tiny_vllm.vocab == texts and tiny_vllm.vocab_bytes == raw
    assert tiny_vllm.eos_token_id == eos and tiny_vllm.special_ids == special
    ids = tiny_vllm.prompt_ids("the quick brown fox")
    assert tiny_vllm.decode(ids) == "the quick brown fox"


def test_clear_errors(tiny_vllm, tmp_path):
    with pytest.raises(ArgumentError, match=r"300 tokens does not fit .*max_model_len of 256"):
        tiny_vllm.batch_next_token_logprobs([(1,) * 300])
    with pytest.raises(TokenIdError, match=r"token id 999 at position 1"):
        tiny_vllm.batch_next_token_logprobs([(1, 999)])
    with pytest.raises(ArgumentError, match="empty prefix"):
        tiny_vllm.batch_next_token_logprobs([()])
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        ppl.load_lm(str(tmp_path), backend="vllm", enforce_eager=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        ppl.load_lm(str(tmp_path / "empty"), backend="vllm")


# ----------------------------------------------------------- exact answers
@pytest.fixture(scope="module")
def four_token_vllm(tmp_path_factory):
    """A four-token model (``a b c <eos>``) served by vLLM, without a tokenizer."""
    folder = _save_llama(tmp_path_factory.mktemp("four-token"), 4, seed=7, sharpen=0.5)
    return ppl.load_lm(str(folder), backend="vllm", enforce_eager=True, max_model_len=64, block_size=32,
                       kv_cache_memory_bytes=64 << 20, vocab=VOCAB, vocab_bytes=[b"a", b"b", b"c", b""],
                       eos_token_id=3)


class _Plain:
    """The exact model: softmax of the engine's own rows, one prefix at a time."""

    vocab, eos_token_id = VOCAB, 3

    def __init__(self, lm):
        self.lm = lm

    def next_probs(self, prefix):
        return np.exp(self.lm.batch_next_token_logprobs([tuple(prefix)])[0].astype(np.float64))

    def decode(self, ids):
        return "".join(VOCAB[t] for t in ids if t != 3)


@pytest.mark.parametrize("program", [TwistedLipogram, Scored, Latent], ids=lambda p: p.__name__)
def test_exact_answers_through_vllm(four_token_vllm, program):
    lm = four_token_vllm
    assert lm.prompt_ids("") == [3]
    Z, post = program.exact(_Plain(lm), prompt_ids=(3,))
    runs = []
    for m in range(40):
        r = ppl.infer(program(lm), method="steer", n_particles=6, expand=3, seed=30_000 + m)
        runs.append((math.exp(r.log_Z), r.posterior(key=lambda p: p.key())))
    check_mean([z for z, _ in runs], Z)
    check_posterior(runs, post, 6)


# ----------------------------------------------------------- the gallery, unchanged
@pytest.fixture(scope="module")
def default_vllm():
    return ppl.load_lm(backend="vllm", enforce_eager=True, max_model_len=1024, block_size=32)


def _example(name: str):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


@pytest.mark.slow
def test_lipogram_runs_unchanged(default_vllm):
    lipogram = _example("lipogram")
    r = ppl.infer(lipogram.Lipogram(default_vllm, n=8), method="steer", n_particles=4, expand=2, seed=0)
    texts = [p.ctx.text for p in r.particles]
    assert texts and all("e" not in t.lower() for t in texts), texts
    assert np.isfinite(r.log_Z)


@pytest.mark.slow
def test_json_schema_runs_unchanged(default_vllm):
    example = _example("json_schema")
    r = ppl.infer(example.JSONRecord(default_vllm), method="steer", n_particles=4, expand=2, seed=0)
    finished = [p for p in r.particles if np.isfinite(p.log_weight)]
    assert finished and all(example.validates(p.ctx.text) for p in finished), [p.ctx.text for p in finished]
