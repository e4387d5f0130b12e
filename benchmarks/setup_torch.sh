#!/usr/bin/env bash
# Creates the PyTorch side of the benchmarks: benchmarks/.torch-venv (git-ignored).
#
#   bash benchmarks/setup_torch.sh            # CPU torch (the wheel may come from a local find-links dir)
#   TORCH_INDEX=https://download.pytorch.org/whl/cu126 bash benchmarks/setup_torch.sh   # CUDA torch
#
# PYTHON picks the interpreter (default python3.11, else python3); TORCH_VERSION the torch version.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.torch-venv"
if [[ -z "${PYTHON:-}" ]]; then
  if command -v python3.11 >/dev/null; then PYTHON=python3.11; else PYTHON=python3; fi
fi
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
if [[ ! -x "$venv/bin/python" ]]; then
  "$PYTHON" -m venv "$venv"
fi
if [[ -n "${TORCH_INDEX:-}" ]]; then
  "$venv/bin/pip" install --index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"
  "$venv/bin/pip" install numpy scikit-learn
else
  "$venv/bin/pip" install "torch==$TORCH_VERSION" numpy scikit-learn
fi
"$venv/bin/python" -c "import torch, numpy, sklearn; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'threads', torch.get_num_threads())"
