#!/usr/bin/env bash
# The main job on a fresh machine: set up the Python environment (no network services, no root
# needed), then run the built-in lab's "Russia 2025" scenario offline and print the verdict.
# Extra arguments go to `callpath lab`, e.g. `bash scripts/lab.sh --scenario udp-blocked`.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
# Only the command line: no Debian packages, no desktop app (Qt), no test tools.
CALLPATH_SETUP_PACKAGES=0 CALLPATH_SETUP_MODE=lab bash scripts/setup.sh >&2
if [ "$#" -eq 0 ]; then
    set -- --scenario russia-2025
fi
exec "$repo_root/.venv/bin/callpath" lab "$@"
