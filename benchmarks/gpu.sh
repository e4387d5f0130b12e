#!/usr/bin/env bash
# Runs the benchmark suite on one NVIDIA GPU and writes benchmarks/results-gpu.json
# (a few minutes once both frameworks are installed). Needs network access for the installs.
#
#   bash benchmarks/gpu.sh
#
# JAX: the project venv gets the CUDA build of the same JAX version ("jax[cuda12]"), so run it
# on a GPU machine's own checkout, not on a CPU-only one. PyTorch: benchmarks/.torch-venv is
# (re)made with a CUDA wheel from TORCH_INDEX unless it already sees a GPU.
# Overrides: PY (project python), JAX_SPEC, TORCH_INDEX, TORCH_VERSION.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
PY="${PY:-$root/.venv/bin/python}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

jax_version="$("$PY" -c 'import jax; print(jax.__version__)')"
JAX_SPEC="${JAX_SPEC:-jax[cuda12]==$jax_version}"
if ! "$PY" -c 'import jax, sys; sys.exit(0 if jax.default_backend() == "gpu" else 1)' 2>/dev/null; then
  "$PY" -m pip install -U "$JAX_SPEC"
fi
"$PY" -c 'import jax; assert jax.default_backend() == "gpu", jax.devices(); print("jax", jax.__version__, jax.devices())'

tpy="$here/.torch-venv/bin/python"
if ! "$tpy" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  rm -rf "$here/.torch-venv"
  TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}" bash "$here/setup_torch.sh"
fi
"$tpy" -c 'import torch; assert torch.cuda.is_available(); print("torch", torch.__version__, torch.cuda.get_device_name())'

# Allocate GPU memory on demand: each benchmark runs a JAX and a PyTorch process on the same GPU.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# One GPU, float32 everywhere (JAX matmuls at Precision.HIGHEST, PyTorch TF32 off in peak_matmul).
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
"$PY" "$here/run.py" --device cuda --out "$here/results-gpu.json" --no-readme
"$PY" "$here/render.py"
