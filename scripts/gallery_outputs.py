"""Run every gallery program and save its command-line output for the docs.

    .venv/bin/python scripts/gallery_outputs.py            # every gallery program
    .venv/bin/python scripts/gallery_outputs.py lipogram.py haiku.py

Each gallery program (the files named on the ``**Files:**`` line of a page
in ``docs/gallery/``; the other files of ``examples/`` are listed, not run)
is run on the default model, with ``OMP_NUM_THREADS=1`` and ``--quiet``, one
program at a time, with the settings its header documents: the first seeded
``ppl run examples/FILE ... --seed S`` line of its docstring or ``#``
comment (all its flags, ``--chat`` and ``--system "..."`` included), or ``--particles 8 --expand 3 --seed 0`` where it documents none.
What the command prints is written, after a short header (the command, the
thread count, the versions, the wall time, the exit status), to
``docs/gallery/outputs/FILE.txt`` (``lipogram.py.txt``,
``lipogram.steer.txt``), which the gallery pages include.

A program that fails (non-zero exit, or over ``--timeout`` seconds) still
gets its file, with its error output, and is listed at the end; the script
then exits 1. Run from the repository root with the project's environment.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PAGES = ROOT / "docs" / "gallery"
OUTPUTS = PAGES / "outputs"
FILES_LINE = re.compile(r"^\*\*Files:\*\*(.*)$", re.MULTILINE)
PROGRAM_NAME = re.compile(r"`(\w+\.(?:py|steer))`")
DEFAULT_SETTINGS = ["--particles", "8", "--expand", "3", "--seed", "0"]
RUN_LINE = re.compile(r"ppl run (?P<file>examples/\S+)(?P<args>[^\n]*)")
CONTINUATION = re.compile(r"\\\n[ \t]*")  # a backslash at the end of a line, and the next line's indent
THREADS = "1"


def gallery_files() -> list[str]:
    """The program files the gallery pages show: the names on each page's ``**Files:**`` line."""
    names = []
    for page in sorted(PAGES.glob("*.md")):
        files = FILES_LINE.search(page.read_text(encoding="utf-8"))
        if files:
            names += PROGRAM_NAME.findall(files[1])
    return names


def programs(names: list[str]) -> list[Path]:
    """The gallery programs, in name order (only ``names`` when given)."""
    found = sorted(EXAMPLES / name for name in gallery_files())
    missing = [p.name for p in found if not p.is_file()]
    if missing:
        raise SystemExit(f"gallery_outputs: the gallery pages name {', '.join(missing)}, not in examples/")
    if not names:
        return found
    unknown = sorted(set(names) - {p.name for p in found})
    if unknown:
        raise SystemExit(f"gallery_outputs: no gallery program {', '.join(unknown)} "
                         f"(have: {', '.join(p.name for p in found)})")
    return [p for p in found if p.name in names]


def not_in_gallery() -> list[str]:
    """Programs in examples/ that no gallery page shows (reported, not run)."""
    shown = set(gallery_files())
    return sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".steer") and p.name not in shown)


def header_text(path: Path) -> str:
    """The part of a program that documents how to run it: a module docstring or the leading comments."""
    source = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return ast.get_docstring(ast.parse(source)) or ""
    lines = []
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#"))
    return "\n".join(lines)


def documented_settings(path: Path) -> list[str]:
    """The arguments after the first ``ppl run examples/FILE ... --seed S`` line of the program's
    header, or the gallery's default settings where the header documents no seeded run (an unseeded
    run gives another output each time, which a page cannot show). Every flag of that line is kept,
    ``--chat`` and a quoted ``--system "..."`` included; a line ending in a backslash continues on
    the next one (its comment mark, for a ``.steer`` file, already stripped)."""
    header = CONTINUATION.sub(" ", header_text(path))
    for m in RUN_LINE.finditer(header):
        args = shlex.split(m["args"])
        if m["file"] == f"examples/{path.name}" and "--seed" in args:
            return args
    return list(DEFAULT_SETTINGS)


def versions() -> str:
    """The versions that decide the numbers: Python, ppl, torch, transformers."""
    parts = [f"Python {platform.python_version()}"]
    for package in ("ppl-steer", "torch", "transformers"):
        try:
            parts.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{package} (not installed)")
    return ", ".join(parts)


def ppl_command() -> list[str]:
    """The ``ppl`` of the environment running this script."""
    script = Path(sys.executable).parent / "ppl"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from ppl.cli import main; sys.exit(main())"]


def run_one(path: Path, timeout: float) -> tuple[int | None, str]:
    """Run one program; its exit status (None on timeout) and the text to save."""
    settings = documented_settings(path)
    shown = ["ppl", "run", f"examples/{path.name}", *settings]
    env = {**os.environ, "OMP_NUM_THREADS": THREADS, "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    try:
        proc = subprocess.run([*ppl_command(), "run", f"examples/{path.name}", *settings, "--quiet"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        status, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        status, out, err = None, _text(exc.stdout), _text(exc.stderr) + f"\n(stopped after {timeout:.0f} s)"
    took = time.monotonic() - start
    lines = [
        f"$ OMP_NUM_THREADS={THREADS} {shlex.join(shown)} --quiet",
        (f"# {versions()}; {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs;"
         f" took {took:.1f} s in all, model loading included; exit status {status}"),
        "",
        out.rstrip(),
    ]
    if status != 0 and err.strip():
        lines += ["", "# stderr:", err.rstrip()]
    text = "\n".join(lines).rstrip() + "\n"
    return status, text.replace(str(ROOT) + os.sep, "")  # paths as seen from the repository root


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="program file names in examples/ (default: all)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per program (900)")
    args = parser.parse_args(argv)
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in programs(args.names):
        print(f"gallery_outputs: {path.name} ...", file=sys.stderr, flush=True)
        status, text = run_one(path, args.timeout)
        (OUTPUTS / f"{path.name}.txt").write_text(text, encoding="utf-8")
        if status != 0:
            failed.append(f"{path.name} (exit status {status})")
        print(f"gallery_outputs: {path.name}: exit status {status}", file=sys.stderr, flush=True)
    others = not_in_gallery()
    if others and not args.names:
        print(f"gallery_outputs: not in the gallery, not run: {', '.join(others)}", file=sys.stderr)
    if failed:
        print(f"gallery_outputs: FAILED: {', '.join(failed)} (their files hold the error output)", file=sys.stderr)
        return 1
    print(f"gallery_outputs: all programs ran; outputs in {OUTPUTS.relative_to(ROOT)}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
