#!/usr/bin/env bash
# The test command of the README: set up, then run the whole suite (tiny configs, < 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m pytest -q -p no:cacheprovider "$@"
