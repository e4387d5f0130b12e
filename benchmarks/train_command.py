"""Whole-command benchmark: ``jaxunlearn train --dataset fashion_mnist`` vs a PyTorch script.

    .venv/bin/python benchmarks/train_command.py                  # -> results.json row train_command/fashion_mnist
    .venv/bin/python benchmarks/train_command.py --profile        # where the JAX command's time goes
    .venv/bin/python benchmarks/train_command.py --label "X" --attempt   # -> attempts.json (train_command)

Each timed run is a fresh process, start to summary (imports, data loading, compile,
training, validation each epoch, checkpoints, final model, test accuracy, summary.json),
with a fresh work directory. The JAX side is the library's CLI; the PyTorch side is
``torch_train_command.py`` doing the same work (see its docstring), timed with 1 thread and
with PyTorch's default thread count; the faster median is compared. Runs of all sides are
interleaved (round r runs each side once, the order rotating). Peak RSS: ``ru_maxrss`` of
each process (``os.wait4``). ratio = PyTorch median wall time / JAX median wall time.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import pathlib
import pstats
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
TORCH_PY = HERE / ".torch-venv" / "bin" / "python"
sys.path.insert(0, str(HERE))

import common  # noqa: E402

NAME = "train_command/fashion_mnist"


#: JAX variants: label -> (argv prefix before ``train``, extra env, extra train args, needs a warm-up run)
JAX_VARIANTS = {
    # the command with nothing in its persistent compilation cache (a first command on a machine)
    "library": (["{root}/.venv/bin/jaxunlearn"], {"JAXUNLEARN_COMPILATION_CACHE": "off"}, [], False),
    # the library before issue 14's init change (benchmarks/cli_variant.py undoes it)
    "eager-init": (["{root}/.venv/bin/python", "{root}/benchmarks/cli_variant.py", "--eager-init"],
                   {"JAXUNLEARN_COMPILATION_CACHE": "off"}, [], False),
    # the library's persistent compilation cache, filled by an untimed warm-up run (every later command)
    "xla-cache": (["{root}/.venv/bin/jaxunlearn"], {"JAXUNLEARN_COMPILATION_CACHE": "{tmp}/xla-cache"}, [], True),
    "devices2": (["{root}/.venv/bin/jaxunlearn"], {"JAXUNLEARN_COMPILATION_CACHE": "off"}, ["--devices", "2"],
                 False),
}


def sides(max_train, epochs, extra_jax=(), torch_configs=("t1", "default"), jax_variants=("library",), tmp="/tmp",
          torch_device="cpu"):
    """``{label: (argv, env, warm)}``; the first JAX variant is labelled ``jax``."""
    work = ["--max-train", str(max_train), "--epochs", str(epochs)]
    out = {}
    for i, v in enumerate(jax_variants):
        prefix, env, extra, warm = JAX_VARIANTS[v]
        fill = lambda x: x.format(root=ROOT, tmp=tmp)
        argv = [fill(x) for x in prefix] + ["train", "--dataset", "fashion_mnist", *work, "--no-progress",
                                           *extra, *extra_jax]
        out["jax" if i == 0 else f"jax: {v}"] = (argv, {k: fill(x) for k, x in env.items()}, warm)
    torch = [str(TORCH_PY), str(HERE / "torch_train_command.py"), *work, "--device", torch_device]
    if "t1" in torch_configs:
        out["torch t1"] = (torch + ["--threads", "1"], {}, False)
    if "default" in torch_configs:
        out["torch default"] = (torch, {}, False)
    return out


def run_once(argv, env, workdir):
    t0 = time.perf_counter()
    proc = subprocess.Popen([*argv, "--workdir", str(workdir)], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read()
    proc.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{out[-2000:]}")
    summary = json.loads((pathlib.Path(workdir) / "summary.json").read_text())
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": ru.ru_maxrss / 1024.0,
            "test_accuracy": summary["test_accuracy"], "train_time_s": summary.get("train_time_s")}


def safe(label):
    return "".join(c if c.isalnum() else "_" for c in label)


def paired(jruns, truns):
    """Per-round ratios PyTorch / JAX (same round)."""
    t = {r["round"]: r["wall_s"] for r in truns}
    rs = sorted(t[r["round"]] / r["wall_s"] for r in jruns if r["round"] in t)
    return {"median": statistics.median(rs), "min": rs[0], "max": rs[-1], "rounds": len(rs)} if rs else None


def figure(label, argv, runs, env=None):
    w = [r["wall_s"] for r in runs]
    s = common.summarize(w)
    envs = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    return {**s, "config": label, "command": (envs + " " if envs else "") + rel(argv) + " --workdir W",
            "cpu_median_s": statistics.median(r["cpu_s"] for r in runs),
            "cores_busy": sum(r["cpu_s"] for r in runs) / sum(w),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "test_accuracy": statistics.median(r["test_accuracy"] for r in runs),
            "train_time_median_s": statistics.median(r["train_time_s"] for r in runs)}


from run import rel_command as rel  # noqa: E402  (the same relative command line as the suite's)


def measure(a):
    runs, uptimes = {}, [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        plan = sides(a.max_train, a.epochs, shlex.split(a.jax_args), a.torch_configs.split(","),
                     a.jax_variants.split(","), tmp, a.torch_device)
        labels = list(plan)
        runs = {k: [] for k in labels}
        for k in labels:  # untimed warm-up: every side (--warmup all) or those that need one (a cache)
            if a.warmup == "all" or plan[k][2]:
                run_once(*plan[k][:2], pathlib.Path(tmp) / f"warm-{k.replace(' ', '_')}")
        for r in range(a.repeats):
            order = labels[r % len(labels):] + labels[:r % len(labels)]
            for k in order:
                res = run_once(*plan[k][:2], pathlib.Path(tmp) / f"{r}-{safe(k)}")
                res["round"] = r
                runs[k].append(res)
                print(f"  round {r} {k:14s} {res['wall_s']:6.1f} s  acc {res['test_accuracy']:.4f}", flush=True)
            uptimes.append(os.getloadavg())
        figs = {k: figure(k, plan[k][0], runs[k], plan[k][1]) for k in labels}
    t_label = min((k for k in figs if k.startswith("torch")), key=lambda k: figs[k]["median_s"])
    j, t = figs["jax"], figs[t_label]
    variants = {}
    for k in figs:
        if k.startswith("jax: "):
            v = dict(figs[k])
            v["ratio"] = t["median_s"] / v["median_s"]
            v["ratio_paired"] = paired(runs[k], runs[t_label])
            variants[k[5:]] = v
    return {"name": NAME, "unit": "s", "jax": j, "torch": t, **({"variants": variants} if variants else {}),
            "other_torch": {k: v for k, v in figs.items() if k.startswith("torch") and k != t_label},
            "ratio": t["median_s"] / j["median_s"], "ratio_paired": paired(runs["jax"], runs[t_label]),
            "peak_rss_mib": {"jax": j["peak_rss_mib"], "torch": t["peak_rss_mib"]},
            "what": f"whole process, start to summary.json: fashion_mnist, --max-train {a.max_train} "
                    f"(90 % train, 10 % validation), {a.epochs} epochs of batch 128, validation and a "
                    "checkpoint every epoch, final model saved, test accuracy on 10,000 images",
            "loadavg_during": uptimes, "samples": runs}


def profile(a):
    """One in-process run of the CLI under cProfile: seconds in each phase (cumulative)."""
    from jaxunlearn import cli
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", "--dataset", "fashion_mnist", "--max-train", str(a.max_train), "--epochs",
                str(a.epochs), "--no-progress", "--workdir", os.path.join(tmp, "w"), *shlex.split(a.jax_args)]
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        cli.main(argv)
        prof.disable()
        wall = time.perf_counter() - t0
    st = pstats.Stats(prof)
    phases = {"load_dataset": "load_dataset", "init_state": "init_state", "train loop (fit)": "fit",
              "  validation (evaluate)": "evaluate", "  checkpoints (on_chunk)": "on_chunk",
              "save_model": "save_model", "accuracy_of (val + test)": "accuracy_of",
              "XLA compile (all)": "backend_compile_and_load", "host transfers (np.asarray)": "numpy.asarray"}
    out = {}
    for label, fn in phases.items():
        tot = 0.0
        for (file, line, name), (cc, nc, tt, ct, callers) in st.stats.items():
            if name == fn or (fn == "numpy.asarray" and "numpy.asarray" in name):
                tot = max(tot, ct)
        out[label] = tot
    ncomp = sum(v[1] for k, v in st.stats.items() if k[2] == "backend_compile_and_load")
    return {"wall_in_process_s": wall, "phases_s": out, "compilations": ncomp,
            "loadavg": os.getloadavg(), "args": argv}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--max-train", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jax-args", default="", help="extra arguments of the JAX command")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--torch-device", default="cpu", help="cpu or cuda (gpu.sh)")
    p.add_argument("--out", default=None, help="write the row here instead of results.json / attempts.json")
    p.add_argument("--jax-variants", default="library",
                   help="comma list of " + ", ".join(JAX_VARIANTS) + " (the first is the row's JAX figure)")
    p.add_argument("--warmup", default="all", choices=["all", "needed"],
                   help="untimed first run of every side, or only of those that fill a cache")
    p.add_argument("--torch-configs", default="t1,default",
                   help="PyTorch thread settings timed: t1 (1 thread), default (PyTorch's default count)")
    p.add_argument("--attempt", action="store_true", help="write to attempts.json's train_command section")
    p.add_argument("--label", default="library default")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    if a.profile:
        print(json.dumps(profile(a), indent=1))
        return
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    e = measure(a)
    e.update(date=date, command=rel([sys.executable, *sys.argv]), machine=common.machine(), label=a.label)
    print(f"{NAME}: JAX {e['jax']['median_s']:.1f} s, PyTorch ({e['torch']['config']}) "
          f"{e['torch']['median_s']:.1f} s, ratio {e['ratio']:.2f} "
          f"(paired {e['ratio_paired']['min']:.2f}-{e['ratio_paired']['max']:.2f}); load {e['loadavg_during']}")
    for k, v in e.get("variants", {}).items():
        print(f"  jax: {k}: {v['median_s']:.1f} s, ratio {v['ratio']:.2f}")
    if a.no_write:
        return
    if a.out:
        path = pathlib.Path(a.out)
        path.write_text(json.dumps(e, indent=1) + "\n")
    elif a.attempt:
        path = HERE / "attempts.json"
        entries = json.loads(path.read_text())
        entries.append({**e, "name": "attempts/train_command"})
        path.write_text(json.dumps(entries, indent=1) + "\n")
    else:
        path = HERE / "results.json"
        entries = [x for x in json.loads(path.read_text()) if x["name"] != NAME]
        entries.append(e)
        path.write_text(json.dumps(entries, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
