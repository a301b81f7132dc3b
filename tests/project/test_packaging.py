"""The distribution installs ``ppl``, ``ppl.runtime`` (from ``runtime/``) and
the grammar files (``ppl.grammars``, from ``grammar/``): every source module
of the tree is in the wheel, and the unpacked wheel imports and runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_installed_package_finds_grammar_and_runtime():
    import ppl.grammars
    import ppl.runtime

    assert "json" in ppl.grammars.available()
    assert "?start: value" in ppl.grammars.read("json")
    with pytest.raises(FileNotFoundError, match="available"):
        ppl.grammars.read("no-such-grammar")
    assert ppl.runtime.smc_steer is not None


def _installed_name(path: Path) -> str:
    """Where a source file lands in the wheel (``runtime/`` -> ``ppl/runtime/``,
    ``grammar/`` -> ``ppl/grammars/``)."""
    rel = path.relative_to(ROOT).as_posix()
    for src, dst in (("runtime/", "ppl/runtime/"), ("grammar/", "ppl/grammars/")):
        if rel.startswith(src):
            return dst + rel[len(src):]
    return rel


def test_wheel_contains_runtime_and_grammar(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("ppl", "runtime", "grammar"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = out.glob("ppl_steer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = [p for folder in ("ppl", "runtime", "grammar") for p in (ROOT / folder).rglob("*")
               if p.suffix in (".py", ".lark") and "__pycache__" not in p.parts]
    missing = sorted(_installed_name(p) for p in sources if _installed_name(p) not in names)
    assert not missing, f"missing from the wheel (add the package to pyproject.toml): {missing}"

    # Unpacked on its own (not the editable install), the wheel imports and
    # finds its grammar files.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    script = tmp_path / "use_the_wheel.py"
    script.write_text(
        "import ppl, ppl.runtime.backends.hf\n"
        f"assert ppl.__file__.startswith({str(target)!r}), ppl.__file__\n"
        "lm = ppl.ToyLM(['a', '<eos>'], lambda prefix: [0.5, 0.5])\n"
        "source = 'program p(n: int = 3):\\n    ctx = lm(\"\")\\n    repeat n:\\n'\n"
        "source += '        tok ~ ctx.next_token()\\n        if tok == EOS: finish\\n    return ctx.text\\n'\n"
        "result = ppl.infer(ppl.compile(source)(lm), n_particles=4, expand=2, seed=0)\n"
        "print(ppl.grammars.available(), result.status)\n",
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "json" in done.stdout and "steer" in done.stdout and done.stdout.strip().endswith("ok")
