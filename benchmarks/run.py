"""Runs the JAX-vs-PyTorch benchmarks and writes benchmarks/results.json (+ README.md).

    .venv/bin/python benchmarks/run.py                       # the main suite -> results.json
    .venv/bin/python benchmarks/run.py --only train_step/cnn # one benchmark (merged into results.json)
    .venv/bin/python benchmarks/run.py --suite attempts      # speed-up attempts -> attempts.json
    .venv/bin/python benchmarks/run.py --device cuda --out benchmarks/results-gpu.json   # see gpu.sh

Every benchmark starts one subprocess per side (JAX in this venv, PyTorch in
benchmarks/.torch-venv), so each side's peak RSS is its own. The sides set up and warm up
concurrently, then their timed runs are **interleaved** (round r runs every side once, the
order rotating), so slow phases of a shared machine hit both sides alike. The PyTorch side
times each of its configurations (1 thread and the default thread count on CPU) and the
faster one is compared. ``ratio`` = PyTorch median time / JAX median time (> 1: JAX faster).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
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


YNN_NO_CONV = "--xla_cpu_experimental_ynn_fusion_type=-INDIVIDUAL_CONVOLUTION"


def suite_main(digits: str, device: str) -> list[dict]:
    gpu = device != "cpu"
    d = ["--digits", digits]
    # The library's defaults on CPU already include the measured speed-ups (the YNN flag set at
    # import, the reshape max-pool); the variant is the library's `--devices 2` path.
    two = {"library, 2 CPU devices, batch sharded (`jaxunlearn train --devices 2`)": ["--devices", "2"]}
    cnn_variants = {} if gpu else two
    r18_variants = {} if gpu else two
    return [
        {"name": "peak_matmul", "bench": "peak_flops", "args": ["--matmul-n", "4096" if gpu else "2048"],
         "repeats": 5, "unit": "FLOP/s"},
        {"name": "train_step/cnn", "bench": "train_step", "args": ["--model", "cnn", "--steps", "50" if gpu else "5"],
         "repeats": 5, "unit": "img/s", "variants": cnn_variants},
        {"name": "train_step/resnet18", "bench": "train_step",
         "args": ["--model", "resnet18", "--steps", "20" if gpu else "1"], "repeats": 5 if gpu else 3,
         "unit": "img/s", "variants": r18_variants},
        {"name": "eval_suite", "bench": "eval", "args": [], "repeats": 3, "unit": "s",
         "torch_args": []},
        {"name": "sweep/8_seeds", "bench": "sweep_seeds", "args": d, "repeats": 3, "unit": "s",
         "torch_args": []},
        {"name": "sweep/unlearn_10_classes", "bench": "sweep_unlearn", "args": d, "repeats": 3, "unit": "s",
         "torch_args": []},
    ]


def suite_attempts(digits: str, device: str) -> list[dict]:
    """Every speed-up attempt for the JAX train step, each against the same PyTorch reference."""
    cnn = ["--model", "cnn", "--steps", "5"]
    r18 = ["--model", "resnet18", "--steps", "1"]
    ynn = "--xla-flags=" + YNN_NO_CONV
    two = ["--devices", "2", "--own-loop"]
    v_cnn = {
        "loop=scan (lax.scan over the steps)": ["--loop", "scan"],
        "own host loop, jit donate_argnums=0": ["--own-loop", "--donate"],
        "XLA_FLAGS=--xla_cpu_multi_thread_eigen=false": ["--xla-flags=--xla_cpu_multi_thread_eigen=false"],
        "XLA_FLAGS=--xla_cpu_use_xnnpack=true": ["--xla-flags=--xla_cpu_use_xnnpack=true"],
        "XLA_FLAGS=--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true":
            ["--xla-flags=--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"],
        "XLA_FLAGS=" + YNN_NO_CONV: [ynn],
        "XLA_FLAGS=" + YNN_NO_CONV + ",-INDIVIDUAL_DOT": [ynn + ",-INDIVIDUAL_DOT"],
        "2 CPU devices, batch sharded (block each step)": two,
        "2 CPU devices + ynn flag": two + [ynn],
        "patch pool (reshape max-pool)": ["--patch", "pool"],
        "patch conv (GEMM weight gradient)": ["--patch", "conv"],
        "ynn flag + patch pool": [ynn, "--patch", "pool"],
        "ynn flag + patch pool + donate": [ynn, "--patch", "pool", "--own-loop", "--donate"],
        "ynn flag + patch pool + 2 CPU devices": [ynn, "--patch", "pool"] + two,
    }
    v_r18 = {
        "XLA_FLAGS=" + YNN_NO_CONV: [ynn],
        "patch conv (GEMM weight gradient)": ["--patch", "conv"],
        "2 CPU devices, batch sharded (block each step)": two,
        "2 CPU devices + ynn flag": two + [ynn],
        "ynn flag + own loop, donate_argnums=0": [ynn, "--own-loop", "--donate"],
    }
    return [
        {"name": "attempts/cnn", "bench": "train_step", "args": cnn, "repeats": 3, "unit": "img/s",
         "variants": v_cnn, "torch_variants": {"channels_last": ["--channels-last"]}},
        {"name": "attempts/resnet18", "bench": "train_step", "args": r18, "repeats": 2, "unit": "img/s",
         "variants": v_r18},
    ]


# ----------------------------------------------------------------------------- processes

class Side:
    """One benchmark subprocess speaking common.serve's protocol."""

    def __init__(self, label, framework, argv, log_dir, index=0):
        self.label, self.framework, self.argv = label, framework, argv
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:60]
        self.log_path = pathlib.Path(log_dir) / f"{safe}.{index}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        self.header = None
        self.rounds: list[dict] = []
        self.result = None
        self.error = None

    def expect(self, tag):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                self.log.flush()
                tail = self.log_path.read_text()[-2000:]
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode} before {tag}:\n{tail}")
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])

    def send(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self):
        try:
            if self.proc.poll() is None:
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
        except Exception:  # noqa: BLE001
            self.proc.kill()
        self.log.close()


def side_argv(framework, bench, args, device):
    script = "jax_side.py" if framework == "jax" else "torch_side.py"
    py = sys.executable if framework == "jax" else str(TORCH_PY)
    argv = [py, str(HERE / script), bench, *args]
    if framework == "torch" and device != "cpu":
        argv += ["--device", device]
    return argv


def rel_command(argv):
    """The side's command line, relative to the repository root."""
    out = []
    for a in argv:
        try:
            out.append(str(pathlib.Path(a).relative_to(ROOT)) if a.startswith("/") else a)
        except ValueError:
            out.append(a)
    return shlex.join(out)


def run_benchmark(spec, device, log_dir, warmup):
    sides = []
    jax_args = spec["args"]
    torch_args = [a for a in spec["args"]] + spec.get("torch_args", [])
    plan = [("jax", "jax", jax_args)]
    plan += [(f"jax: {k}", "jax", jax_args + v) for k, v in spec.get("variants", {}).items()]
    plan += [("torch", "torch", torch_args)]
    plan += [(f"torch: {k}", "torch", torch_args + v) for k, v in spec.get("torch_variants", {}).items()]
    t0 = time.perf_counter()
    for i, (label, fw, args) in enumerate(plan):
        argv = side_argv(fw, spec["bench"], [*args, "--warmup", str(warmup)], device)
        sides.append(Side(f"{spec['name']}:{label}", fw, argv, log_dir, i))
        sides[-1].short = label
    alive = []
    for s in sides:
        try:
            s.header = s.expect("READY")
            alive.append(s)
        except Exception as e:  # noqa: BLE001
            s.error = str(e)
            print(f"  ! {s.short}: failed during setup (see {s.log_path})", flush=True)
    for r in range(spec["repeats"]):
        order = alive[r % len(alive):] + alive[:r % len(alive)] if alive else []
        for s in order:
            if s.error:
                continue
            try:
                for cfg in s.header["configs"]:
                    s.send(f"run {cfg}")
                    t = s.expect("TIME")
                    t["round"] = r
                    s.rounds.append(t)
            except Exception as e:  # noqa: BLE001
                s.error = str(e)
    for s in alive:
        if s.error:
            continue
        try:
            s.send("done")
            s.result = s.expect("RESULT")
        except Exception as e:  # noqa: BLE001
            s.error = str(e)
    for s in sides:
        s.close()
    return sides, time.perf_counter() - t0


# ----------------------------------------------------------------------------- combining

def figure(side, spec, config=None):
    """Summary of one side: the chosen configuration (fastest median unless given)."""
    if side.result is None:
        return {"error": (side.error or "no result")[-1500:], "command": rel_command(side.argv)}
    timings = side.result["timings"]
    cfg = config or min(timings, key=lambda c: timings[c]["median_s"])
    t = timings[cfg]
    out = {"config": cfg, "median_s": t["median_s"], "min_s": t["min_s"], "max_s": t["max_s"],
           "spread_pct": t["spread_pct"], "runs": t["runs"], "samples_s": t["samples_s"],
           "cpu_median_s": t["cpu_median_s"], "cores_busy": t["cores_busy"],
           "peak_rss_mib": side.result["peak_rss_mib"], "version": side.result.get("version"),
           "command": rel_command(side.argv),
           "other_configs": {c: {"median_s": v["median_s"], "spread_pct": v["spread_pct"],
                                 "cores_busy": v["cores_busy"]} for c, v in timings.items() if c != cfg}}
    res = side.result
    if spec["unit"] == "img/s":
        imgs = res["images_per_run"]
        out["img_per_s"] = imgs / t["median_s"]
        out["img_per_s_range"] = [imgs / t["max_s"], imgs / t["min_s"]]
    if spec["unit"] == "FLOP/s":
        out["flop_per_s"] = res["flops_per_run"] / t["median_s"]
        out["flop_per_s_range"] = [res["flops_per_run"] / t["max_s"], res["flops_per_run"] / t["min_s"]]
    keep = ("flops_per_image", "num_params", "probe_acc", "ncc_acc", "nc1", "parts_median_s",
            "mean_test_acc", "after_unlearning", "original_test_acc", "loop", "xla_flags", "patch",
            "num_devices", "default_threads", "device_kind", "what", "setup_and_warmup_s", "by_config")
    out["details"] = {k: res[k] for k in keep if k in res}
    return out


def paired(jax_side, torch_side, jcfg, tcfg):
    """Per-round ratios torch / jax for the chosen configurations."""
    j = {t["round"]: t["wall_s"] for t in jax_side.rounds if t["config"] == jcfg}
    t = {x["round"]: x["wall_s"] for x in torch_side.rounds if x["config"] == tcfg}
    rs = sorted(t[r] / j[r] for r in j if r in t)
    if not rs:
        return None
    return {"median": statistics.median(rs), "min": rs[0], "max": rs[-1], "rounds": len(rs)}


def combine(spec, sides, wall, command, date):
    by = {s.short: s for s in sides}
    jax_side, torch_side = by["jax"], by["torch"]
    jax = figure(jax_side, spec)
    torch = figure(torch_side, spec)
    entry = {"name": spec["name"], "unit": spec["unit"], "date": date, "command": command,
             "jax": jax, "torch": torch, "wall_s": wall}
    ok = "median_s" in jax and "median_s" in torch
    entry["ratio"] = torch["median_s"] / jax["median_s"] if ok else None
    entry["ratio_paired"] = paired(jax_side, torch_side, jax["config"], torch["config"]) if ok else None
    entry["peak_rss_mib"] = {"jax": jax.get("peak_rss_mib"), "torch": torch.get("peak_rss_mib")}
    variants = {}
    for s in sides:
        if s.short in ("jax", "torch"):
            continue
        f = figure(s, spec)
        if "median_s" in f:
            ref = torch if s.framework == "jax" else jax
            if "median_s" in ref:
                f["ratio"] = (ref["median_s"] / f["median_s"]) if s.framework == "jax" else (f["median_s"] / ref["median_s"])
                f["ratio_paired"] = (paired(s, torch_side, f["config"], torch["config"]) if s.framework == "jax"
                                     else None)
        variants[s.short] = f
    if variants:
        entry["variants"] = variants
    if spec["bench"] == "eval" and "error" in jax:
        entry["status"] = "pending: jaxunlearn.heads / collapse not importable yet"
    return entry


def add_hardware_limit(entries):
    """Fraction of the measured matmul peak reached by each train step (FLOPs from XLA)."""
    peak = next((e for e in entries if e["name"] == "peak_matmul"), None)
    if not peak:
        return
    for e in entries:
        if not e["name"].startswith(("train_step/", "attempts/")):
            continue
        fpi = e["jax"].get("details", {}).get("flops_per_image")
        if not fpi:
            continue
        e["flops_per_image"] = fpi
        for side in ("jax", "torch"):
            f, p = e[side], peak[side]
            if "img_per_s" in f and "flop_per_s" in p:
                f["achieved_flop_per_s"] = fpi * f["img_per_s"]
                f["fraction_of_matmul_peak"] = fpi * f["img_per_s"] / p["flop_per_s"]
        for v in e.get("variants", {}).values():
            p = peak["jax" if v.get("command", "").find("jax_side") >= 0 else "torch"]
            if "img_per_s" in v and "flop_per_s" in p:
                v["fraction_of_matmul_peak"] = fpi * v["img_per_s"] / p["flop_per_s"]


# ----------------------------------------------------------------------------- main

def write_digits(path):
    import numpy as np
    from jaxunlearn.data import load_dataset
    ds = load_dataset("digits")
    np.savez(path, train_images=ds.train_images, train_labels=ds.train_labels,
             test_images=ds.test_images, test_labels=ds.test_labels)


def print_table(entries):
    print()
    print(f"{'benchmark':28s} {'JAX':>22s} {'PyTorch':>22s} {'ratio':>7s} {'RSS MiB jax/torch':>18s}")
    for e in entries:
        def cell(f):
            if "median_s" not in f:
                return "error"
            # rows other scripts merged into results.json (pool, train command) have no spread
            spread = f" ±{f['spread_pct']:.0f}%" if "spread_pct" in f else ""
            if e.get("unit") == "img/s":
                return f"{f['img_per_s']:.0f} img/s{spread}"
            if e.get("unit") == "FLOP/s":
                return f"{f['flop_per_s'] / 1e9:.1f} GFLOP/s{spread}"
            return f"{f['median_s']:.2f} s{spread}"
        ratio = f"{e['ratio']:.2f}" if e.get("ratio") else "-"
        rss = f"{e['jax'].get('peak_rss_mib', 0):.0f}/{e['torch'].get('peak_rss_mib', 0):.0f}"
        print(f"{e['name']:28s} {cell(e['jax']):>22s} {cell(e['torch']):>22s} {ratio:>7s} {rss:>18s}")
        for k, v in e.get("variants", {}).items():
            r = f"{v['ratio']:.2f}" if v.get("ratio") else "-"
            side = cell(v)
            print(f"  {k[:60]:60s} {side:>22s} {r:>7s}")
    print()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--suite", default="main", choices=["main", "attempts"])
    p.add_argument("--only", default=None, help="comma list of benchmark names (merged into the output)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch side; JAX uses its default backend)")
    p.add_argument("--out", default=None)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=None, help="override every benchmark's timed rounds")
    p.add_argument("--no-readme", action="store_true")
    a = p.parse_args()
    out = pathlib.Path(a.out) if a.out else HERE / ("results.json" if a.suite == "main" else "attempts.json")
    if not TORCH_PY.exists():
        sys.exit(f"{TORCH_PY} is missing: run bash benchmarks/setup_torch.sh first")
    command = rel_command([sys.executable, *sys.argv])
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log_dir = pathlib.Path(tempfile.gettempdir()) / "jaxunlearn-benchmark-logs"
    log_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        digits = os.path.join(tmp, "digits.npz")
        write_digits(digits)
        specs = (suite_main if a.suite == "main" else suite_attempts)(digits, a.device)
        if a.only:
            wanted = set(a.only.split(","))
            specs = [s for s in specs if s["name"] in wanted]
        if a.repeats:
            for s in specs:
                s["repeats"] = a.repeats
        entries = []
        t_start = time.perf_counter()
        for spec in specs:
            print(f"[{time.perf_counter() - t_start:6.0f}s] {spec['name']} ...", flush=True)
            sides, wall = run_benchmark(spec, a.device, log_dir, a.warmup)
            entries.append(combine(spec, sides, wall, command, date))
            e = entries[-1]
            print(f"         done in {wall:.0f}s, ratio {e['ratio']}", flush=True)
    add_hardware_limit(entries)
    for e in entries:
        for f in [e["jax"], e["torch"], *e.get("variants", {}).values()]:
            if "command" in f:
                f["command"] = f["command"].replace(digits, "<digits.npz written by run.py>")
        e["machine"] = common.machine()
    if a.only and out.exists():
        old = json.loads(out.read_text())
        names = {e["name"] for e in entries}
        merged = [e for e in old if e["name"] not in names] + entries
        order = [s["name"] for s in (suite_main if a.suite == "main" else suite_attempts)("", a.device)]
        entries = sorted(merged, key=lambda e: order.index(e["name"]) if e["name"] in order else 99)
    out.write_text(json.dumps(entries, indent=1) + "\n")
    print_table(entries)
    print(f"wrote {out} ({time.perf_counter() - t_start:.0f}s)")
    if not a.no_readme and a.device == "cpu":
        subprocess.run([sys.executable, str(HERE / "render.py")], check=False)


if __name__ == "__main__":
    main()
