"""Devices and dtypes of the hf backend: the one place for their defaults.

The rule, used by the loader (:func:`~ppl.runtime.backends.hf.load_lm`) and
by :class:`~ppl.runtime.backends.hf.CachedTransformer` alike:

- device: CUDA when ``torch.cuda.is_available()``, else the CPU;
- dtype on CUDA: bfloat16 where the GPU computes it natively (compute
  capability 8.0 and up: Ampere, Ada, Hopper ...), else float16 (pre-Ampere
  GPUs such as the T4 or V100 only emulate bfloat16, slowly);
- dtype anywhere else (CPU, MPS): float32;
- CPU threads (:func:`default_threads`): ``OMP_NUM_THREADS`` when it is set,
  else half the logical CPUs, at least 1 and at most 8. torch's own default
  (every core) collapses as soon as anything else runs on the machine: on a
  2-core machine with other load, the lipogram took 34.7 s and 74 s with 2
  threads against 5.6 s with 1, and one 5-token forward pass 2.4-3.7 s
  against 0.17 s. Half the logical CPUs leaves the hyperthreads and the
  rest of the machine alone; beyond 8 the small matrix products of
  135M-1B models stop scaling.

torch is imported inside the functions, so that importing this module (and
the backend registry) does not load it.
"""

from __future__ import annotations

import os
from typing import Any

from ppl.errors import ArgumentError

__all__ = ["default_device", "default_dtype", "default_threads", "dtype_name", "parse_device", "parse_dtype",
           "set_threads"]

_DTYPE_ALIASES = {
    "float32": "float32", "fp32": "float32", "f32": "float32", "float": "float32",
    "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}
_VALID_DTYPES = "float32 (fp32), float16 (fp16, half), bfloat16 (bf16), or None/'auto'"


def default_threads() -> int:
    """The CPU thread count ppl uses when none is given (see the module docstring)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return max(1, min(8, (os.cpu_count() or 1) // 2))


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads to ``threads`` (default: :func:`default_threads`);
    returns the number set. One setting per process: it applies to every model."""
    n = default_threads() if threads is None else threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ArgumentError(f"threads must be an integer >= 1, got {threads!r}")
    import torch

    torch.set_num_threads(n)
    return n


def default_device():
    """CUDA when ``torch.cuda.is_available()``, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _bf16_native() -> bool:
    """Whether the current CUDA device computes bfloat16 natively (not emulated)."""
    import torch

    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before the including_emulation keyword: native only
        return bool(torch.cuda.is_bf16_supported())


def default_dtype(device: Any = None):
    """The default dtype on ``device`` (a ``torch.device`` or anything
    :func:`parse_device` reads): bfloat16 on CUDA GPUs that compute it
    natively, float16 on older CUDA GPUs, float32 elsewhere."""
    import torch

    dev = device if isinstance(device, torch.device) else parse_device(device)
    if dev.type == "cuda":
        return torch.bfloat16 if _bf16_native() else torch.float16
    return torch.float32


def parse_dtype(dtype: Any, device: Any = None):
    """A ``torch.dtype`` from ``dtype``; ``None`` or ``"auto"`` is
    :func:`default_dtype` of ``device``. Strings: float32/fp32/f32/float,
    float16/fp16/f16/half, bfloat16/bf16, optionally prefixed with ``torch.``."""
    import torch

    if dtype is None or (isinstance(dtype, str) and dtype.strip().lower() == "auto"):
        return default_dtype(parse_device(device))
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.float16, torch.bfloat16):
            return dtype
        raise ArgumentError(f"unsupported dtype {dtype} for a language model; valid values: {_VALID_DTYPES}")
    if isinstance(dtype, str):
        key = dtype.strip().lower()
        if key.startswith("torch."):
            key = key[len("torch."):]
        if key in _DTYPE_ALIASES:
            return getattr(torch, _DTYPE_ALIASES[key])
    raise ArgumentError(f"unknown dtype {dtype!r}; valid values: {_VALID_DTYPES}")


def parse_device(device: Any = None):
    """A ``torch.device`` from ``device``; ``None`` or ``"auto"`` is
    :func:`default_device`. Raises ``ValueError`` for a device that does not
    exist here."""
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return default_device()
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, (str, int)):
        try:
            dev = torch.device(device.strip() if isinstance(device, str) else device)
        except (RuntimeError, ValueError) as e:
            raise ArgumentError(
                f"unknown device {device!r}; valid values: 'cpu', 'cuda', 'cuda:N', 'mps', or None/'auto'"
            ) from e
    else:
        raise ArgumentError(f"device must be a string or torch.device, not {type(device).__name__}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(
            f"device {str(dev)!r} was requested but CUDA is not available here "
            "(torch.cuda.is_available() is False); use device='cpu' or leave it unset"
        )
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ArgumentError(f"device {str(dev)!r} was requested but MPS is not available here")
    return dev


def dtype_name(dtype) -> str:
    """``"float32"`` for ``torch.float32``."""
    return str(dtype).replace("torch.", "")
