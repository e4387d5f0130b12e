"""Times ``jaxunlearn analyze`` end to end on 60,000 x 512 features (issue: under a minute).

    .venv/bin/python benchmarks/analyze_cli.py [--repeats 3]

Writes the features of ``common.make_features`` (with a random classifier and forget class 0)
to a temporary ``.npz``, runs the real command in a fresh process ``--repeats`` times (JAX
start-up and compilation included, as a user sees it) and writes ``analyze_cli.json``: the
median / min / max wall time, the command, and the metrics of the last run. There is no
PyTorch side: this is a budget, not a comparison.
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

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402

EXE = str(pathlib.Path(sys.executable).parent / "jaxunlearn")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    tx, ty, vx, vy = common.make_features()
    k, d = common.EVAL["num_classes"], common.EVAL["dim"]
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "features.npz")
        np.savez(npz, train_features=tx, train_labels=ty, test_features=vx, test_labels=vy,
                 weights=rng.normal(size=(k, d)).astype(np.float32), bias=np.zeros(k, np.float32),
                 forget_classes=np.array([0]))
        walls = []
        for r in range(a.repeats):
            out = os.path.join(tmp, f"metrics{r}.json")
            t0 = time.perf_counter()
            proc = subprocess.run([EXE, "analyze", npz, "--json", out], capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if proc.returncode:
                sys.exit(f"analyze failed: {proc.stderr}")
        metrics = json.loads(pathlib.Path(out).read_text())
    result = {"name": "analyze_cli_60k_x_512", "date": datetime.datetime.now(datetime.timezone.utc)
              .strftime("%Y-%m-%d %H:%M UTC"), "command": f"{pathlib.Path(sys.executable).name} benchmarks/analyze_cli.py "
              f"--repeats {a.repeats}", "what": f"jaxunlearn analyze FEATURES.npz --json OUT, fresh process each run; "
              f"{len(ty)} x {d} train and {len(vy)} test features, {k} classes, weights and bias given, forget class 0",
              "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls), "walls_s": walls,
              "metrics_runtime_s": metrics.get("runtime_s"),
              "lp": metrics["lp"], "ncc": metrics["ncc"], "knn": metrics["knn"], "nc1": metrics["collapse"]["nc1"],
              "machine": common.machine()}
    (HERE / "analyze_cli.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"jaxunlearn analyze, 60k x 512: median {result['median_s']:.1f} s "
          f"(min {result['min_s']:.1f}, max {result['max_s']:.1f}); wrote {HERE / 'analyze_cli.json'}")


if __name__ == "__main__":
    main()
