#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, install the gpu extra (JAX's CUDA 12 build at
# the tested version) into .venv, run the test suite on the GPU backend, `jaxunlearn study
# --quick` and benchmarks/gpu.sh, and write every figure to one JSON file.
#
#   bash scripts/gpu-check.sh                  # on the GPU machine (the install needs network access)
#   bash scripts/gpu-check.sh --dry-run        # on CPU, quickly: no install, a small test subset,
#                                              # study and benchmarks skipped (DRY_STUDY=1 / DRY_BENCH=1 run
#                                              # them: the study with one seed and forget set, gpu.sh --dry-run)
#   bash scripts/gpu-check.sh --no-install     # the venv already has the CUDA build (an offline GPU machine)
#   STEPS=tests,benchmarks bash scripts/gpu-check.sh   # only those steps (of install,tests,study_quick,benchmarks;
#                                              # TESTS="tests/test_api.py -x" narrows the suite)
#
# Output: runs/gpu-check/gpu-check.json (GPU_CHECK_DIR=dir moves the folder, OUT=path the JSON), with
#   {"date", "commit", "dry_run", "host", "nvidia_smi", "jax": {version, backend, devices},
#    "steps": {install, tests, study_quick, benchmarks: {rc, wall_s, limit_s, log, ...figures}},
#    "status": [one line per step]}
# Each step runs under `timeout` (limits below, seconds; override with TESTS_LIMIT, STUDY_LIMIT,
# BENCH_LIMIT); a failed step is recorded and the next one runs. The tests run with
# JAX_PLATFORMS=cuda (conftest defaults to CPU): tests that need the 4 virtual CPU devices fail
# there by design and are listed by name. Logs: runs/gpu-check/<step>.log.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
dry=0 install=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1; install=0 ;;
    --no-install) install=0 ;;
    *) echo "gpu-check: unknown option $arg; use --dry-run or --no-install" >&2; exit 2 ;;
  esac
done
logs="${GPU_CHECK_DIR:-$ROOT/runs/gpu-check}"; mkdir -p "$logs"
OUT="${OUT:-$logs/gpu-check.json}"
STEPS="${STEPS:-install,tests,study_quick,benchmarks}"
want() { [[ ",$STEPS," == *",$1,"* ]]; }
status="$logs/status.txt"; : > "$status"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
t_all=$SECONDS

if (( dry )); then
  platform=cpu
  tests=(tests/test_api.py -k "lazy or public_name or callable or refuses or progress or bar_labels")
  TESTS_LIMIT="${TESTS_LIMIT:-300}"; STUDY_LIMIT="${STUDY_LIMIT:-900}"; BENCH_LIMIT="${BENCH_LIMIT:-1800}"
  study_args=(--quick --seeds 1 --forget-sets 3)
  echo "gpu-check dry run on CPU: no install, a small test subset"
else
  platform=cuda
  tests=(tests)
  TESTS_LIMIT="${TESTS_LIMIT:-1500}"; STUDY_LIMIT="${STUDY_LIMIT:-600}"; BENCH_LIMIT="${BENCH_LIMIT:-900}"
  study_args=(--quick)
  command -v nvidia-smi >/dev/null 2>&1 || { echo "gpu-check: no nvidia-smi: not a GPU machine (try --dry-run)" >&2; exit 1; }
fi
export PY

step() {  # step NAME LIMIT COMMAND...: run with a time limit, log, record rc and wall time
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" > "$logs/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc wall_s=$((SECONDS - t0)) limit_s=$limit" | tee -a "$status"
  tail -3 "$logs/$name.log"
  return $rc
}
skip() { echo "$1 skipped: $2" | tee -a "$status"; }

# 1. install: the package with its test and gpu extras at the constrained versions
if ! want install; then
  skip install "not in STEPS"
elif (( install )); then
  step install 900 env JAXUNLEARN_EXTRAS=gpu bash "$ROOT/scripts/setup.sh"
else
  skip install "$( (( dry )) && echo "dry run" || echo "--no-install")"
fi
[ -x "$PY" ] || { echo "gpu-check: no $PY; run bash scripts/setup.sh first" >&2; exit 1; }
JAX_PLATFORMS=$platform "$PY" - "$logs/jax.json" <<'EOF' || echo "jax rc=1 (the $platform backend did not start)" | tee -a "$status"
import json, sys
import jax
json.dump({"version": jax.__version__, "backend": jax.default_backend(),
           "devices": [str(d) for d in jax.devices()]}, open(sys.argv[1], "w"))
print("jax", jax.__version__, jax.default_backend(), jax.devices())
EOF

# 2. the test suite on the accelerator's backend (JUnit XML -> counts and failing test names)
[[ -n "${TESTS:-}" ]] && read -r -a tests <<< "$TESTS"
if ! want tests; then skip tests "not in STEPS"; else
step tests "$TESTS_LIMIT" env JAX_PLATFORMS=$platform "$PY" -m pytest -q -p no:cacheprovider \
  --junitxml="$logs/tests.xml" "${tests[@]}"
fi

# 3. the quick study (digits, MLP): wall time and the study's own JSON figures
if ! want study_quick; then
  skip study_quick "not in STEPS"
elif (( dry )) && [[ "${DRY_STUDY:-0}" != 1 ]]; then
  skip study_quick "dry run (DRY_STUDY=1 runs it with one seed and one forget set)"
else
  step study_quick "$STUDY_LIMIT" env JAX_PLATFORMS=$platform "$ROOT/.venv/bin/jaxunlearn" study \
    "${study_args[@]}" --no-progress --workdir "$work/study"
fi

# 4. the benchmarks (benchmarks/gpu.sh writes benchmarks/results-gpu.json, or -dryrun.json)
if ! want benchmarks; then
  skip benchmarks "not in STEPS"
elif (( dry )) && [[ "${DRY_BENCH:-0}" != 1 ]]; then
  skip benchmarks "dry run (DRY_BENCH=1 runs benchmarks/gpu.sh --dry-run)"
else
  step benchmarks "$BENCH_LIMIT" bash "$ROOT/benchmarks/gpu.sh" $( (( dry )) && echo --dry-run )
fi

"$PY" - "$OUT" "$logs" "$work/study" "$dry" "$((SECONDS - t_all))" <<'EOF'
"""Collects every step's figures into one JSON object."""
import datetime, json, pathlib, platform, re, subprocess, sys
import xml.etree.ElementTree as ET

out, logs, study, dry, wall = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), \
    sys.argv[4] == "1", int(sys.argv[5])
root = pathlib.Path.cwd()


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


status = (logs / "status.txt").read_text().splitlines()
steps = {}
for line in status:
    m = re.match(r"(\w+) rc=(-?\d+) wall_s=(\d+)(?: limit_s=(\d+))?", line)
    if m:
        name, rc, w, lim = m.groups()
        steps[name] = {"rc": int(rc), "wall_s": int(w), "limit_s": int(lim) if lim else None,
                       "timed_out": int(rc) in (124, 137), "log": str(logs / f"{name}.log")}
    elif " skipped: " in line:
        name, why = line.split(" skipped: ", 1)
        steps[name] = {"skipped": why}

xml = logs / "tests.xml"
if "tests" in steps and "rc" in steps["tests"] and xml.is_file():
    try:
        suites = ET.parse(xml).getroot()
        suites = [suites] if suites.tag == "testsuite" else list(suites)
        count = lambda k: sum(int(s.get(k, 0)) for s in suites)
        failed = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s.iter("testcase")
                  if c.find("failure") is not None or c.find("error") is not None]
        steps["tests"].update(tests=count("tests"), failures=count("failures"), errors=count("errors"),
                              skipped=count("skipped"), pytest_time_s=sum(float(s.get("time", 0)) for s in suites),
                              failed=failed)
        steps["tests"]["passed"] = (steps["tests"]["tests"] - steps["tests"]["failures"] - steps["tests"]["errors"]
                                    - steps["tests"]["skipped"])
    except ET.ParseError as e:
        steps["tests"]["junit_error"] = str(e)
    tail = [ln for ln in (logs / "tests.log").read_text(errors="replace").splitlines() if ln.strip()]
    steps["tests"]["summary"] = tail[-1] if tail else None

if "study_quick" in steps and "rc" in steps["study_quick"] and study.is_dir():
    figures = {}
    for f in sorted(study.glob("*.json")) + sorted(study.glob("*/*.json")):
        if f.parts[len(study.parts)] in ("models", "evals") or f.stat().st_size > 200_000:
            continue
        try:
            figures[str(f.relative_to(study))] = json.loads(f.read_text())
        except ValueError:
            pass
    steps["study_quick"]["figures"] = figures
    long_csv = study / "results_long.csv"
    steps["study_quick"]["results_long_rows"] = (sum(1 for _ in long_csv.open()) - 1) if long_csv.is_file() else None
    results = study / "RESULTS.md"
    steps["study_quick"]["results_md_lines"] = len(results.read_text().splitlines()) if results.is_file() else None

if "benchmarks" in steps and "rc" in steps["benchmarks"]:
    bench = root / "benchmarks" / ("results-gpu-dryrun.json" if dry else "results-gpu.json")
    if bench.is_file():
        try:
            steps["benchmarks"]["results"] = json.loads(bench.read_text())
            steps["benchmarks"]["results_file"] = str(bench.relative_to(root))
        except ValueError as e:
            steps["benchmarks"]["results_error"] = str(e)

jax_info = json.loads((logs / "jax.json").read_text()) if (logs / "jax.json").is_file() else None
res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
       "commit": sh("git", "rev-parse", "--short", "HEAD"), "dry_run_on_cpu": dry,
       "host": {"machine": platform.machine(), "python": platform.python_version(), "cpus": __import__("os").cpu_count()},
       "nvidia_smi": None if dry else sh("nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                         "--format=csv,noheader"),
       "jax": jax_info, "total_wall_s": wall, "steps": steps, "status": status}
out.write_text(json.dumps(res, indent=1) + "\n")
ok = all(s.get("rc", 0) == 0 for s in steps.values())
print(f"wrote {out} ({wall} s in all; {'every step passed' if ok else 'some steps failed: see status'})")
EOF
