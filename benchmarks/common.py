"""Helpers shared by both benchmark sides. Imports neither JAX nor PyTorch.

Each side (``jax_side.py`` in the project venv, ``torch_side.py`` in
``benchmarks/.torch-venv``) is one subprocess per benchmark, so ``peak_rss_mib`` is the peak
resident memory of that side for that benchmark alone.

Protocol between ``run.py`` and a side (so that timed runs of the two sides can be
interleaved on a shared, noisy machine): the side sets up and warms up every configuration,
prints ``READY {json}``, then reads commands from stdin: ``run CONFIG`` does one timed run and
prints ``TIME {"config", "wall_s", "cpu_s"}``; ``done`` prints ``RESULT {json}`` and exits.
With ``--repeats N`` a side runs standalone (N timed runs per configuration, no stdin).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

# Sizes shared by both sides (one place, so the two sides cannot drift apart).
TRAIN = {
    "cnn": {"image_shape": (28, 28, 1), "num_train": 4096, "mean": (0.2860,), "std": (0.3530,)},
    "resnet18": {"image_shape": (32, 32, 3), "num_train": 1024,
                 "mean": (0.491, 0.482, 0.447), "std": (0.247, 0.243, 0.262)},
}
def num_train(model: str, steps: int) -> int:
    """Dataset size of a train-step benchmark: at least one epoch of ``steps`` batches."""
    return max(TRAIN[model]["num_train"], steps * BATCH)


OPTIM = {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
BATCH = 128
EVAL = {"num_train": 60_000, "num_test": 10_000, "dim": 512, "num_classes": 10, "epochs": 20,
        "batch": 128, "lr": 0.01, "momentum": 0.9, "holdout": 0.1, "mean_scale": 0.12}
MLP_WIDTHS = (256, 128)
SWEEP = {"seeds": 8, "seed_epochs": 30, "lr": 0.05, "original_epochs": 30,
         "unlearn_epochs": 10, "unlearn_lr": 0.01, "batch": 128}


# ----------------------------------------------------------------------------- data

def make_features(seed: int = 0):
    """Gaussian class clusters: ``x = m_y + N(0, I)``, ``m_c ~ N(0, s^2 I)`` (numpy, float32).

    Returns ``train_x [60000, 512], train_y, test_x [10000, 512], test_y`` (balanced classes).
    """
    import numpy as np
    e = EVAL
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, e["mean_scale"], (e["num_classes"], e["dim"])).astype(np.float32)
    out = []
    for n in (e["num_train"], e["num_test"]):
        y = (np.arange(n) % e["num_classes"]).astype(np.int32)
        y = y[rng.permutation(n)]
        x = means[y] + rng.standard_normal((n, e["dim"]), dtype=np.float32)
        out += [x, y]
    return tuple(out)


def load_digits_npz(path: str):
    """The digits split written by run.py (from ``jaxunlearn.data.load_dataset('digits')``)."""
    import numpy as np
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------- measuring

def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def summarize(samples: list[float]) -> dict:
    """Median and spread (min, max, (max - min) / median) of timed runs in seconds."""
    s = sorted(samples)
    med = statistics.median(s)
    return {"median_s": med, "min_s": s[0], "max_s": s[-1],
            "spread_pct": 100.0 * (s[-1] - s[0]) / med if med > 0 else None,
            "runs": len(s), "samples_s": samples}


def machine() -> dict:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "loadavg": load}


def base_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("bench", choices=["train_step", "peak_flops", "eval", "sweep_seeds", "sweep_unlearn"])
    p.add_argument("--model", default="cnn")
    p.add_argument("--steps", type=int, default=5, help="train steps per timed run")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per configuration")
    p.add_argument("--repeats", type=int, default=0,
                   help="standalone: timed runs per configuration (0: serve run.py on stdin)")
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--digits", default=None, help="npz with the digits split (sweeps)")
    return p


def serve(bench, args, header: dict) -> None:
    """Runs the protocol described in the module docstring.

    ``bench`` has ``configs`` (list of labels), ``run(config)`` (one synchronous timed unit of
    work) and ``finish() -> dict``.
    """
    t0 = time.perf_counter()
    for cfg in bench.configs:
        for _ in range(args.warmup):
            bench.run(cfg)
    header = {**header, "configs": bench.configs, "setup_and_warmup_s": time.perf_counter() - t0}
    times: dict[str, list] = {c: [] for c in bench.configs}
    cpu: dict[str, list] = {c: [] for c in bench.configs}

    def timed(cfg):
        c0, w0 = time.process_time(), time.perf_counter()
        bench.run(cfg)
        w, c = time.perf_counter() - w0, time.process_time() - c0
        times[cfg].append(w)
        cpu[cfg].append(c)
        return {"config": cfg, "wall_s": w, "cpu_s": c}

    if args.repeats:
        for _ in range(args.repeats):
            for cfg in bench.configs:
                timed(cfg)
    else:
        print("READY " + json.dumps(header), flush=True)
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "run":
                print("TIME " + json.dumps(timed(parts[1])), flush=True)
            elif parts[0] == "done":
                break
    result = {**header, **bench.finish(), "peak_rss_mib": peak_rss_mib(), "machine": machine(),
              "timings": {c: {**summarize(times[c]),
                              "cpu_median_s": statistics.median(cpu[c]) if cpu[c] else None,
                              "cores_busy": (sum(cpu[c]) / sum(times[c])) if times[c] else None}
                          for c in bench.configs if times[c]}}
    print("RESULT " + json.dumps(result), flush=True)
