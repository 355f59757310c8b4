#!/usr/bin/env bash
# Run here, in the project's root, before a GPU check on the lent GPU machine (../shared/gpu/README.md): the
# wheels the GPU image lacks into .whl/ (git-ignored), then one device command carrying .whl:
#   bash scripts/gpu_prepare.sh
#   (device) source .whl/device-setup.sh && bash scripts/gpu_check.sh
# On top of ../shared/gpu/prepare-wheels.sh: sniffio, which that script assumes the image has and it lacks
# (langchain_core's runnables import it; without it the controller step failed there on 2026-11-27).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ../shared/gpu/prepare-wheels.sh
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d .whl sniffio
ls .whl | grep -q '^sniffio-' || { echo "error: no sniffio wheel in .whl" >&2; exit 1; }
du -sh .whl
