#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Python 3.12 virtual environment in .venv,
# this package (editable, with test extras) at the versions of constraints.txt (the ones the
# tests passed with), and Debian's Fashion-MNIST package.
# Run by scripts/study.sh and scripts/test.sh; safe to run again.
#
#   bash scripts/setup.sh             # set up (re-installs when pyproject.toml or constraints.txt changed)
#   bash scripts/setup.sh --upgrade   # the newest versions pyproject.toml allows (constraints ignored)
#   bash scripts/setup.sh --freeze    # write the venv's versions to constraints.txt (after the tests pass)
#
# JAXUNLEARN_EXTRAS=gpu (or tpu) adds that extra: jax[cuda12] / jax[tpu] at the constrained
# jax version (scripts/gpu-check.sh uses it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
CONSTRAINTS="$ROOT/constraints.txt"
EXTRAS="test${JAXUNLEARN_EXTRAS:+,$JAXUNLEARN_EXTRAS}"
MODE="${1:-install}"
case "$MODE" in
  install|--upgrade|--freeze) ;;
  *) echo "setup: unknown option $MODE; use --upgrade or --freeze (or nothing)" >&2; exit 2 ;;
esac

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

if [ "$MODE" = --freeze ]; then
  [ -x "$VENV/bin/python" ] || { echo "setup: no $VENV to freeze; run bash scripts/setup.sh first" >&2; exit 1; }
  tmp="$(mktemp "$CONSTRAINTS.XXXXXX")"
  sed -n '/^#/p' "$CONSTRAINTS" 2>/dev/null > "$tmp" || true
  "$VENV/bin/python" -m pip freeze --exclude-editable >> "$tmp"
  chmod 644 "$tmp" && mv "$tmp" "$CONSTRAINTS"
  echo "setup: wrote $(grep -vc '^#' "$CONSTRAINTS") pinned versions to $CONSTRAINTS"
  jv="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("jax"))')"
  grep -q "\"jax\[cuda12\]==$jv\"" "$ROOT/pyproject.toml" && grep -q "\"jax\[tpu\]==$jv\"" "$ROOT/pyproject.toml" \
    || echo "setup: jax is $jv now: set the gpu and tpu extras in pyproject.toml to jax[cuda12]==$jv / jax[tpu]==$jv" >&2
  exit 0
fi

pip_install() {  # pip_install ARGS...: quiet, log in .venv/pip.log, its tail on failure
  "$VENV/bin/python" -m pip install -q "$@" > "$VENV/pip.log" 2>&1 \
    || { tail -20 "$VENV/pip.log" >&2; echo "setup: pip install $* failed" >&2; exit 1; }
}

stamp="extras=$EXTRAS constraints=$(sha1sum "$CONSTRAINTS" 2>/dev/null | cut -c1-12)"
if [ "$MODE" = --upgrade ] || [ ! -x "$VENV/bin/python" ] \
   || ! "$VENV/bin/python" -c 'import jaxunlearn, pytest' >/dev/null 2>&1 \
   || [ "$ROOT/pyproject.toml" -nt "$VENV/.installed" ] \
   || [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$stamp" ]; then
  PY="$(find_python312)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if [ "$MODE" = --upgrade ]; then
    pip_install --upgrade --upgrade-strategy eager -e "$ROOT[$EXTRAS]"
    echo "setup: upgraded to the newest allowed versions; run bash scripts/test.sh, then" \
         "bash scripts/setup.sh --freeze to record them in constraints.txt" >&2
  elif [ -f "$CONSTRAINTS" ]; then
    pip_install -c "$CONSTRAINTS" -e "$ROOT[$EXTRAS]"
  else
    pip_install -e "$ROOT[$EXTRAS]"
  fi
  "$VENV/bin/python" -c 'import jaxunlearn, jax, flax, optax, orbax.checkpoint, sklearn, pytest' \
    || { echo "setup: installing the package failed (see pip output above)." >&2; exit 1; }
  if [ "$MODE" = --upgrade ]; then
    echo "upgraded" > "$VENV/.installed"  # not the constrained set: the next plain run re-pins
  else
    echo "$stamp" > "$VENV/.installed"
  fi
fi

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  ( $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } ) \
    || echo "setup: could not install Debian's dataset-fashion-mnist; Fashion-MNIST runs need --data-dir." >&2
fi
