#!/usr/bin/env bash
# Install the project and its dependencies. torch is installed first as the CPU build, so the
# package's torch range is already met and pip never pulls a CUDA build on a CPU machine.
# On a GPU machine, install the torch build you want first (and `pip install -e '.[gpu]'`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e '.[dev]'
