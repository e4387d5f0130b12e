"""Interleaved A/B of the small-CNN train step under XLA:CPU fusion-flag variants, and PyTorch.

    .venv/bin/python benchmarks/cnn_xla_reduce.py [ROUNDS]

One ``run.py`` benchmark spec (``run.run_benchmark``: one serving process per side, timed runs
interleaved, the order rotating per round) over ``jax_side.py train_step --model cnn --steps 5``:
the library default, the same with YNNPACK also taking XLA's reductions (``+REDUCE``), and
with element-wise fusions as well (``+ELTWISE``), against PyTorch at 1 and 2 threads. Prints
the median img/s of each (the attempt ``attempts/cnn_xla_reduce`` in attempts.json).
"""

import statistics
import sys
import tempfile

import run

YNN = "--xla-flags=" + run.YNN_NO_CONV


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    spec = {"name": "attempts/cnn_xla_reduce", "bench": "train_step", "args": ["--model", "cnn", "--steps", "5"],
            "repeats": rounds, "unit": "img/s",
            "variants": {"ynn+REDUCE": [YNN + ",+REDUCE"], "ynn+REDUCE+ELTWISE": [YNN + ",+REDUCE,+ELTWISE"]}}
    with tempfile.TemporaryDirectory() as logs:
        sides, _ = run.run_benchmark(spec, "cpu", logs, warmup=1)
    images = 5 * 128
    medians = {}
    for s in sides:
        if s.error:
            print(f"{s.short}: failed ({s.error.splitlines()[0]})")
            continue
        for cfg in s.header["configs"]:
            walls = [t["wall_s"] for t in s.rounds if t["config"] == cfg]
            medians[s.short if s.framework == "jax" else f"torch {cfg}"] = statistics.median(walls)
    lib = medians.get("jax")
    for label, m in medians.items():
        print(f"{label:22s} median {m:.3f} s  {images / m:7.0f} img/s" + (f"  vs library {lib / m:.2f}x" if lib else ""))


if __name__ == "__main__":
    main()
