#!/usr/bin/env bash
# Set up (if needed) and run the main study. Extra arguments go to `jaxunlearn study`
# (e.g. --quick, --workdir DIR).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" || exit 1
cd "$ROOT"
exec "$ROOT/.venv/bin/jaxunlearn" study "$@"
