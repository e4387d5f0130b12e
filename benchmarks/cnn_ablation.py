"""Where the small CNN's one-device train step goes: variants timed in one JAX process.

    .venv/bin/python benchmarks/cnn_ablation.py [--rounds 8] [--steps 5]

Each variant is ``jax_side.TrainStep`` (the library's ``train.make_step`` in
``train.make_run_steps``, what ``jax_side.py train_step --model cnn`` times) on a ``SmallCNN``
whose max-pool or BatchNorm is swapped while the step is traced:

* ``library``: the model as it is (reshape + max pool with a custom VJP, Flax BatchNorm);
* ``pool=jnp.max``: the pool differentiated by JAX (``jnp.max``, ties share the gradient),
  the library's pool before 2026-11-29;
* ``pool=nn.max_pool``: Flax's ``nn.max_pool`` (reduce-window);
* ``no BatchNorm``: BatchNorm replaced by the identity (a diagnostic, not a model: its
  difference to ``library`` is what BatchNorm's forward and backward cost).

The timed runs of all variants are interleaved (round r runs each once), so machine load
hits them alike. Writes ``cnn_ablation.json`` (median img/s and range per variant, the
command, date and machine); ``render.py`` puts it in README.md. No PyTorch side.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import pathlib
import sys
import time
import types

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import common  # noqa: E402
import jax_side  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxunlearn.models import cnn  # noqa: E402


class _Identity(nn.Module):
    """Stands in for ``nn.BatchNorm(...)`` (same call signature, no parameters)."""

    use_running_average: bool = False
    momentum: float = 0.9

    def __call__(self, x):
        return x


def _jnp_max_pool(x):
    return jnp.max(cnn._pool_windows(x), axis=(-4, -2))


VARIANTS = {
    "library": {},
    "pool=jnp.max": {"max_pool_2x2": _jnp_max_pool},
    "pool=nn.max_pool": {"max_pool_2x2": lambda x: nn.max_pool(x, (2, 2), (2, 2))},
    "no BatchNorm": {"nn": types.SimpleNamespace(**{**vars(nn), "BatchNorm": _Identity})},
}


@contextlib.contextmanager
def patched(module, attrs):
    """Temporarily replaces module-level names (the model reads them when it is traced)."""
    old = {k: getattr(module, k) for k in attrs}
    for k, v in attrs.items():
        setattr(module, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(module, k, v)


#: Where ``main`` writes (``cnn_bn_variants.py`` points them elsewhere).
OUT_NAME = "cnn_ablation.json"
SCRIPT = "benchmarks/cnn_ablation.py"


def make_variant(attrs, steps):
    """``jax_side.TrainStep`` (the train-step benchmark's setting) traced with ``attrs`` patched
    into ``models/cnn.py``; returns its timed run."""
    args = types.SimpleNamespace(model="cnn", steps=steps, devices=1, own_loop=False, donate=False,
                                 loop=None)
    with patched(cnn, attrs):  # set-up and the first runs trace and compile with the variant
        bench = jax_side.TrainStep(args)
        bench.run(None)
        bench.run(None)
    return lambda: bench.run(None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    runs = {name: make_variant(attrs, a.steps) for name, attrs in VARIANTS.items()}
    samples = {name: [] for name in runs}
    for r in range(a.rounds):
        order = list(runs)[r % len(runs):] + list(runs)[:r % len(runs)]
        for name in order:
            t = time.perf_counter()
            runs[name]()
            samples[name].append(time.perf_counter() - t)
    imgs = a.steps * common.BATCH
    out = {"what": "small CNN train step (library loop, batch 128, one device), variants in one process",
           "command": f".venv/bin/python {SCRIPT} " + " ".join(sys.argv[1:]),
           "date": started, "machine": common.machine(), "steps_per_run": a.steps, "rounds": a.rounds,
           "variants": {name: {"img_s_median": imgs / float(np.median(s)), "img_s_min": imgs / max(s),
                               "img_s_max": imgs / min(s), "samples_s": s} for name, s in samples.items()}}
    (HERE / OUT_NAME).write_text(json.dumps(out, indent=1))
    base = out["variants"]["library"]["img_s_median"]
    for name, v in out["variants"].items():
        print(f"{name:18s} {v['img_s_median']:8.1f} img/s ({v['img_s_min']:.0f}-{v['img_s_max']:.0f})  "
              f"{v['img_s_median'] / base:.2f}x library")
    print(f"wrote {HERE / OUT_NAME}")


if __name__ == "__main__":
    main()
