#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" || exit 1
cd "$ROOT"
"$ROOT/.venv/bin/python" -m pytest -q "$@"
rc=$?
# pytest exits 5 when a selection collects no test: that is not a failure.
[ "$rc" = 5 ] && { echo "no tests selected"; exit 0; }
exit "$rc"
