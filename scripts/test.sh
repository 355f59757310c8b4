#!/usr/bin/env bash
# The test command of the README: set up, then run the whole suite (tiny configs, < 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
# The HTTP server tests start a real PostgreSQL server and drive the chat page in headless Chromium:
# both come from Debian's packages (no browser download).
if ! command -v chromium >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q postgresql chromium
fi
bash scripts/setup.sh
python3 -m pytest -q -p no:cacheprovider "$@"
