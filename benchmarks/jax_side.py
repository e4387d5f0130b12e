"""JAX side of the benchmarks (project venv). One benchmark per process; see common.py for
the protocol with run.py. Standalone examples:

    .venv/bin/python benchmarks/jax_side.py train_step --model cnn --steps 5 --repeats 5
    .venv/bin/python benchmarks/jax_side.py train_step --model resnet18 --steps 1 --repeats 3 --patch conv,pool
    .venv/bin/python benchmarks/jax_side.py train_step --model cnn --devices 2 --repeats 5
    .venv/bin/python benchmarks/jax_side.py peak_flops --repeats 5
    .venv/bin/python benchmarks/jax_side.py eval --repeats 3
    .venv/bin/python benchmarks/jax_side.py sweep_seeds --digits digits.npz --repeats 3
    .venv/bin/python benchmarks/jax_side.py sweep_unlearn --digits digits.npz --repeats 3

Options read before JAX starts: ``--devices N`` (N virtual CPU devices, the batch sharded
over them), ``--xla-flags`` (appended to ``XLA_FLAGS``), ``--patch`` (benchmark-only drop-in
replacements from fastconv.py: ``pool`` = reshape max-pool, ``conv`` = GEMM weight gradient).
"""

from __future__ import annotations

import functools
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import common  # noqa: E402


def parse():
    p = common.base_parser()
    p.add_argument("--loop", default=None, help="library loop: host or scan (default: train.default_loop())")
    p.add_argument("--own-loop", action="store_true",
                   help="benchmark's own host loop (same gather and keys), needed for --donate")
    p.add_argument("--donate", action="store_true", help="with --own-loop: jit(donate_argnums=0)")
    p.add_argument("--devices", type=int, default=1, help="CPU devices; the batch is sharded over them")
    p.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS")
    p.add_argument("--patch", default="", help="comma list: pool, conv (see fastconv.py)")
    p.add_argument("--configs", default=None, help="sweeps: comma list of strategies to time")
    return p.parse_args()


# Run as a script: the options that must act before JAX starts. Imported (cnn_ablation.py reuses
# TrainStep): no options, JAX as the importer set it up.
ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None:
    _flags = [os.environ.get("XLA_FLAGS", ""), ARGS.xla_flags]
    if ARGS.devices > 1:
        _flags.append(f"--xla_force_host_platform_device_count={ARGS.devices}")
    os.environ["XLA_FLAGS"] = " ".join(f for f in _flags if f).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

if ARGS is not None and ARGS.patch:
    import fastconv  # noqa: E402
    if "conv" in ARGS.patch:
        fastconv.patch_flax_conv()
    if "pool" in ARGS.patch:
        fastconv.patch_flax_max_pool()

from jaxunlearn import train  # noqa: E402
from jaxunlearn.models import get_model  # noqa: E402
from jaxunlearn.state import Net  # noqa: E402


def block(x):
    return jax.block_until_ready(x)


def header(a) -> dict:
    return {"framework": "jax", "version": jax.__version__, "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "patch": a.patch, "bench": a.bench}


def sgd_config(schedule="constant") -> train.OptimConfig:
    return train.OptimConfig(optimizer="sgd", momentum=common.OPTIM["momentum"],
                             nesterov=common.OPTIM["nesterov"],
                             weight_decay=common.OPTIM["weight_decay"], schedule=schedule)


# ----------------------------------------------------------------------------- train step

class TrainStep:
    """``--steps`` library train steps (per-step in-jit gather from a uint8 dataset array)."""

    def __init__(self, a):
        self.a = a
        spec = common.TRAIN[a.model]
        net = Net(get_model(a.model, 10), spec["mean"], spec["std"])
        cfg = sgd_config()
        rng = np.random.default_rng(0)
        n = common.num_train(a.model, a.steps)
        data = {"images": jnp.asarray(rng.integers(0, 256, (n, *spec["image_shape"]), dtype=np.uint8)),
                "labels": jnp.asarray(rng.integers(0, 10, n, dtype=np.int32))}
        state = train.init_state(net, jax.random.key(0), spec["image_shape"], cfg)
        step = train.make_step(net, train.supervised_loss, cfg)
        self.flops = step_flops(step, state, data)
        streams = {"train": jnp.arange(n, dtype=jnp.int32)}
        sharding = None
        if a.devices > 1:
            from jaxunlearn import parallel
            mesh = parallel.make_mesh(a.devices)
            sharding = parallel.batch_sharding(mesh)
            state, data, streams = parallel.replicate((state, data, streams), mesh)
        self.spe = n // common.BATCH
        if a.own_loop or a.donate:
            self.run_steps = own_run_steps(step, sharding, block_each=a.devices > 1, donate=a.donate)
            self.how = f"own host loop (donate={a.donate}, block each step={a.devices > 1})"
        else:
            self.run_steps = train.make_run_steps(step, {"train": common.BATCH}, "train",
                                                  batch_sharding=sharding, loop=a.loop)
            self.how = f"train.make_run_steps(loop={a.loop or train.default_loop()!r})"
        self.state, self.data, self.streams = state, data, streams
        self.hparams = {"lr": jnp.float32(common.OPTIM["lr"])}
        self.key = jax.random.key(1)
        self.calls = 0
        self.configs = ["default"]

    def run(self, cfg):
        a = self.a
        epoch, start = divmod(self.calls * a.steps, self.spe)
        start = min(start, self.spe - a.steps)
        self.state, m = self.run_steps(self.state, self.key, self.data, self.streams, self.hparams, {},
                                       epoch, start, a.steps)
        block((self.state, m))
        self.calls += 1

    def finish(self):
        imgs = self.a.steps * common.BATCH
        return {"model": self.a.model, "batch": common.BATCH, "steps_per_run": self.a.steps,
                "images_per_run": imgs, "loop": self.how, "flops_per_step": self.flops,
                "flops_per_image": self.flops / common.BATCH if self.flops else None,
                "num_params": int(sum(x.size for x in jax.tree.leaves(self.state.params))),
                "final_step": int(self.state.step)}


def own_run_steps(step, sharding, block_each, donate):
    """Same batches and keys as train.make_run_steps' host loop; optional donation of the state."""

    def epoch_perm(key, idx, epoch):
        ek = jax.random.fold_in(key, epoch)
        return idx[jax.random.permutation(jax.random.fold_in(ek, 0), idx.shape[0])]

    def one_step(state, key, data, perm, hparams, aux, t):
        pos = (t * common.BATCH + jnp.arange(common.BATCH)) % perm.shape[0]
        b = {k: v[perm[pos]] for k, v in data.items()}
        if sharding is not None:
            b = jax.lax.with_sharding_constraint(b, sharding)
        step_key = jax.random.fold_in(jax.random.fold_in(key, 1_000_003), state.step)
        return step(state, {"train": b}, step_key, hparams, aux)

    jit_perm = jax.jit(epoch_perm)
    jit_step = jax.jit(one_step, donate_argnums=(0,) if donate else ())

    def run(state, key, data, streams, hparams, aux, epoch, start, num):
        perm = jit_perm(key, streams["train"], epoch)
        ms = []
        for t in range(start, start + num):
            state, m = jit_step(state, key, data, perm, hparams, aux, t)
            if block_each:
                block(state)
            ms.append(m)
        return state, ms

    return run


def step_flops(step, state, data):
    """FLOPs of one compiled train step (XLA cost analysis), or None."""
    batch = {"train": {k: v[:common.BATCH] for k, v in data.items()}}
    try:
        compiled = jax.jit(step).lower(state, batch, jax.random.key(0), {"lr": jnp.float32(0.1)},
                                       {}).compile()
        ca = compiled.cost_analysis()
        if isinstance(ca, (list, tuple)):
            ca = ca[0]
        return float(ca.get("flops", 0.0)) or None
    except Exception as e:  # noqa: BLE001 - cost analysis is best effort
        print("cost_analysis failed:", e, file=sys.stderr)
        return None


# ----------------------------------------------------------------------------- peak matmul

class PeakFlops:
    """Three float32 ``jnp.dot`` of ``N x N`` matrices per run (default precision = float32 on CPU)."""

    def __init__(self, a):
        n = a.matmul_n
        k1, k2 = jax.random.split(jax.random.key(0))
        self.x = jax.random.normal(k1, (n, n), jnp.float32)
        self.y = jax.random.normal(k2, (n, n), jnp.float32)
        self.dot = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
        self.n = n
        self.configs = ["default"]

    def run(self, cfg):
        for _ in range(3):
            block(self.dot(self.x, self.y))

    def finish(self):
        return {"matmul_n": self.n, "flops_per_run": 3 * 2.0 * self.n ** 3}


# ----------------------------------------------------------------------------- evaluation suite

class EvalSuite:
    """Linear probe + NCC + neural collapse on 60k x 512 features, three ways:

    * ``default``: the library's default probe, ``heads.linear_probe_fit`` (full-batch L-BFGS,
      standardised), with ``heads.ncc_fit/ncc_predict`` and ``collapse.nc1``: the same
      quantities as the PyTorch side, which runs the paper's SGD probe;
    * ``all``: the same probe and NCC with ``collapse.collapse_metrics`` (every NC metric, with
      NC3/NC4/misalignment against the probe's weights, overall and restricted to retain /
      forget classes, forget class 0), what ``jaxunlearn evaluate``/``analyze`` compute;
    * ``sgd``: the paper's protocol in JAX, ``heads.linear_probe_sgd(standardize=True)``, NCC
      and ``collapse.nc1``.
    """

    def __init__(self, a):
        from jaxunlearn import collapse, heads
        self.heads, self.collapse = heads, collapse
        tx, ty, vx, vy = common.make_features()
        self.tx, self.ty, self.vx = jnp.asarray(tx), jnp.asarray(ty), jnp.asarray(vx)
        self.vy = vy
        self.parts: dict[str, list] = {}
        self.configs = (a.configs or "default,all,sgd").split(",")
        self.out = {}

    def probe(self, cfg):
        e, h = common.EVAL, self.heads
        if cfg == "sgd":
            return h.linear_probe_sgd(self.tx, self.ty, e["num_classes"], key=jax.random.key(0),
                                      lr=e["lr"], momentum=e["momentum"], batch_size=e["batch"],
                                      epochs=e["epochs"], holdout=e["holdout"], standardize=True)
        return h.linear_probe_fit(self.tx, self.ty, e["num_classes"])

    def collapse_part(self, cfg, params):
        k = common.EVAL["num_classes"]
        if cfg != "all":
            return {"nc1": float(block(self.collapse.nc1(self.tx, self.ty, k)))}
        weights = (params.w / params.scale[:, None]).T  # [K, D], acting on the raw features
        bias = params.b - weights @ params.mean
        m = self.collapse.collapse_metrics(self.tx, self.ty, k, weights, bias, forget_classes=[0])
        return {"nc1": float(m["nc1"]), "collapse_metrics": len(m) + len(m["retain"]) + len(m["forget"])}

    def run(self, cfg):
        e, h = common.EVAL, self.heads
        t0 = time.perf_counter()
        params = self.probe(cfg)
        pred = block(jnp.argmax(h.linear_probe_predict(params, self.vx), -1))
        t1 = time.perf_counter()
        ncc = block(h.ncc_predict(h.ncc_fit(self.tx, self.ty, e["num_classes"]), self.vx))
        t2 = time.perf_counter()
        nc = self.collapse_part(cfg, params)
        t3 = time.perf_counter()
        parts = self.parts.setdefault(cfg, {"probe_s": [], "ncc_s": [], "collapse_s": []})
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
            parts[k].append(v)
        self.out[cfg] = {"probe_acc": float(np.mean(np.asarray(pred) == self.vy)),
                         "ncc_acc": float(np.mean(np.asarray(ncc) == self.vy)), **nc}

    def finish(self):
        main = self.out.get("default") or next(iter(self.out.values()))
        return {**main, "by_config": self.out,
                "parts_median_s": {c: {k: float(np.median(v)) for k, v in p.items() if v}
                                   for c, p in self.parts.items()},
                "what": "default: heads.linear_probe_fit (L-BFGS) + NCC + collapse.nc1; all: the same with "
                        "collapse.collapse_metrics (every NC metric, overall, retain and forget); sgd: "
                        "heads.linear_probe_sgd(standardize=True) + NCC + collapse.nc1",
                **{k: v for k, v in common.EVAL.items()}}


# ----------------------------------------------------------------------------- sweeps

def digits(a):
    """The digits split: from run.py's npz (identical to the torch side) or load_dataset."""
    if a.digits:
        d = common.load_digits_npz(a.digits)
        return d["train_images"], d["train_labels"], d["test_images"], d["test_labels"]
    from jaxunlearn.data import load_dataset
    ds = load_dataset("digits")
    return ds.train_images, ds.train_labels, ds.test_images, ds.test_labels


def mlp_net():
    from jaxunlearn.data import NORMALISATION
    mean, std = NORMALISATION["digits"]
    return Net(get_model("mlp", 10), mean, std)


def test_accuracy(net, params, batch_stats, images, labels):
    logits, _, _ = net.forward(params, batch_stats, images, False)
    return jnp.mean(jnp.argmax(logits, -1) == labels)


class SweepSeeds:
    """8 seeds of digits-MLP training: ``jax.vmap(train.make_train(...))`` vs a Python loop."""

    def __init__(self, a):
        tx, ty, vx, vy = digits(a)
        self.net = net = mlp_net()
        s = common.SWEEP
        self.cfg = sgd_config()
        self.n = len(ty)
        self.data = {"images": jnp.asarray(tx), "labels": jnp.asarray(ty)}
        self.test = (jnp.asarray(vx), jnp.asarray(vy))
        train_fn = train.make_train(net, tx.shape[1:], self.cfg, epochs=s["seed_epochs"],
                                    batch_size=s["batch"], num_train=self.n)
        self.keys = jax.random.split(jax.random.key(0), s["seeds"])
        self.hp = {"lr": jnp.float32(s["lr"])}
        self.vmapped = jax.jit(jax.vmap(train_fn, in_axes=(0, None, None)))
        self.single = jax.jit(train_fn)
        self.configs = (a.configs or "vmap,loop").split(",")
        self.acc = {}

    def run(self, cfg):
        if cfg == "vmap":
            st = block(self.vmapped(self.keys, self.data, self.hp))
            acc = jax.vmap(lambda p, b: test_accuracy(self.net, p, b, *self.test))(st.params, st.batch_stats)
        else:
            accs = []
            for k in self.keys:
                st = block(self.single(k, self.data, self.hp))
                accs.append(test_accuracy(self.net, st.params, st.batch_stats, *self.test))
            acc = jnp.stack(accs)
        self.acc[cfg] = float(jnp.mean(acc))

    def finish(self):
        s = common.SWEEP
        return {"seeds": s["seeds"], "epochs": s["seed_epochs"], "num_train": self.n,
                "steps_per_seed": s["seed_epochs"] * (self.n // s["batch"]),
                "mean_test_acc": self.acc, "what": "train.make_train (lax.scan) per seed; vmap over keys vs loop"}


def weighted_retain_loss(net, params, batch_stats, batch, key, hparams, aux):
    """Cross-entropy on the retain stream, weighted by ``weight`` (0 for padding rows)."""
    b = batch["retain"]
    logits, _, new_bs = net.forward(params, batch_stats, b["images"], True)
    loss = train.cross_entropy(logits, b["labels"], b["weight"])
    return loss, (new_bs, {"loss": loss})


class SweepUnlearn:
    """Retain-set fine-tuning of a digits MLP for each of the 10 classes.

    ``vmap``: the 10 retain index sets padded to a common length with a zero-weight dummy row,
    one ``lax.scan`` epoch vmapped over classes. ``loop``: 10 sequential runs with the
    library's default epoch loop (``loop-scan``: the scan loop instead).
    """

    def __init__(self, a):
        tx, ty, vx, vy = digits(a)
        s = common.SWEEP
        self.net = net = mlp_net()
        n = len(ty)
        # original model (not timed)
        train_fn = jax.jit(train.make_train(net, tx.shape[1:], sgd_config(), epochs=s["original_epochs"],
                                            batch_size=s["batch"], num_train=n))
        data = {"images": jnp.asarray(tx), "labels": jnp.asarray(ty)}
        self.original = block(train_fn(jax.random.key(0), data, {"lr": jnp.float32(s["lr"])}))
        # data with one dummy (padding) row of weight 0
        self.data = {"images": jnp.concatenate([data["images"], data["images"][:1]]),
                     "labels": jnp.concatenate([data["labels"], data["labels"][:1]]),
                     "weight": jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(1, jnp.float32)])}
        self.retain = [np.flatnonzero(ty != c).astype(np.int32) for c in range(10)]
        length = max(len(r) for r in self.retain)
        self.padded = jnp.asarray(np.stack([np.concatenate([r, np.full(length - len(r), n, np.int32)])
                                            for r in self.retain]))
        self.cfg = sgd_config()
        step = train.make_step(net, weighted_retain_loss, self.cfg)
        self.run_host = train.make_run_steps(step, {"retain": s["batch"]}, "retain")
        self.run_scan = train.make_run_steps(step, {"retain": s["batch"]}, "retain", loop="scan")
        self.hp = {"lr": jnp.float32(s["unlearn_lr"])}
        self.key = jax.random.key(2)
        spe_v = length // s["batch"]

        def epoch_v(state, streams, e):
            return self.run_scan(state, self.key, self.data, streams, self.hp, {}, e, 0, spe_v)[0]

        self.epoch_v = jax.jit(jax.vmap(epoch_v, in_axes=(0, 0, None)))
        self.test = (jnp.asarray(vx), jnp.asarray(vy))
        self.configs = (a.configs or "vmap,loop,loop-scan").split(",")
        self.results = {}

    def run(self, cfg):
        s = common.SWEEP
        fresh = train.fresh_optimizer(self.original, self.cfg)
        if cfg == "vmap":
            st = jax.tree.map(lambda x: jnp.broadcast_to(x, (10, *jnp.shape(x))), fresh)
            streams = {"retain": self.padded}
            for e in range(s["unlearn_epochs"]):
                st = self.epoch_v(st, streams, e)
            block(st)
            states = [jax.tree.map(lambda x, c=c: x[c], st) for c in range(10)]
        else:
            run_steps = self.run_host if cfg == "loop" else self.run_scan
            states = []
            for c in range(10):
                st = fresh
                idx = jnp.asarray(self.retain[c])
                spe = len(self.retain[c]) // s["batch"]
                for e in range(s["unlearn_epochs"]):
                    st, _ = run_steps(st, self.key, self.data, {"retain": idx}, self.hp, {}, e, 0, spe)
                states.append(block(st))
        self.results[cfg] = states

    def finish(self):
        vx, vy = self.test
        vy_np = np.asarray(vy)
        summary = {}
        for cfg, states in self.results.items():
            fa, ra = [], []
            for c, st in enumerate(states):
                logits, _, _ = self.net.forward(st.params, st.batch_stats, vx, False)
                ok = np.asarray(jnp.argmax(logits, -1)) == vy_np
                fa.append(ok[vy_np == c].mean())
                ra.append(ok[vy_np != c].mean())
            summary[cfg] = {"forget_acc": float(np.mean(fa)), "retain_acc": float(np.mean(ra))}
        logits, _, _ = self.net.forward(self.original.params, self.original.batch_stats, vx, False)
        s = common.SWEEP
        return {"classes": 10, "epochs": s["unlearn_epochs"], "lr": s["unlearn_lr"],
                "original_test_acc": float(np.mean(np.asarray(jnp.argmax(logits, -1)) == vy_np)),
                "after_unlearning": summary,
                "what": "retain-set fine-tuning (train.make_step + train.make_run_steps), "
                        "vmap over 10 forget classes (padded, zero-weight rows) vs loop"}


BENCHES = {"train_step": TrainStep, "peak_flops": PeakFlops, "eval": EvalSuite,
           "sweep_seeds": SweepSeeds, "sweep_unlearn": SweepUnlearn}


def main():
    bench = BENCHES[ARGS.bench](ARGS)
    common.serve(bench, ARGS, header(ARGS))


if __name__ == "__main__":
    main()
