"""Interleaved A/B of the small-CNN train step under XLA:CPU fusion-flag variants, and PyTorch.

    .venv/bin/python benchmarks/cnn_xla_reduce.py [ROUNDS]

One serving process per variant (``jax_side.py train_step --model cnn --steps 5``, the
library default and the same with YNNPACK also taking reductions, ``+REDUCE``, and
element-wise fusions, ``+ELTWISE``) and one PyTorch process at its first configuration
(1 thread); timed runs interleave, the order rotating per round. Prints medians and the
per-round times (the attempt ``attempts/cnn_xla_reduce`` in attempts.json).
"""
import json, subprocess, sys, statistics, os
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
V = {
    "library": [],
    "ynn+REDUCE": ["--xla-flags=--xla_cpu_experimental_ynn_fusion_type=-INDIVIDUAL_CONVOLUTION,+REDUCE"],
    "ynn+REDUCE+ELTWISE": ["--xla-flags=--xla_cpu_experimental_ynn_fusion_type=-INDIVIDUAL_CONVOLUTION,+REDUCE,+ELTWISE"],
}
procs = {}
for k, extra in V.items():
    procs[k] = subprocess.Popen([f"{ROOT}/.venv/bin/python", f"{ROOT}/benchmarks/jax_side.py", "train_step", "--model", "cnn",
                                 "--steps", "5", "--warmup", "1", *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
procs["torch t1"] = subprocess.Popen([f"{ROOT}/benchmarks/.torch-venv/bin/python", f"{ROOT}/benchmarks/torch_side.py", "train_step",
                                      "--model", "cnn", "--steps", "5", "--warmup", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
cfg = {}
for k, p in procs.items():
    for line in p.stdout:
        if line.startswith("READY "):
            cfg[k] = json.loads(line[6:])["configs"][0]; break
times = {k: [] for k in procs}
for r in range(rounds):
    order = list(procs)[r % len(procs):] + list(procs)[:r % len(procs)]
    for k in order:
        p = procs[k]; p.stdin.write(f"run {cfg[k]}\n"); p.stdin.flush()
        for line in p.stdout:
            if line.startswith("TIME "):
                times[k].append(json.loads(line[5:])["wall_s"]); break
for k, p in procs.items():
    p.stdin.write("done\n"); p.stdin.flush(); p.wait()
lib = statistics.median(times["library"])
for k, t in times.items():
    m = statistics.median(t)
    print(f"{k:22s} median {m:.3f} s  {5*128/m:7.0f} img/s  vs library {lib/m:.2f}x  torch/this {statistics.median(times['torch t1'])/m:.2f}")
print(json.dumps(times))
