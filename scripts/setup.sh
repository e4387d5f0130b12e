#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Python 3.12 virtual environment in .venv,
# this package (editable, with test extras), and Debian's Fashion-MNIST package.
# Sourced by scripts/study.sh and scripts/test.sh; safe to run again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

find_python312() {
  if command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    command -v python3.12; return
  fi
  # pyenv installs 3.12 without putting it on the default shim path.
  for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if [ -x "$p" ]; then echo "$p"; return; fi
  done
  echo "setup: Python 3.12 not found (tried python3.12 on PATH and pyenv versions); install it and re-run." >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import jaxunlearn, pytest' >/dev/null 2>&1 \
   || [ "$ROOT/pyproject.toml" -nt "$VENV/.installed" ]; then
  PY="$(find_python312)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]" 2>&1 > "$VENV/pip.log" 2>&1 || { tail -20 "$VENV/pip.log" >&2; echo "setup: pip install failed" >&2; exit 1; }
  "$VENV/bin/python" -c 'import jaxunlearn, jax, flax, optax, orbax.checkpoint, sklearn, pytest' \
    || { echo "setup: installing the package failed (see pip output above)." >&2; exit 1; }
  touch "$VENV/.installed"
fi

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  ( $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } ) \
    || echo "setup: could not install Debian's dataset-fashion-mnist; Fashion-MNIST runs need --data-dir." >&2
fi
