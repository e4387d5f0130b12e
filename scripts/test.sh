#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
# The suite runs in 2 worker processes (pytest-xdist, one test file per worker at a time, so a
# file's fixtures stay in one process); JAXUNLEARN_TEST_WORKERS=N changes that, 0 runs serially.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" || exit 1
cd "$ROOT"
WORKERS="${JAXUNLEARN_TEST_WORKERS:-2}"
PARALLEL=()
if [ "$WORKERS" != 0 ] && "$ROOT/.venv/bin/python" -c 'import xdist' >/dev/null 2>&1; then
  PARALLEL=(-n "$WORKERS" --dist loadfile)
fi
"$ROOT/.venv/bin/python" -m pytest -q "${PARALLEL[@]}" "$@"
rc=$?
# pytest exits 5 when a selection collects no test: that is not a failure.
[ "$rc" = 5 ] && { echo "no tests selected"; exit 0; }
exit "$rc"
