"""Peak host memory of ``heads.knn_predict`` as the training set grows (10k, 60k, 200k rows).

    .venv/bin/python benchmarks/knn_memory.py           # -> knn_memory.json
    .venv/bin/python benchmarks/knn_memory.py --quick   # 2k / 6k / 20k rows

One fresh process per (N, variant): it builds ``train [N, 512]`` and ``queries [M, 512]``
float32 features on the device, records its peak RSS (``ru_maxrss``), runs the cosine 5-NN
once (compile + run), and records the peak again; extra peak = the kernel's peak RSS mark
(VmHWM, reset through /proc/self/clear_refs just before k-NN) minus the resident memory just
before it (inputs generated on the device, no host copies). On CPU the device is host memory, so RSS covers XLA's buffers. Variants:

* ``chunked``: the library default (queries in chunks of 256, training rows in blocks of
  16384, a running top-k): the largest intermediate is ``256 x 16384`` floats;
* ``query_chunks_only``: ``train_chunk=None``, each query chunk against all N rows
  (``[256, N]``), which is what ``knn_predict`` did before issue 14 (plus, then, a normalised
  copy of the training features, which the chunked version avoids);
* ``train_chunk=B``: blocks of B training rows.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import numpy as np, jax, jax.numpy as jnp
sys.path.insert(0, {root!r})
from jaxunlearn import heads
n, m, d, variant = {n}, {m}, 512, {variant!r}
# inputs generated on the device by one fused program each (no host copy, no temporaries of
# their size), so the peak before k-NN is the inputs themselves
gen = jax.jit(lambda k, shape: jax.random.normal(k, shape), static_argnums=1)
tx = gen(jax.random.key(0), (n, d))
qx = gen(jax.random.key(1), (m, d))
ty = jax.random.randint(jax.random.key(2), (n,), 0, 10)
jax.block_until_ready((tx, ty, qx))
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
peak_before, current_before = peak(), status("VmRSS")
# reset the kernel's peak-RSS mark (VmHWM) to the current RSS, so the peak read after k-NN is
# k-NN's own, not the input generation's
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
hwm_reset = status("VmHWM")
t0 = time.perf_counter()
kw = {{"query_chunks_only": {{"train_chunk": None}}, "chunked": {{}}}}[variant] if "=" not in variant else {{"train_chunk": int(variant.split("=")[1])}}
pred = jax.block_until_ready(heads.knn_predict(tx, ty, qx, 5, "cosine", num_classes=10, **kw))
t = time.perf_counter() - t0
print("RESULT " + json.dumps({{"peak_before_mib": peak_before, "current_before_mib": current_before,
                              "hwm_after_reset_mib": hwm_reset, "peak_after_mib": status("VmHWM"), "seconds": t,
                              "inputs_mib": (n + m) * d * 4 / 2**20, "pred_sum": int(np.asarray(pred).sum())}}))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--variants", default="chunked,query_chunks_only,train_chunk=32768",
                   help="chunked (the default train_chunk), query_chunks_only (train_chunk=None), train_chunk=B")
    p.add_argument("--out", default=str(HERE / "knn_memory.json"))
    a = p.parse_args()
    sizes = [2_000, 6_000, 20_000] if a.quick else [10_000, 60_000, 200_000]
    rows = []
    for n in sizes:
        for variant in a.variants.split(","):
            code = CHILD.format(root=str(HERE.parent), n=n, m=a.queries, variant=variant)
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE.parent)
            line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                rows.append({"n": n, "variant": variant, "error": res.stderr[-1500:]})
                print(n, variant, "failed", res.stderr[-300:])
                continue
            r = json.loads(line[7:])
            # what k-NN added to the resident memory at its start (the inputs, the runtime)
            r.update(n=n, variant=variant, extra_peak_mib=r["peak_after_mib"] - r["current_before_mib"])
            rows.append(r)
            print(f"N={n:7d} {variant:18s} extra peak {r['extra_peak_mib']:8.1f} MiB "
                  f"(inputs {r['inputs_mib']:.0f} MiB), {r['seconds']:.1f} s", flush=True)
    same = all(len({r["pred_sum"] for r in rows if r["n"] == n and "pred_sum" in r}) == 1 for n in sizes)
    out = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": " ".join([".venv/bin/python", "benchmarks/knn_memory.py", *sys.argv[1:]]),
           "queries": a.queries, "dim": 512, "k": 5, "metric": "cosine", "rows": rows,
           "variants_agree": same, "machine": common.machine(), "loadavg_end": os.getloadavg()}
    pathlib.Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
