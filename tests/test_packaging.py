"""The distribution installs ``ppl``, ``ppl.runtime`` and the grammar files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_installed_package_finds_grammar_and_runtime():
    import ppl.grammar
    import ppl.runtime

    assert "json" in ppl.grammar.available()
    assert "?start: value" in ppl.grammar.read("json")
    with pytest.raises(FileNotFoundError, match="available"):
        ppl.grammar.read("no-such-grammar")
    assert ppl.runtime.smc_steer is not None


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
    for required in ("ppl/__init__.py", "ppl/runtime/inference/driver.py", "ppl/runtime/backends/toy.py",
                     "ppl/grammar/json.lark", "ppl/constraints/__init__.py"):
        assert required in names, f"{required} missing from the wheel"

    # Unpacked on its own (not the editable install), the wheel imports and
    # finds its grammar files.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "import ppl, ppl.runtime, ppl.grammar; "
        "assert ppl.__file__.startswith(%r), ppl.__file__; "
        "print(ppl.grammar.available())" % str(target)
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "json" in done.stdout
