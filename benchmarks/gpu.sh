#!/usr/bin/env bash
# Every benchmark on one NVIDIA GPU, one command under 8 minutes (the step limits below add up to 480 s) once both
# frameworks are installed; writes benchmarks/results-gpu.json (one JSON object, a key per step).
#
#   bash benchmarks/gpu.sh             # on a GPU machine (needs network access for the CUDA installs)
#   ONLY=suite,tfds_load bash benchmarks/gpu.sh   # only these steps
#   bash benchmarks/gpu.sh --dry-run   # the same steps on CPU at small sizes, no installs:
#                                      # -> benchmarks/gpu-dryrun/ and results-gpu-dryrun.json
#
# Steps (each bounded by `timeout`, a failed step is recorded and the next one runs):
#   suite          run.py: peak matmul, train steps of the small CNN and ResNet-18 in the library's
#                  GPU path (train.default_loop() = "scan": one jitted lax.scan per call), the
#                  evaluation suite, 8 vmapped seeds and 10 vmapped forget classes, vs PyTorch (cuda)
#   seeds_cnn      `jaxunlearn train --seeds 0-7` of the small CNN: --strategy vmap vs loop (wall time)
#   train_command  train_command.py: `jaxunlearn train --dataset fashion_mnist` vs the PyTorch script
#   eval_like      eval_like.py: L-BFGS probe vs scikit-learn, NCC + NC metrics vs NumPy,
#                  feature extraction vs forward throughput
#   knn_memory     knn_memory.py: k-NN peak memory at 10k / 60k / 200k training rows
#   tfds_load      tfds_load.py: TFDS split loading (host only; the same figure as on CPU)
#   study_quick    `jaxunlearn study --quick` (wall time)
# JAX: the project venv gets the CUDA build of the same JAX version ("jax[cuda12]"), so run it
# on a GPU machine's own checkout. PyTorch: benchmarks/.torch-venv is (re)made with a CUDA wheel
# from TORCH_INDEX unless it already sees a GPU. Overrides: PY, JAX_SPEC, TORCH_INDEX.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
PY="${PY:-$root/.venv/bin/python}"
tpy="$here/.torch-venv/bin/python"
dry=0
[[ "${1:-}" == "--dry-run" ]] && dry=1

scale=1  # the dry run's limits are scaled up: CPU, and shared with other jobs
if (( dry )); then
  scale="${DRY_SCALE:-8}"
  out_dir="$here/gpu-dryrun"; final="$here/results-gpu-dryrun.json"; dev=cpu
  suite_args=(--only peak_matmul,train_step/cnn --repeats 1)
  seeds="0-1"; seed_train=1000; tc_args=(--max-train 2000 --epochs 1 --repeats 1 --torch-configs t1 --warmup needed)
  small=(--quick); el_args=(--quick --repeats 1)
  echo "dry run on CPU: small sizes, no installs, nothing written to results-gpu.json"
else
  out_dir="$here/gpu-run"; final="$here/results-gpu.json"; dev=cuda
  suite_args=()
  seeds="0-7"; seed_train=10000; tc_args=(--max-train 54000 --epochs 1 --repeats 2 --torch-configs default --warmup needed)
  small=(); el_args=(--repeats 3)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  jax_version="$("$PY" -c 'import jax; print(jax.__version__)')"
  JAX_SPEC="${JAX_SPEC:-jax[cuda12]==$jax_version}"
  if ! "$PY" -c 'import jax, sys; sys.exit(0 if jax.default_backend() == "gpu" else 1)' 2>/dev/null; then
    "$PY" -m pip install -U "$JAX_SPEC"
  fi
  "$PY" -c 'import jax; assert jax.default_backend() == "gpu", jax.devices(); print("jax", jax.__version__, jax.devices())' || exit 1
  if ! "$tpy" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    rm -rf "$here/.torch-venv"
    TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}" bash "$here/setup_torch.sh"
  fi
  "$tpy" -c 'import torch; assert torch.cuda.is_available(); print("torch", torch.__version__, torch.cuda.get_device_name())' || exit 1
  # Each benchmark runs a JAX and a PyTorch process on the same GPU: allocate on demand.
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
fi
mkdir -p "$out_dir"
status="$out_dir/status.txt"; : > "$status"
t_all=$SECONDS

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, record rc and wall time
  local name=$1 limit=$(( $2 * scale )); shift 2
  if [[ -n "${ONLY:-}" && ",$ONLY," != *",$name,"* ]]; then echo "$name skipped (ONLY=$ONLY)" | tee -a "$status"; return; fi
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" > "$out_dir/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc wall_s=$((SECONDS - t0))" | tee -a "$status"
  tail -3 "$out_dir/$name.log"
}

timed_cmd() {  # timed_cmd JSON COMMAND...: wall time of one command -> {"wall_s", "rc", "command"}
  local json=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@"; local rc=$?
  "$PY" -c 'import json, sys, time; t0, rc, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
json.dump({"wall_s": time.time() - t0, "rc": rc, "command": " ".join(sys.argv[4:])}, open(out, "w"))' \
    "$t0" "$rc" "$json" "$@"
  return $rc
}
export -f timed_cmd
export PY

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
step suite 170 "$PY" "$here/run.py" --device "$dev" --out "$out_dir/suite.json" --no-readme "${suite_args[@]}"
step seeds_vmap 35 bash -c "timed_cmd '$out_dir/seeds_vmap.json' '$root/.venv/bin/jaxunlearn' train --dataset fashion_mnist \
  --max-train $seed_train --epochs 1 --seeds $seeds --strategy vmap --no-progress --workdir '$work/seeds-vmap'"
step seeds_loop 35 bash -c "timed_cmd '$out_dir/seeds_loop.json' '$root/.venv/bin/jaxunlearn' train --dataset fashion_mnist \
  --max-train $seed_train --epochs 1 --seeds $seeds --strategy loop --no-progress --workdir '$work/seeds-loop'"
step train_command 80 "$PY" "$here/train_command.py" "${tc_args[@]}" --torch-device "$dev" --out "$out_dir/train_command.json"
step eval_like 40 "$PY" "$here/eval_like.py" "${el_args[@]}" --out "$out_dir/eval_like.json"
step knn_memory 40 "$PY" "$here/knn_memory.py" "${small[@]}" --out "$out_dir/knn_memory.json"
step tfds_load 20 "$PY" "$here/tfds_load.py" --quick --repeats 1 --out "$out_dir/tfds_load.json"
if (( dry )) && [[ "${DRY_STUDY:-0}" != 1 ]]; then
  echo "study_quick skipped in the dry run (minutes on CPU; DRY_STUDY=1 runs it)" | tee -a "$status"
else
  step study_quick 60 bash -c "timed_cmd '$out_dir/study_quick.json' '$root/.venv/bin/jaxunlearn' study --quick \
    --no-progress --workdir '$work/study'"
fi

"$PY" - "$out_dir" "$final" "$((SECONDS - t_all))" "$dry" <<'EOF'
import json, pathlib, sys, datetime
out_dir, final, wall, dry = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
       "dry_run_on_cpu": dry, "total_wall_s": wall,
       "status": (out_dir / "status.txt").read_text().splitlines()}
for f in sorted(out_dir.glob("*.json")):
    try:
        res[f.stem] = json.loads(f.read_text())
    except ValueError as e:
        res[f.stem] = {"error": str(e)}
final.write_text(json.dumps(res, indent=1) + "\n")
print(f"wrote {final} ({wall} s in all)")
EOF
