"""XLA:CPU code generation at LLVM optimisation level 1 vs 3 (XLA's default): an attempt.

    .venv/bin/python benchmarks/cpu_opt_level.py [--rounds 2] [--study] [--no-record]

Each level is set with ``XLA_FLAGS=--xla_backend_optimization_level=N`` (the library keeps a
flag the user set and adds its YNN flag beside it); level 3 gives the default's bits. A first one-off timing of the pool's
programs suggested ~40 % less compile time at level 1; this script is the measurement.
Four measurements, each interleaving the levels (the order rotating per round):

* **pool programs**: a fresh process per run builds a 16 + 16 digits pool (16 retrained MLPs,
  16 Random Label runs, one batch per side, ``strategy="vmap"``) from one original, with an
  empty persistent compilation cache: the compile time of each side's program (trace, lower,
  compile), its per-model run time, the process's wall time and a digest of the stored logits;
* **train steps**: ``run.run_benchmark`` over ``jax_side.py train_step`` (5 steps of the small
  CNN, 2 of ResNet-18, batch 128; compilation excluded) at each level, img/s;
* **train command**: ``jaxunlearn train --dataset fashion_mnist --max-train 10000 --epochs 2``
  (the small CNN, compilation cache off) at each level: wall time, test accuracy, and the
  relative difference of the two models' tensors;
* ``--study``: ``jaxunlearn study --quick`` in a fresh workdir with the compilation cache off
  (wall time), and the number of differing cells of ``results_long.csv`` without timing columns.

The attempt ``attempts/cpu_opt_level`` is added to ``attempts.json`` (other entries untouched).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
PY = str(ROOT / ".venv" / "bin" / "python")
LEVEL = "--xla_backend_optimization_level"
LEVELS = (1, 3)  # 3: XLA's default


def env_for(level: int) -> dict:
    return {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "XLA_FLAGS": f"{LEVEL}={level}"}


def pool_child(a) -> None:
    """One pool build (``--child``): prints ``RESULT {json}``."""
    t0 = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from jaxunlearn import compiled
    compiled.enable_persistent_cache(a.cache)
    from jaxunlearn import pool as pool_lib
    out = pool_lib.build_pool(a.workdir, "random_label", "full", strategy="vmap", log=None, dataset="digits",
                              model="mlp", forget="3", models=16, batch=16, original=a.original)
    digest = hashlib.sha256()
    for side in ("retrained", "unlearned"):
        for s in pool_lib.SPLITS:
            digest.update(np.ascontiguousarray(out[side]["logits"][s]).tobytes())
    print("RESULT " + json.dumps({
        "wall_s": time.perf_counter() - t0, "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "compile_s": {s: sum(b.get("compile_s", 0.0) for b in out[s]["batches"]) for s in ("retrained", "unlearned")},
        "time_per_model_s": {s: float(np.mean(out[s]["time_per_model_s"])) for s in ("retrained", "unlearned")},
        "logits_sha256": digest.hexdigest()[:16]}), flush=True)


def pool_runs(tmp: pathlib.Path, rounds: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from jaxunlearn import pool as pool_lib
    base = tmp / "base"
    pool_lib.Pool(base, pool_lib.PoolConfig(models=16, batch=16), log=None).original()
    res: dict = {lv: [] for lv in LEVELS}
    for r in range(rounds):
        for lv in (LEVELS if r % 2 == 0 else LEVELS[::-1]):
            work = tmp / f"pool-{lv}-{r}"
            cmd = [PY, __file__, "--child", "--workdir", str(work), "--original", str(base / "original"),
                   "--cache", str(tmp / f"xla-{lv}-{r}")]
            t = time.perf_counter()
            p = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env_for(lv))
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")][-1]
            res[lv].append({**json.loads(line[7:]), "process_wall_s": time.perf_counter() - t})
            print(f"pool round {r} level {lv}: {res[lv][-1]['process_wall_s']:.1f} s "
                  f"(compile {res[lv][-1]['compile_s']})", flush=True)
    return res


def step_runs(rounds: int) -> dict:
    sys.path.insert(0, str(HERE))
    import run
    out = {}
    for model, steps in (("cnn", 5), ("resnet18", 2)):
        spec = {"name": f"attempts/cpu_opt_level/{model}", "bench": "train_step",
                "args": ["--model", model, "--steps", str(steps)], "repeats": rounds, "unit": "img/s",
                "variants": {"level 1": [f"--xla-flags={LEVEL}=1"]}}  # the plain side: the default, 3
        with tempfile.TemporaryDirectory() as logs:
            sides, _ = run.run_benchmark(spec, "cpu", logs, warmup=1)
        for s in sides:
            if s.framework != "jax":
                continue
            if s.error:
                raise RuntimeError(f"{s.short}: {s.error.splitlines()[0]}")
            walls = [t["wall_s"] for t in s.rounds]
            key = 1 if s.short.endswith("level 1") else 3
            out.setdefault(model, {})[key] = {"img_s": [steps * 128 / w for w in walls],
                                              "median_img_s": steps * 128 / statistics.median(walls),
                                              "setup_and_warmup_s": s.header.get("setup_and_warmup_s")}
        print(f"{model}: " + ", ".join(f"level {k} {v['median_img_s']:.0f} img/s" for k, v in out[model].items()),
              flush=True)
    return out


def train_runs(tmp: pathlib.Path) -> dict:
    """``jaxunlearn train`` of the small CNN (Fashion-MNIST, 10,000 images, 2 epochs, compilation
    cache off) once per level: wall time, test accuracy, and how far the two models' tensors are
    apart (each level alone is deterministic: a repeat gives the same bits)."""
    sys.path.insert(0, str(ROOT))
    import jax
    import numpy as np

    from jaxunlearn import runs
    out = {}
    for lv in LEVELS:
        work = tmp / f"train-{lv}"
        t = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "jaxunlearn"), "train", "--dataset", "fashion_mnist",
                        "--max-train", "10000", "--epochs", "2", "--no-progress", "--workdir", str(work)],
                       check=True, cwd=ROOT, env={**env_for(lv), "JAXUNLEARN_COMPILATION_CACHE": "off"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out[lv] = {"wall_s": time.perf_counter() - t,
                   "test_accuracy": json.loads((work / "summary.json").read_text())["test_accuracy"]}
        print(f"train (CNN) level {lv}: {out[lv]['wall_s']:.1f} s, test accuracy {out[lv]['test_accuracy']}",
              flush=True)
    leaves = {lv: [np.asarray(x) for x in jax.tree.leaves(
        (lambda st: (st.params, st.batch_stats))(runs.load_run(tmp / f"train-{lv}").state))] for lv in LEVELS}
    rel = [float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30)) for a, b in zip(leaves[1], leaves[3])]
    out["parameters"] = {"tensors": len(rel), "identical": sum(r == 0.0 for r in rel),
                         "relative_difference_min": min(rel), "relative_difference_max": max(rel)}
    print(f"CNN tensors: {out['parameters']}", flush=True)
    return out


def study_runs(tmp: pathlib.Path) -> dict:
    out = {}
    for lv in LEVELS:
        work = tmp / f"study-{lv}"
        env = {**env_for(lv), "JAXUNLEARN_COMPILATION_CACHE": "off"}
        t = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "jaxunlearn"), "study", "--quick", "--workdir", str(work)],
                       check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out[lv] = {"wall_s": time.perf_counter() - t}
        print(f"study --quick level {lv}: {out[lv]['wall_s']:.1f} s", flush=True)
    rows = {lv: list(csv.DictReader(open(tmp / f"study-{lv}" / "results_long.csv"))) for lv in LEVELS}
    cols = [c for c in rows[1][0] if not c.startswith("runtime")]
    cells = differ = 0
    largest = 0.0
    for x, y in zip(rows[1], rows[3]):
        for c in cols:
            cells += 1
            if x[c] != y[c]:
                differ += 1
                try:
                    largest = max(largest, abs(float(x[c]) - float(y[c])))
                except ValueError:
                    largest = float("inf")
    out["results_long"] = {"rows": [len(rows[1]), len(rows[3])], "cells": cells, "differ": differ,
                           "largest_difference": largest}
    print(f"results_long.csv: {differ} of {cells} cells differ (largest {largest:.2g})", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--workdir")
    p.add_argument("--original")
    p.add_argument("--cache")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--study", action="store_true", help="also time `jaxunlearn study --quick` at both levels")
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args()
    if a.child:
        return pool_child(a)
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cpu-opt-level-") as d:
        tmp = pathlib.Path(d)
        pools = pool_runs(tmp, a.rounds)
        steps = step_runs(max(a.rounds, 3))
        trains = train_runs(tmp)
        study = study_runs(tmp) if a.study else None

    def med(lv, f):
        return statistics.median(f(x) for x in pools[lv])

    summary = {}
    for side in ("retrained", "unlearned"):
        summary[f"{side} program compile s (level 1 / 3)"] = [med(lv, lambda x: x["compile_s"][side]) for lv in LEVELS]
        summary[f"{side} s per model (level 1 / 3)"] = [med(lv, lambda x: x["time_per_model_s"][side])
                                                         for lv in LEVELS]
    summary["pool process wall s (level 1 / 3)"] = [med(lv, lambda x: x["process_wall_s"]) for lv in LEVELS]
    summary["same logits at both levels"] = len({x["logits_sha256"] for lv in LEVELS for x in pools[lv]}) == 1
    for model, v in steps.items():
        summary[f"{model} step img/s (level 1 / 3)"] = [v[lv]["median_img_s"] for lv in LEVELS]
    summary["CNN train command wall s (level 1 / 3)"] = [trains[lv]["wall_s"] for lv in LEVELS]
    summary["CNN train command test accuracy (level 1 / 3)"] = [trains[lv]["test_accuracy"] for lv in LEVELS]
    summary["CNN trained tensors, relative difference between levels"] = trains["parameters"]
    if study:
        summary["study --quick wall s (level 1 / 3)"] = [study[lv]["wall_s"] for lv in LEVELS]
        summary["study --quick results_long cells differing"] = study["results_long"]
    def pair(v):
        return f"{v[0]:.3g} vs {v[1]:.3g}" if isinstance(v, list) else str(v)

    text = ("LLVM level 1 vs 3 (XLA's default), medians: "
            + "; ".join(f"{k.replace(' (level 1 / 3)', '')} {pair(v)}" for k, v in summary.items()))
    entry = {"name": "attempts/cpu_opt_level", "kind": "note", "date": start,
             "command": f".venv/bin/python benchmarks/cpu_opt_level.py --rounds {a.rounds}"
                        + (" --study" if a.study else ""),
             "summary": text, "figures": summary, "pool_runs": pools, "step_runs": steps, "train_runs": trains,
             "study_runs": study,
             "loadavg": [*load0[:1], *os.getloadavg()[:1]]}
    print(json.dumps(summary, indent=1))
    if not a.no_record:
        path = HERE / "attempts.json"
        rows = json.loads(path.read_text())
        decision = next((x.get("decision") for x in rows if x.get("name") == entry["name"]), None)
        entry["decision"] = decision or "(to be written from the figures)"
        rows = [x for x in rows if x.get("name") != entry["name"]] + [entry]
        path.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"added {entry['name']} to {path}")


if __name__ == "__main__":
    main()
