"""Pool construction: N = 64 retrained + 64 Random Label models on digits, JAX vs a PyTorch loop.

  .venv/bin/python benchmarks/pool.py [--models 64] [--rounds 2] [--no-record]

What one timed run does, on each side (a fresh process each run, so start-up, compilation
and dataset loading are inside the wall time, as for a user's command):

* ``jax-vmap``: the command ``jaxunlearn pool --dataset digits --model mlp --method random_label
  --forget 3 --strategy vmap --batch 16 --from ORIGINAL`` (batches of 16 models, one compiled
  program per side), with an empty persistent compilation cache
  (``JAXUNLEARN_COMPILATION_CACHE=DIR``): a user's first command on a machine;
* ``jax-vmap-warm``: the same with the cache an earlier (untimed) run of the same command
  filled: every later command;
* ``jax-loop``: the same with ``--strategy loop`` (the host drivers, one model after another);
* ``torch``: ``pool_torch.py``, a loop of the same MLP with the same recipe, steps, method
  settings and stored outputs (from the same original weights), 1 thread (the faster setting
  of PyTorch on this loaded machine in ``results.json``'s other rows).

The loops' cost is linear in the model count, so on this shared 2-core CPU they build
``--loop-models`` models per side (default 8) and their time at N is the run's fixed part
(start-up, data, original, writing) plus N times each side's measured per-model time; the
vmapped build always runs all N. Rounds interleave the configurations (the order rotating);
the figures are medians over rounds. The row ``pool/64_per_side`` is added to ``results.json`` (other rows untouched) with
``ratio = PyTorch median / JAX vmap median`` and the loop's figures in ``other_configs``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
TORCH_PY = str(HERE / ".torch-venv" / "bin" / "python")


def pool_command(strategy: str, workdir: pathlib.Path, original: str, models: int) -> list:
    """The ``jaxunlearn pool`` command a JAX run times."""
    return [str(ROOT / ".venv" / "bin" / "jaxunlearn"), "pool", "--dataset", "digits", "--model", "mlp",
            "--method", "random_label", "--forget", "3", "--models", str(models), "--batch", "16",
            "--strategy", strategy, "--from", original, "--workdir", str(workdir)]


def pool_figures(workdir: pathlib.Path) -> dict:
    """What a built pool recorded: compile time, per-model times, strategies and accuracies."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from jaxunlearn import pool as pool_lib
    out = pool_lib.load_pool(workdir, "random_label")
    sides = {s: out[s] for s in ("retrained", "unlearned")}
    return {"compile_s": sum(b.get("compile_s", 0.0) for s in sides.values() for b in s["batches"]),
            "time_per_model_s": {k: float(np.mean(v["time_per_model_s"])) for k, v in sides.items()},
            "strategy": {k: sorted({b["strategy"] for b in v["batches"]}) for k, v in sides.items()},
            "accuracy": {k: {n: float(np.mean(v["accuracy"][n])) for n in ("retain", "forget", "test")}
                         for k, v in sides.items()}}


def setup(tmp: pathlib.Path, models: int) -> dict:
    """The original model, the digits arrays and the spec both sides share."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from jaxunlearn import data as data_lib, pool as pool_lib, runs
    ds = data_lib.load_dataset("digits")
    digits = tmp / "digits.npz"
    np.savez(digits, train_images=ds.train_images, train_labels=ds.train_labels, val_images=ds.val_images,
             val_labels=ds.val_labels, test_images=ds.test_images, test_labels=ds.test_labels)
    # the original: a pool with no method trains it once; its run directory is reused as --from
    base = tmp / "base"
    pool_lib.Pool(base, pool_lib.PoolConfig(models=models, batch=16), ds=ds, log=None).original()
    orig = runs.load_run(base / "original", dataset=ds)
    p = orig.state.params
    weights = tmp / "original.npz"
    np.savez(weights, **{f"{layer}_{k}": np.asarray(v) for layer in ("dense1", "dense2", "head")
                         for k, v in p[layer].items()})
    pool = pool_lib.Pool(base, pool_lib.PoolConfig(models=models, batch=16), ds=ds, log=None)
    method, hp, st = pool_lib._method_setup("digits", "random_label", "full")
    r = pool.recipe
    spec = {"models": models, "retain": pool.split.train_retain.tolist(), "forget": pool.split.train_forget.tolist(),
            "rows": {k: v.tolist() for k, v in pool.rows.items()}, "original_npz": str(weights),
            "recipe": {"epochs": r.epochs, "batch_size": r.batch_size, "lr": r.lr, "final_lr": r.final_lr,
                       "momentum": r.momentum, "weight_decay": r.weight_decay},
            "unlearn": {"epochs": st.epochs, "batch_size": st.batch_size, "lr": float({**method.hparams, **hp}["lr"]),
                        "momentum": st.momentum, "weight_decay": st.weight_decay, "nesterov": st.nesterov}}
    assert r.warmup_epochs == 0 and r.patience is None and st.schedule == "constant" and st.optimizer == "sgd"
    (tmp / "spec.json").write_text(json.dumps(spec))
    return {"digits": str(digits), "spec": str(tmp / "spec.json"), "original": str(base / "original"),
            "recipe": dataclasses.asdict(r), "unlearn": spec["unlearn"]}


def estimate(res: dict, measured: int, models: int) -> float:
    """A loop's wall time at ``models`` per side from a run of ``measured`` per side: the fixed
    part (start-up, data, the original, writing) plus ``models`` times the measured per-model
    time of each side (a loop's cost is linear in the model count)."""
    per = sum(res["time_per_model_s"].values())
    fixed = res["wall_s"] - measured * per
    return fixed + models * per


def run_once(cfg: str, env: dict, tmp: pathlib.Path, models: int, r: int) -> dict:
    if cfg == "torch":
        out = tmp / f"torch-{r}.json"
        cmd = [TORCH_PY, str(HERE / "pool_torch.py"), "--digits", env["digits"], "--spec", env["loop_spec"],
               "--out", str(out), "--threads", "1"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=HERE)
        wall = time.perf_counter() - t
        return {"wall_s": wall, **json.loads(out.read_text()), "command": cmd}
    work = tmp / f"{cfg}-{r}"
    n = env["loop_models"] if cfg == "jax-loop" else models
    cache = env["warm_cache"] if cfg == "jax-vmap-warm" else str(tmp / f"xla-{cfg}-{r}")  # else empty
    cmd = pool_command(cfg.split("-")[1], work, env["original"], n)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT,
                   env={**os.environ, "JAXUNLEARN_COMPILATION_CACHE": cache})
    wall = time.perf_counter() - t
    res = {"wall_s": wall, **pool_figures(work), "command": [f"JAXUNLEARN_COMPILATION_CACHE={cache}", *cmd]}
    shutil.rmtree(work, ignore_errors=True)
    return res


def render_fields(row: dict) -> dict:
    """The fields ``render.py``'s main table reads: range, command and version per side, and the
    JAX loop as a variant row (its ratio = PyTorch / loop)."""
    def side(d):
        walls = [r["wall_s"] for r in d["runs"] or []]
        if not walls:
            return d
        first = d["runs"][0]
        cmd = first.get("command")
        return {**d, "min_s": min(walls), "max_s": max(walls),
                "command": " ".join(cmd) if isinstance(cmd, list) else cmd,
                **({"version": first["version"]} if "version" in first else {})}
    row = {**row, "jax": side(row["jax"]), "torch": side(row["torch"])}
    t = row["torch"].get("median_s")
    names = {"vmap-warm": "jax: vmap, warm compilation cache (a later command)",
             "loop": "jax: library loop (host drivers; 8 per side scaled to N)"}
    row["variants"] = {}
    for key, label in names.items():
        v = row["jax"]["other_configs"].get(key)
        if v and v.get("runs"):
            v = side(v)
            row["variants"][label] = {**v, "ratio": t / v["median_s"] if t else None}
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--configs", default="jax-vmap,jax-vmap-warm,torch,jax-loop")
    p.add_argument("--loop-rounds", type=int, default=1, help="rounds that include jax-loop (it is slow)")
    p.add_argument("--loop-models", type=int, default=8,
                   help="models per side the loops (jax-loop, torch) build; their time is scaled to --models")
    p.add_argument("--no-record", action="store_true", help="do not add the row to results.json")
    a = p.parse_args()
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pool-bench-"))
    env = setup(tmp, a.models)
    loop_spec = json.loads(pathlib.Path(env["spec"]).read_text())
    loop_spec["models"] = env["loop_models"] = min(a.loop_models, a.models)
    env["loop_spec"] = str(tmp / "loop_spec.json")
    pathlib.Path(env["loop_spec"]).write_text(json.dumps(loop_spec))
    configs = a.configs.split(",")
    env["warm_cache"] = str(tmp / "xla-warm")
    if "jax-vmap-warm" in configs:  # one untimed build fills the cache the warm runs read
        warm = run_once("jax-vmap", {**env, "warm_cache": None}, tmp, a.models, "warmup")
        shutil.move(str(tmp / "xla-jax-vmap-warmup"), env["warm_cache"])
        print(f"warm-up build (fills the cache): {warm['wall_s']:.1f} s", flush=True)
    runs_: dict = {c: [] for c in configs}
    for r in range(a.rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for cfg in order:
            if cfg == "jax-loop" and r >= a.loop_rounds:
                continue
            res = run_once(cfg, env, tmp, a.models, r)
            if cfg in ("jax-loop", "torch"):  # loops are measured on loop_models per side, scaled to N
                res["measured_models_per_side"] = env["loop_models"]
                res["measured_wall_s"] = res["wall_s"]
                res["wall_s"] = estimate(res, env["loop_models"], a.models)
            runs_[cfg].append(res)
            print(f"round {r} {cfg}: {res['wall_s']:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    med = {c: statistics.median(x["wall_s"] for x in v) for c, v in runs_.items() if v}
    load1 = os.getloadavg()
    paired = [t["wall_s"] / j["wall_s"] for t, j in zip(runs_.get("torch", []), runs_.get("jax-vmap", []))]
    row = {"name": f"pool/{a.models}_per_side", "unit": "s", "date": start,
           "command": f".venv/bin/python benchmarks/pool.py --models {a.models} --rounds {a.rounds} "
                      f"--loop-models {a.loop_models}",
           "loops_scaled": f"jax-loop and torch build {env['loop_models']} models per side; their wall_s is the "
                           f"fixed part plus {a.models} x the measured per-model time of each side "
                           "(measured_wall_s: the run itself)",
           "what": f"{a.models} retrained (digits MLP, retain set, recipe {env['recipe']['epochs']} epochs) + "
                   f"{a.models} Random Label models from one original ({env['unlearn']['epochs']} epoch), logits "
                   "on forget/retain/test rows and accuracies stored; fresh process per run",
           "jax": {"config": "vmap (empty compilation cache)", "median_s": med.get("jax-vmap"),
                   "runs": runs_.get("jax-vmap"),
                   "other_configs": {"loop": {"median_s": med.get("jax-loop"), "runs": runs_.get("jax-loop")},
                                     "vmap-warm": {"median_s": med.get("jax-vmap-warm"),
                                                   "runs": runs_.get("jax-vmap-warm")}}},
           "torch": {"config": "t1 loop", "median_s": med.get("torch"), "runs": runs_.get("torch")},
           "ratio": (med["torch"] / med["jax-vmap"]) if "torch" in med and "jax-vmap" in med else None,
           "ratio_paired": {"min": min(paired), "max": max(paired), "rounds": len(paired)} if paired else None,
           "ratio_loop_over_vmap": (med["jax-loop"] / med["jax-vmap"]) if "jax-loop" in med and "jax-vmap" in med
           else None,
           "ratio_warm_cache": (med["torch"] / med["jax-vmap-warm"]) if "torch" in med and "jax-vmap-warm" in med
           else None,
           "machine": {"cpus": os.cpu_count(), "loadavg_start": load0, "loadavg_end": load1}}
    row = render_fields(row)
    print(json.dumps({k: v for k, v in row.items() if k not in ("jax", "torch")}, indent=1))
    for c, v in med.items():
        print(f"{c}: median {v:.1f} s over {len(runs_[c])} run(s)")
    out = tmp / "row.json"
    out.write_text(json.dumps(row, indent=1))
    print(f"row in {out}")
    if not a.no_record:
        path = HERE / "results.json"
        rows = json.loads(path.read_text())  # re-read right before writing: others add rows too
        rows = [x for x in rows if x.get("name") != row["name"]] + [row]
        path.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"added {row['name']} to {path}")


if __name__ == "__main__":
    main()
