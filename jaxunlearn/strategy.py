"""How to run S whole runs at once (seeds, forget sets): chosen by measurement on the backend.

Three strategies compute the same models (up to float summation order):

* ``"vmap"``: one jitted program, ``jax.vmap`` over the S runs of the pure whole run;
* ``"devices"``: the same program with the run axis sharded over the devices (each device
  computes its share of the runs);
* ``"loop"``: one run after another through the host driver (one jitted step per call on CPU).

Which is fastest is a fact of the backend, not of the code: on this project's 2-core CPU a
vmapped conv net was slower than a loop (XLA:CPU batches grouped convolutions poorly and
``lax.scan`` over conv steps is itself slow there), while an MLP batched well. So
:func:`choose` *measures* it: a proxy of each strategy (a few training steps of the model,
``S`` runs vmapped inside ``lax.scan`` vs ``S`` runs of host-looped single steps), compiled,
run once to warm up, then timed. The measurement is cached per (backend, device kind, model
signature, batch, S) in memory and in ``$JAXUNLEARN_CACHE`` (default
``~/.cache/jaxunlearn/strategy.json``), and returned so callers record it in their run files.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp

from jaxunlearn import train
from jaxunlearn.state import Net

STRATEGIES = ("auto", "loop", "vmap", "devices")
_MEMORY: dict = {}


def _cache_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("JAXUNLEARN_CACHE", pathlib.Path.home() / ".cache" / "jaxunlearn")) \
        / "strategy.json"


PROXY_STEPS = 2  # two, not one: a one-trip lax.scan may be simplified away, and the pure run is a scan


def _signature(net: Net, params, batch_size: int, runs: int, image_shape) -> str:
    shapes = [tuple(x.shape) for x in jax.tree.leaves(params)]
    dev = jax.devices()[0]
    text = json.dumps([jax.default_backend(), getattr(dev, "device_kind", ""), jax.device_count(),
                       type(net.module).__name__, shapes, batch_size, runs, list(image_shape), jax.__version__,
                       PROXY_STEPS])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def measure(net: Net, image_shape, batch_size: int, runs: int, steps: int = PROXY_STEPS, reps: int = 2) -> dict:
    """Times ``runs`` copies of ``steps`` supervised train steps, vmapped vs looped.

    Returns ``{"vmap_s", "loop_s"}``: the best of ``reps`` timings after a warm-up call
    (compilation excluded), each averaged over enough calls to span at least 50 ms; a vmapped
    proxy whose first (compiled-ahead) call is over 20x the loop is timed by that call alone. The vmapped proxy is what the pure whole run executes
    (``lax.scan`` over steps, vmapped over runs); the loop proxy is what the host driver
    executes (a Python loop over one jitted step, for each run in turn).
    """
    cfg = train.OptimConfig(total_steps=steps)
    step = train.make_step(net, train.supervised_loss, cfg)
    key = jax.random.key(0)
    n = max(batch_size * steps, batch_size)
    data = {"images": jax.random.randint(key, (n, *image_shape), 0, 256).astype(jnp.uint8),
            "labels": jax.random.randint(key, (n,), 0, 2).astype(jnp.int32)}
    streams = {"train": jnp.arange(n, dtype=jnp.int32)}
    hp = {"lr": jnp.float32(1e-3)}
    epoch = train.Epoch(step, {"train": batch_size}, "train")
    keys = jax.random.split(key, runs)
    init = jax.vmap(lambda k: train.init_state(net, k, image_shape, cfg))(keys)

    @jax.jit
    def batched(states, keys):
        return jax.vmap(lambda s, k: epoch.run(s, k, data, streams, hp, {}, 0, 0, steps)[0])(states, keys)

    host = train.jit_runner(epoch, "host")
    singles = [jax.tree.map(lambda x, i=i: x[i], init) for i in range(runs)]

    def looped():
        return [host(s, k, data, streams, hp, {}, 0, 0, steps)[0] for s, k in zip(singles, keys)]

    def best(fn, reps=reps):
        jax.block_until_ready(fn())  # compile and warm up
        calls, times = 1, []
        while True:  # small models: repeat until one timing spans >= 50 ms, so noise stays small
            t = time.perf_counter()
            for _ in range(calls):
                jax.block_until_ready(fn())
            if time.perf_counter() - t >= 0.05 or calls >= 64:
                break
            calls *= 2
        for _ in range(reps):
            t = time.perf_counter()
            for _ in range(calls):
                jax.block_until_ready(fn())
            times.append((time.perf_counter() - t) / calls)
        return min(times)

    loop_s = best(looped)
    compiled = batched.lower(init, keys).compile()  # compiled ahead, so the first call is a timing
    t = time.perf_counter()
    jax.block_until_ready(compiled(init, keys))
    first = time.perf_counter() - t
    if first > 20 * loop_s:  # far slower: one (compile-free) timing decides, repeats would cost minutes
        return {"vmap_s": first, "loop_s": loop_s}
    return {"vmap_s": best(lambda: compiled(init, keys)), "loop_s": loop_s}


def choose(net: Net, params, image_shape, batch_size: int, runs: int, requested: str = "auto",
           traceable: bool = True) -> dict:
    """The strategy for ``runs`` whole runs of ``net`` and why: ``{"strategy", "reason", ...}``.

    Args:
      net, params: the model (``params`` for its signature).
      image_shape: ``(H, W, C)``.
      batch_size: the runs' batch size.
      runs: how many runs (seeds x forget sets).
      requested: ``"auto"`` (measure), or a strategy to use as it is.
      traceable: False for a method with a host-side step: only ``"loop"`` applies.

    Returns:
      ``{"strategy", "reason", "backend", "devices", "measured": {"vmap_s", "loop_s"} | None}``.

    Raises:
      ValueError: an unknown strategy, or vmap/devices asked for a host-side method.
    """
    if requested not in STRATEGIES:
        raise ValueError(f"unknown strategy {requested!r}; choose one of {', '.join(STRATEGIES)}")
    out = {"backend": jax.default_backend(), "devices": jax.device_count(), "measured": None}
    if not traceable:
        if requested in ("vmap", "devices"):
            raise ValueError(f"strategy {requested!r} needs a traceable method; use strategy 'loop'")
        return {**out, "strategy": "loop", "reason": "the method has a host-side step"}
    if requested != "auto":
        return {**out, "strategy": requested, "reason": "requested"}
    if runs < 2:
        return {**out, "strategy": "loop", "reason": "a single run"}
    sig = _signature(net, params, batch_size, runs, image_shape)
    measured = _MEMORY.get(sig)
    path = _cache_path()
    if measured is None:
        try:
            measured = json.loads(path.read_text()).get(sig)
        except (OSError, ValueError):
            measured = None
    if measured is None:
        measured = measure(net, image_shape, batch_size, runs)
        _MEMORY[sig] = measured
        try:
            disk = json.loads(path.read_text()) if path.is_file() else {}
            disk[sig] = measured
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(disk, indent=1))
        except (OSError, ValueError):
            pass  # a read-only home: the measurement is still used for this process
    _MEMORY[sig] = measured
    vmap_wins = measured["vmap_s"] < measured["loop_s"]
    several = jax.device_count() > 1 and jax.default_backend() != "cpu"
    strategy = ("devices" if several else "vmap") if vmap_wins else "loop"
    ratio = measured["loop_s"] / max(measured["vmap_s"], 1e-12)
    reason = (f"measured on {out['backend']}: {runs} runs of a {PROXY_STEPS}-step proxy took {measured['vmap_s']:.3f} s "
              f"vmapped vs {measured['loop_s']:.3f} s looped ({ratio:.2f}x)")
    if strategy == "devices":
        reason += f"; the run axis is sharded over {jax.device_count()} devices"
    return {**out, "strategy": strategy, "reason": reason, "measured": measured}


def tree_index(tree, i: int):
    """Leaf ``[i]`` of every leaf of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


def tree_stack(trees):
    """Stacks pytrees of equal structure on a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def pad_runs(count: int, num_devices: int) -> int:
    """Runs to add so ``count`` splits evenly over ``num_devices`` (the padding is dropped)."""
    return int(-count % max(num_devices, 1))

