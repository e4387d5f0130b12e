"""Benchmarks of the run axes (issue 12): the multi-seed stage and the 10-class sweep.

    .venv/bin/python benchmarks/axes.py                  # both rows, appended to results.json
    .venv/bin/python benchmarks/axes.py --only stage     # (a) only
    .venv/bin/python benchmarks/axes.py --only sweep     # (b) only
    .venv/bin/python benchmarks/axes.py --seeds 1        # (a) with one seed per stage (quicker)

(a) ``axes/multiseed_stage``: the default study's (``experiments/configs.py: FASHION_MNIST``)
per-forget-set models for S seeds: original (``recipe_for("fashion_mnist", "cnn", epochs=6)``
on 10,000 stratified training images less the 10 % validation split), retrain on the retain
rows of forget set class 0 (seeds ``s + 1000``, as the study's ``retrain_seed``) and Random
Label (the ``fashion_mnist`` preset) from each seed's original. JAX: the library's own entry
points with ``strategy="auto"`` (:func:`jaxunlearn.seeds.train_seeds`,
:func:`jaxunlearn.unlearn.sweep.unlearn_seeds`); PyTorch: ``torch_axes.py``, a loop over the
seeds doing the same work with ``torch_models.SmallCNN``. Both sides read one npz written
here. Each side is one process; the stages run interleaved (JAX stage, PyTorch stage, next
stage with the order swapped), each stage once per side, compilation included (a study pays
it: every library call builds and jits its step anew). Test accuracies are computed after
each stage, outside the timed region.

(b) ``sweep/unlearn_10_classes_library``: :func:`jaxunlearn.unlearn.sweep.sweep_forget_sets`
of ``random_label`` (``digits`` preset) on the digits MLP over the 10 single-class forget sets
(unequal sizes, padded with validity masks by ``make_problems``), ``strategy="vmap"`` vs
``"loop"`` in one process: one warm-up call each, then timed calls interleaved with the order
rotating; medians. The call includes the per-forget-set output-accuracy evaluation.

``ratio`` of (a) = PyTorch / JAX wall time of the whole stage; of (b) = loop / vmap. The
load average (``uptime``) before and after is stored with each row.
"""

from __future__ import annotations

import argparse
import datetime
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
TORCH_PY = HERE / ".torch-venv" / "bin" / "python"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

STAGES = ("original", "retrain", "random_label")
FORGET_CLASS = 0
RETRAIN_SEED_OFFSET = 1000  # experiments/study.py: retrain_seed(s, 0) = s + 1000


# ----------------------------------------------------------------------------- shared data

def write_stage_npz(path) -> dict:
    """The study's Fashion-MNIST split (max_train 10,000, 10 % validation) as one npz."""
    import numpy as np
    from experiments.configs import FASHION_MNIST as C
    from jaxunlearn.data import load_dataset
    ds = load_dataset(C.dataset, max_train=C.max_train)
    np.savez(path, train_images=ds.train_images, train_labels=ds.train_labels, val_images=ds.val_images,
             val_labels=ds.val_labels, test_images=ds.test_images, test_labels=ds.test_labels,
             mean=np.asarray(ds.mean, np.float32), std=np.asarray(ds.std, np.float32))
    return {"num_train": int(len(ds.train_labels)), "num_val": int(len(ds.val_labels)),
            "num_test": int(len(ds.test_labels))}


def dataset_from_npz(path, name):
    import numpy as np
    from jaxunlearn.data import NUM_CLASSES, Dataset
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    return Dataset(name, d["train_images"], d["train_labels"], d["val_images"], d["val_labels"],
                   d["test_images"], d["test_labels"], NUM_CLASSES[name],
                   tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))


# ----------------------------------------------------------------------------- (a) JAX side

class JaxStage:
    """The library's multi-seed original / retrain / Random Label stage (serves common.serve)."""

    def __init__(self, a):
        import jax
        from experiments.configs import FASHION_MNIST as C
        from jaxunlearn import runs, strategy as strategy_lib
        from jaxunlearn.data import forget_split, parse_forget
        from jaxunlearn.unlearn import get_method, presets
        from jaxunlearn.unlearn.core import make_problem
        self.jax = jax
        self.ds = ds = dataset_from_npz(a.data, C.dataset)
        self.seeds = list(range(a.seeds))
        self.recipe = runs.recipe_for(C.dataset, C.model, epochs=a.epochs or C.train_epochs)
        self.retrain_recipe = runs.recipe_for(C.dataset, C.model, epochs=a.epochs or C.retrain_epochs or C.train_epochs)
        self.spec = parse_forget(str(FORGET_CLASS), ds.num_classes)
        self.split = forget_split(ds, self.spec)
        self.problem = make_problem(ds, self.spec)
        self.method = get_method("random_label")
        self.hparams, self.settings, self.preset = presets.resolve(self.method, C.dataset)
        self.model = C.model
        # The "auto" strategies' measurements (cached per model / batch / run count, as in a
        # study's first call): made here, untimed, and recorded.
        net = runs.make_net(ds, C.model)
        params, _ = net.init(jax.random.key(0), ds.image_shape)
        t0 = time.perf_counter()
        self.plans = {
            "train": strategy_lib.choose(net, params, ds.image_shape, self.recipe.batch_size, len(self.seeds)),
            "random_label": strategy_lib.choose(net, params, ds.image_shape, self.settings.batch_size,
                                                len(self.seeds), traceable=self.method.traceable)}
        if a.plan_seeds and a.plan_seeds != len(self.seeds):  # what "auto" picks for the study's seed count
            self.plans[f"train@{a.plan_seeds}_seeds"] = strategy_lib.choose(
                net, params, ds.image_shape, self.recipe.batch_size, a.plan_seeds)
            self.plans[f"random_label@{a.plan_seeds}_seeds"] = strategy_lib.choose(
                net, params, ds.image_shape, self.settings.batch_size, a.plan_seeds, traceable=self.method.traceable)
        self.plan_s = time.perf_counter() - t0
        self.states, self.info, self.net = {}, {}, None
        self.configs = list(STAGES)
        # seconds JAX spends tracing / lowering / compiling (jax.monitoring duration events), per stage
        self.compile_s, self._events = {}, {}

        def listen(event, duration, **kw):
            if "compil" in event or "lower" in event or "trac" in event:
                self._events[event] = self._events.get(event, 0.0) + duration

        jax.monitoring.register_event_duration_secs_listener(listen)

    def run(self, stage):
        from jaxunlearn import seeds as seeds_lib
        from jaxunlearn.unlearn import sweep
        before = dict(self._events)
        if stage == "original":
            self.net, st, info = seeds_lib.train_seeds(self.ds, self.model, self.recipe, self.seeds, strategy="auto")
        elif stage == "retrain":
            _, st, info = seeds_lib.train_seeds(self.ds, self.model, self.retrain_recipe,
                                                [s + RETRAIN_SEED_OFFSET for s in self.seeds],
                                                train_index=self.split.train_retain, strategy="auto")
        else:
            out = sweep.unlearn_seeds(self.method, self.seeds, self.net, self.states["original"], self.problem,
                                      self.hparams, self.settings, strategy="auto")
            st = out.pop("states")
            info = out
        self.jax.block_until_ready([s.params for s in st])
        self.states[stage] = st
        self.info[stage] = {k: info.get(k) for k in ("strategy", "strategy_reason", "measured")}
        self.compile_s[stage] = {k: v - before.get(k, 0.0) for k, v in self._events.items() if v - before.get(k, 0.0) > 0}

    def finish(self):
        import jax.numpy as jnp
        import numpy as np
        from jaxunlearn import train
        predict = train.make_predict(self.net)
        x, y = jnp.asarray(self.ds.test_images), self.ds.test_labels
        forget = np.isin(y, [FORGET_CLASS])
        acc = {}
        for stage, states in self.states.items():
            rows = []
            for s in states:
                logits, _ = predict(s.params, s.batch_stats, x)
                pred = np.asarray(jnp.argmax(logits, -1))
                rows.append({"test": float(np.mean(pred == y)), "test_retain": float(np.mean(pred[~forget] == y[~forget])),
                             "test_forget": float(np.mean(pred[forget] == y[forget]))})
            acc[stage] = rows
        import jax
        return {"framework": "jax", "version": jax.__version__, "backend": jax.default_backend(),
                "seeds": self.seeds, "accuracy": acc, "strategies": self.info, "compile_events_s": self.compile_s, "plans_before_timing": self.plans,
                "plan_measure_s": self.plan_s, "rl_hparams": {k: float(v) for k, v in self.hparams.items()},
                "rl_settings": {"epochs": self.settings.epochs, "batch_size": self.settings.batch_size,
                                "optimizer": self.settings.optimizer, "momentum": self.settings.momentum,
                                "nesterov": self.settings.nesterov, "weight_decay": self.settings.weight_decay,
                                "schedule": self.settings.schedule, "options": dict(self.settings.options)},
                "rl_preset": self.preset, "recipe": self.recipe.__dict__, "retrain_recipe": self.retrain_recipe.__dict__,
                "xla_flags": os.environ.get("XLA_FLAGS", "")}


# ----------------------------------------------------------------------------- (b) sweep

def sweep_worker(a) -> dict:
    """One process: train the digits MLP, then time sweep_forget_sets vmap vs loop interleaved."""
    import jax
    import numpy as np
    from jaxunlearn import runs
    from jaxunlearn.data import load_dataset
    from jaxunlearn.unlearn import get_method, presets, sweep
    ds = load_dataset("digits")
    t0 = time.perf_counter()
    net, state, _ = runs.train_model(ds, "mlp", runs.recipe_for("digits", "mlp"), 0, progress=False)
    original_s = time.perf_counter() - t0
    original_acc = runs.accuracy_of(net, state, ds.test_images, ds.test_labels)
    method = get_method("random_label")
    hparams, settings, preset = presets.resolve(method, "digits")
    if a.sweep_epochs:
        settings = settings.replace(epochs=a.sweep_epochs)
    specs = [[c] for c in range(ds.num_classes)]
    key = jax.random.key(0)
    configs = ["vmap", "loop"]
    out, times, cpu = {}, {c: [] for c in configs}, {c: [] for c in configs}
    warm = {}

    def call(cfg):
        c0, w0 = time.process_time(), time.perf_counter()
        r = sweep.sweep_forget_sets(method, key, net, state, ds, specs, hparams, settings, strategy=cfg)
        return r, time.perf_counter() - w0, time.process_time() - c0

    for cfg in configs:
        out[cfg], warm[cfg], _ = call(cfg)
    for r in range(a.sweep_repeats):
        for cfg in configs[r % 2:] + configs[:r % 2]:
            res, w, c = call(cfg)
            times[cfg].append(w)
            cpu[cfg].append(c)
    sizes = [int(np.sum(ds.train_labels == c)) for c in range(ds.num_classes)]
    acc = {c: {"forget_accuracy": out[c]["forget_accuracy"].tolist(),
               "retain_accuracy": out[c]["retain_accuracy"].tolist()} for c in configs}
    diff = {k: float(np.max(np.abs(out["vmap"][k] - out["loop"][k]))) for k in ("forget_accuracy", "retain_accuracy")}
    return {"framework": "jax", "version": jax.__version__, "backend": jax.default_backend(),
            "num_train": int(len(ds.train_labels)), "forget_set_sizes": sizes, "original_test_acc": original_acc,
            "original_train_s": original_s, "warmup_s": warm, "timings": {
                c: {**common.summarize(times[c]), "cpu_median_s": statistics.median(cpu[c]),
                    "cores_busy": sum(cpu[c]) / sum(times[c])} for c in configs},
            "after_unlearning": acc, "max_abs_diff_vmap_loop": diff, "strategy_reported": {
                c: out[c]["strategy"] for c in configs},
            "rl_hparams": {k: float(v) for k, v in hparams.items()}, "rl_preset": preset,
            "rl_settings": {"epochs": settings.epochs, "batch_size": settings.batch_size},
            "peak_rss_mib": common.peak_rss_mib()}


# ----------------------------------------------------------------------------- runner

def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def side_figure(side, stage_names, command):
    """Row figures of one side of (a): the whole stage is the sum of its stages' single runs."""
    if side.result is None:
        return {"error": (side.error or "no result")[-1500:], "command": command}
    tm = side.result["timings"]
    total = sum(tm[s]["median_s"] for s in stage_names)
    cpu_total = sum(tm[s]["cpu_median_s"] for s in stage_names)
    res = side.result
    return {"config": res.get("config_label", "default"), "median_s": total, "min_s": total, "max_s": total,
            "spread_pct": 0.0, "runs": 1, "samples_s": [total], "cpu_median_s": cpu_total,
            "cores_busy": cpu_total / total if total else None, "peak_rss_mib": res["peak_rss_mib"],
            "version": res.get("version"), "command": command,
            "stages_s": {s: tm[s]["median_s"] for s in stage_names},
            "stages_cpu_s": {s: tm[s]["cpu_median_s"] for s in stage_names},
            "details": {k: res[k] for k in ("seeds", "accuracy", "strategies", "plans_before_timing", "plan_measure_s",
                                            "rl_hparams", "rl_settings", "rl_preset", "recipe", "retrain_recipe",
                                            "xla_flags", "threads", "best_epochs", "compile_events_s", "what", "setup_and_warmup_s", "backend")
                        if k in res}}


def run_stage(a, npz, log_dir, date, command):
    from run import Side, rel_command  # the main runner's subprocess protocol
    jargv = [sys.executable, str(HERE / "axes.py"), "jax-stage", "--data", npz, "--seeds", str(a.seeds),
             "--plan-seeds", str(a.plan_seeds)]
    targv = [str(TORCH_PY), str(HERE / "torch_axes.py"), "--data", npz, "--seeds", str(a.seeds)]
    if a.epochs:
        jargv += ["--epochs", str(a.epochs)]
        targv += ["--epochs", str(a.epochs)]
    if a.torch_threads:
        targv += ["--threads", str(a.torch_threads)]
    up0 = uptime()
    t0 = time.perf_counter()
    sides = [Side("axes-stage:jax", "jax", jargv, log_dir, 0), Side("axes-stage:torch", "torch", targv, log_dir, 1)]
    for s in sides:
        s.header = s.expect("READY")
    order = []
    for i, stage in enumerate(STAGES):
        for s in (sides if i % 2 == 0 else sides[::-1]):
            s.send(f"run {stage}")
            t = s.expect("TIME")
            t["round"] = 0
            s.rounds.append(t)
            order.append(f"{s.framework}:{stage}")
            print(f"  {s.framework:5s} {stage:13s} {t['wall_s']:7.1f} s  (load {os.getloadavg()[0]:.1f})", flush=True)
    for s in sides:
        s.send("done")
        s.result = s.expect("RESULT")
        s.close()
    wall = time.perf_counter() - t0
    up1 = uptime()
    placeholder = lambda argv: rel_command(argv).replace(rel_command([npz]), "<stage npz written by axes.py>")
    jax = side_figure(sides[0], STAGES, placeholder(jargv))
    torch = side_figure(sides[1], STAGES, placeholder(targv))
    jax["config"] = "auto: " + "/".join(f"{k} {v['strategy']}" for k, v in jax["details"]["strategies"].items())
    torch["config"] = f"t{sides[1].result.get('threads')}"
    ratio = torch["median_s"] / jax["median_s"]
    per_stage = {s: torch["stages_s"][s] / jax["stages_s"][s] for s in STAGES}
    ja, ta = jax["details"]["accuracy"], torch["details"]["accuracy"]
    gaps = {}
    for stage in STAGES:
        for k in ("test", "test_retain", "test_forget"):
            jm = statistics.mean(r[k] for r in ja[stage])
            tmn = statistics.mean(r[k] for r in ta[stage])
            gaps[f"{stage}/{k}"] = {"jax_mean": jm, "torch_mean": tmn, "jax_minus_torch": jm - tmn}
    row = {"name": "axes/multiseed_stage", "unit": "s", "date": date, "command": command,
            "jax": jax, "torch": torch, "wall_s": wall, "ratio": ratio,
            "ratio_paired": {"median": ratio, "min": min(per_stage.values()), "max": max(per_stage.values()),
                             "rounds": 1, "what": "min/max: per-stage ratios"},
            "ratio_per_stage": per_stage, "accuracy_mean_over_seeds": gaps,
            "peak_rss_mib": {"jax": jax.get("peak_rss_mib"), "torch": torch.get("peak_rss_mib")},
            "what": (f"{a.seeds} seeds x (original, retrain without class {FORGET_CLASS}, random_label "
                     "from each original) on the default study config (fashion_mnist CNN, 9,000 training images, "
                     "6 epochs each); one run per stage per side, stages interleaved in the order "
                     + ", ".join(order) + "; compilation included"),
            "uptime_before": up0, "uptime_after": up1, "machine": common.machine()}
    add_estimate(row, a.seeds, a.plan_seeds)
    return row


def add_estimate(row: dict, seeds: int, study_seeds: int) -> None:
    """Fewer seeds timed than the study runs: per-seed time x ``study_seeds`` as the estimate.

    Sound only where the library's auto strategy loops at ``study_seeds`` (then the study's
    stage is ``study_seeds`` such runs one after another); the plan is recorded beside it.
    """
    if seeds >= study_seeds:
        return
    plans = row["jax"]["details"]["plans_before_timing"]
    loops = all(plans.get(f"{k}@{study_seeds}_seeds", {}).get("strategy") == "loop" for k in ("train", "random_label"))
    row[f"estimate_{study_seeds}_seeds_s"] = {
        "jax": row["jax"]["median_s"] * study_seeds / seeds, "torch": row["torch"]["median_s"] * study_seeds / seeds,
        "how": f"per-seed time x {study_seeds} (timed {seeds} seed(s) per stage per side); the library's auto "
               f"strategy at {study_seeds} seeds is " + ("loop for both, so its stage is that many runs in turn"
                                                         if loops else "not loop: the estimate is a bound only")}


def run_sweep(a, log_dir, date, command):
    argv = [sys.executable, str(HERE / "axes.py"), "jax-sweep", "--sweep-repeats", str(a.sweep_repeats)]
    if a.sweep_epochs:
        argv += ["--sweep-epochs", str(a.sweep_epochs)]
    from run import rel_command
    up0 = uptime()
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    up1 = uptime()
    (pathlib.Path(log_dir) / "axes-sweep.log").write_text(p.stderr)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if p.returncode or line is None:
        raise RuntimeError(f"sweep worker failed ({p.returncode}):\n{p.stderr[-2000:]}")
    res = json.loads(line[len("RESULT "):])
    tm = res.pop("timings")

    def fig(cfg):
        t = tm[cfg]
        return {"config": cfg, **{k: t[k] for k in ("median_s", "min_s", "max_s", "spread_pct", "runs", "samples_s",
                                                     "cpu_median_s", "cores_busy")},
                "peak_rss_mib": res["peak_rss_mib"], "version": res["version"], "command": rel_command(argv),
                "warmup_s": res["warmup_s"][cfg]}

    vm, lp = fig("vmap"), fig("loop")
    vm["details"] = {k: res[k] for k in ("num_train", "forget_set_sizes", "original_test_acc", "after_unlearning",
                                         "max_abs_diff_vmap_loop", "strategy_reported", "rl_hparams", "rl_preset",
                                         "rl_settings", "backend")}
    vm["details"]["what"] = ("jaxunlearn.unlearn.sweep.sweep_forget_sets(random_label, digits MLP, 10 single-class "
                             "forget sets padded by make_problems), strategy='vmap' vs 'loop', one process, one "
                             "warm-up call each, timed calls interleaved (order rotating); each call includes "
                             "building/jitting the run and the per-set output-accuracy evaluation")
    rounds = list(zip(tm["loop"]["samples_s"], tm["vmap"]["samples_s"]))
    pr = sorted(l / v for l, v in rounds)
    return {"name": "sweep/unlearn_10_classes_library", "unit": "s", "date": date, "command": command,
            "jax": vm, "torch": {"note": "no PyTorch side: this row compares the library's strategies; "
                                         "the ratio is loop / vmap time"},
            "variants": {"jax: strategy='loop' (ratio = loop / vmap time)": {**lp, "ratio": lp["median_s"] / vm["median_s"]}},
            "wall_s": wall, "ratio": lp["median_s"] / vm["median_s"], "ratio_what": "loop median / vmap median",
            "ratio_paired": {"median": statistics.median(pr), "min": pr[0], "max": pr[-1], "rounds": len(pr)},
            "peak_rss_mib": {"jax": res["peak_rss_mib"], "torch": None},
            "uptime_before": up0, "uptime_after": up1, "machine": common.machine()}


def append_rows(path: pathlib.Path, rows: list[dict]) -> None:
    """Appends (or replaces, by name) ``rows`` in results.json, re-read right before writing."""
    old = json.loads(path.read_text()) if path.exists() else []
    names = {r["name"] for r in rows}
    merged = [e for e in old if e["name"] not in names] + rows
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=1) + "\n")
    os.replace(tmp, path)


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("jax-stage", "jax-sweep"):
        p = argparse.ArgumentParser()
        p.add_argument("worker")
        p.add_argument("--data")
        p.add_argument("--seeds", type=int, default=3)
        p.add_argument("--epochs", type=int, default=0, help="smoke tests only: override the 6 epochs")
        p.add_argument("--plan-seeds", type=int, default=3, help="also record the auto strategy for this many seeds")
        p.add_argument("--sweep-repeats", type=int, default=3)
        p.add_argument("--sweep-epochs", type=int, default=0)
        p.add_argument("--warmup", type=int, default=0)
        p.add_argument("--repeats", type=int, default=0)
        a = p.parse_args()
        if a.worker == "jax-sweep":
            print("RESULT " + json.dumps(sweep_worker(a)), flush=True)
            return
        import jax
        bench = JaxStage(a)
        common.serve(bench, a, {"framework": "jax", "version": jax.__version__})
        return
    p = argparse.ArgumentParser()
    p.add_argument("--only", choices=["stage", "sweep"], default=None)
    p.add_argument("--seeds", type=int, default=3, help="(a): seeds per stage")
    p.add_argument("--plan-seeds", type=int, default=3, help="(a): the study's seed count (auto plan, estimate)")
    p.add_argument("--epochs", type=int, default=0, help="(a) smoke tests only: override the study's 6 epochs")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="(a): torch.set_num_threads (0: PyTorch's default; 1 measured 3-4x faster than 2 on the "
                        "loaded 2-core machine)")
    p.add_argument("--sweep-repeats", type=int, default=3, help="(b): timed calls per strategy")
    p.add_argument("--sweep-epochs", type=int, default=0, help="(b): override the preset's epochs (0: preset)")
    p.add_argument("--out", default=str(HERE / "results.json"))
    a = p.parse_args()
    from run import rel_command
    command = rel_command([sys.executable, *sys.argv])
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log_dir = pathlib.Path(tempfile.gettempdir()) / "jaxunlearn-benchmark-logs"
    log_dir.mkdir(exist_ok=True)
    rows = []
    if a.only in (None, "stage"):
        if not TORCH_PY.exists():
            sys.exit(f"{TORCH_PY} is missing: run bash benchmarks/setup_torch.sh first")
        with tempfile.TemporaryDirectory() as tmp:
            npz = os.path.join(tmp, "stage.npz")
            sizes = write_stage_npz(npz)
            print(f"(a) multi-seed stage, {a.seeds} seeds, {sizes}", flush=True)
            rows.append(run_stage(a, npz, log_dir, date, command))
            rows[-1]["data"] = sizes
        r = rows[-1]
        print(f"  JAX {r['jax']['median_s']:.1f} s, PyTorch {r['torch']['median_s']:.1f} s, ratio {r['ratio']:.2f}")
    if a.only in (None, "sweep"):
        print("(b) sweep_forget_sets vmap vs loop ...", flush=True)
        rows.append(run_sweep(a, log_dir, date, command))
        r = rows[-1]
        print(f"  vmap {r['jax']['median_s']:.2f} s, loop {r['variants'][next(iter(r['variants']))]['median_s']:.2f} s, "
              f"ratio loop/vmap {r['ratio']:.2f}")
    append_rows(pathlib.Path(a.out), rows)
    print(json.dumps(rows, indent=1)[:6000])
    print(f"appended {[r['name'] for r in rows]} to {a.out}")


if __name__ == "__main__":
    main()
