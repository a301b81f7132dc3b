"""What ``ppl run`` prints and writes for one run: the result table, the
legend, the all-died explanation, and the ``run`` section of ``--json``.

The table shows each distinct result (the posterior key: a program's return
value, a class model's text) with ``P``, its normalised weight
``W = sum of w_i / sum_j w_j`` over the particles that gave it. Texts are
shown whole, wrapped and indented, with their own line breaks; at most
``top`` rows, and rows with ``P < min_p`` are folded into one "and N more"
line (so no row reads ``0.0000``). ``log Z`` is the log of the unbiased
estimate ``Z^ = (1/N) sum_i w_i`` of the normalising constant: it is ``<= 0``
for programs whose weights are probabilities and may be positive with
``factor``/``twist``.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import shutil
import sys
import textwrap
from typing import Any

from .runtime.deaths import DeathSummary
from .runtime.observers import particle_text

DEFAULT_SHOW = 10
DEFAULT_MIN_P = 0.001
INDENT = 8

LEGEND = ("P = normalised weight of a result; log Z = log of the estimated normalising constant "
          "(it can be positive for factor programs); ESS = effective sample size")


def _width() -> int:
    return max(40, min(100, shutil.get_terminal_size((100, 24)).columns))


def _text_of(key) -> str:
    if isinstance(key, str):
        return key if key.strip() else f"{key!r} (empty)" if not key else f"{key!r} (blank)"
    return repr(key)


def wrap(text: str, width: int, indent: int = INDENT) -> list[str]:
    """``text`` wrapped to ``width`` columns, every line after the first
    indented by ``indent``; the text's own line breaks are kept."""
    out = []
    for line in text.split("\n"):
        pieces = textwrap.wrap(line, max(20, width - indent), replace_whitespace=False,
                               drop_whitespace=True, break_on_hyphens=False) or [""]
        out.extend(pieces)
    return [out[0]] + [" " * indent + piece for piece in out[1:]]


def result_rows(posterior: dict, top: int, min_p: float, width: int) -> list[str]:
    """The table of results: at most ``top`` rows with ``P >= min_p``, then
    one line for the rest."""
    items = list(posterior.items())
    shown = [(k, p) for k, p in items[:top] if p >= min_p] or items[:1]
    rendered = [wrap(_text_of(k), width) for k, _ in shown]
    spaced = any(len(r) > 1 for r in rendered)
    lines = [f"{'P':>6}  result"]
    for (_, p), rows in zip(shown, rendered):
        lines.append(f"{p:6.4f}  {rows[0]}")
        lines.extend(rows[1:])
        if spaced:
            lines.append("")
    rest = items[len(shown):]
    if rest:
        mass = sum(p for _, p in rest)
        why = f"P < {min_p:g} or beyond --top {top}" if len(shown) == top else f"each with P < {min_p:g}"
        lines.append(f"{'':6}  ... and {len(rest)} more result{'s' * (len(rest) != 1)} ({why}; "
                     f"together P = {mass:.4g})")
    return lines[:-1] if lines[-1] == "" else lines


def _n_candidates(result) -> int:
    expand = result.settings.get("expand")
    return result.n_particles * expand if result.method == "smc_steer" and expand else result.n_particles


def _selection_line(result) -> str | None:
    n, m = result.n_particles, _n_candidates(result)
    if result.method == "smc_steer":
        return (f"selection: each step kept N = {n} of up to N*K = {m} candidates, without "
                "replacement (unfinished particles are expanded K times)")
    if result.resampled_at:
        threshold = result.settings.get("ess_threshold")
        when = f" (when ESS < {threshold:g}*N)" if isinstance(threshold, (int, float)) else ""
        return f"resampled after {len(result.resampled_at)} of {result.n_steps} steps{when}"
    return None


def _ess_line(result, verbose: bool) -> str:
    m = _n_candidates(result)
    of = f"of the N*K = {m} candidates" if result.method == "smc_steer" else f"of the N = {m} particles"
    if not result.ess:
        return f"ESS {of}: no steps"
    if verbose:
        return f"ESS per step ({of}, before selection): " + " ".join(f"{e:.1f}" for e in result.ess)
    return (f"ESS ({of}, before selection): last {result.ess[-1]:.1f}, "
            f"lowest {min(result.ess):.1f} at step {result.ess.index(min(result.ess)) + 1}")


def _counter_lines(result) -> list[str]:
    lines = []
    for source, counters in result.stats.items():
        shown = {k: v for k, v in counters.items() if not isinstance(v, (list, dict))}
        text = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
        lines.append(f"{source}: {text}")
    return lines


def format_result(result, title: str, *, top: int = DEFAULT_SHOW, min_p: float = DEFAULT_MIN_P,
                  verbose: bool = False, deaths: DeathSummary | None = None, width: int | None = None) -> str:
    """The text ``ppl run`` prints for ``result`` (see the module docstring)."""
    width = width or _width()
    lines = [title, ""]
    post = result.posterior()
    if post:
        lines += result_rows(post, top, min_p, width)
    else:
        lines.append("no result: every particle died")
        for line in (deaths.lines() if deaths is not None else []):
            lines.extend("  " + piece for piece in wrap(line, width - 2, 4))
    lines.append("")
    log_z = "-inf" if result.log_Z == -math.inf else f"{result.log_Z:.4f}"
    lines.append(f"log Z = {log_z}   steps: {result.n_steps}   wall time: {result.wall_time:.2f} s"
                 f"   status: {result.status}")
    if result.status != "ok" and hasattr(result, "describe_status"):
        lines.append(result.describe_status())
    lines.append(_ess_line(result, verbose))
    selection = _selection_line(result)
    if selection:
        lines.append(selection)
    if verbose:
        lines += _counter_lines(result)
    lines.append(LEGEND)
    return "\n".join(lines)


# -- the JSON file -------------------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def jsonable(value) -> Any:
    """``value`` as JSON data: numbers, strings, lists and dicts as they are
    (non-finite floats as None), anything else as its ``repr``."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return repr(value)


def run_section(*, path, name: str, arguments: dict, lm, backend: str, method: str,
                options: dict, threads: int | None) -> dict:
    """What was run, with what and where: enough to run it again (the same
    machine, thread count and versions give the same result for a seed)."""
    import ppl

    info = getattr(lm, "load_info", None) or {}
    device = info.get("device", getattr(lm, "device", None))
    dtype = info.get("dtype", getattr(lm, "dtype", None))
    return {
        "program": {"path": str(path), "name": name},
        "arguments": jsonable(arguments),
        "model": None if lm is None else {"name": getattr(lm, "name", type(lm).__name__),
                                          "class": type(lm).__name__, "path": info.get("source"),
                                          "backend": backend if info else None},
        "method": {"name": method, "settings": jsonable({k: v for k, v in options.items() if k != "seed"})},
        "seed": options.get("seed"),
        "threads": threads,
        "device": None if device is None else str(device),
        "dtype": None if dtype is None else str(dtype).replace("torch.", ""),
        "versions": {"ppl": getattr(ppl, "__version__", None) or _version("ppl-steer"),
                     "torch": _version("torch"), "transformers": _version("transformers"),
                     "python": platform.python_version()},
        "command": sys.argv[1:],
    }


def result_json(result, run: dict, deaths: DeathSummary | None) -> str:
    """The result as JSON with the ``run`` section; ``particles[].value`` is
    the posterior key (``result_key()``), ``particles[].text`` what the page
    shows; ``deaths`` says what killed particles; ``history`` is there when
    recorded (``--history`` or ``--html``)."""
    data = result.to_dict()
    for record, particle in zip(data["particles"], result.particles):
        key = getattr(particle, "result_key", None)
        record["value"] = jsonable(key() if callable(key) else str(particle))
        record["text"] = particle_text(particle)
        death = getattr(particle, "death", None) if getattr(particle, "dead", False) else None
        if death is not None:
            record["death"] = {"step": death.step, "kind": death.kind, "detail": death.detail}
    data = {"run": run, **data}
    if deaths is not None:
        data["deaths"] = deaths.to_dict()
    return json.dumps(data, indent=2, default=str)
