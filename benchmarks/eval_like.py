"""Like-for-like evaluation figures, each with its accuracy / values, in one process:

    .venv/bin/python benchmarks/eval_like.py            # -> eval_like.json
    .venv/bin/python benchmarks/eval_like.py --quick    # 6,000 x 512 features

* ``lbfgs_probe``: ``heads.linear_probe_fit`` (standardise, L-BFGS, l2 = 1e-4) vs
  scikit-learn's ``StandardScaler`` + ``LogisticRegression(C = 1 / (l2 N), tol = 1e-4,
  max_iter = 100, lbfgs)``: the same objective and stopping rule (see the probe's docstring).
* ``ncc_nc``: ``heads.ncc_fit/ncc_predict`` + ``collapse.collapse_metrics`` (overall, with
  the probe's weights) vs a float64 NumPy implementation of NCC and of the same ten NC
  metrics (NC1 three ways, NC2 x4, NC3, misalignment, NC4), values compared.
* ``features_vs_forward``: the small CNN on 10,000 uint8 28x28 images: ``train.make_predict``
  (what ``evaluate.extract`` runs: logits and every feature) vs a jitted forward pass of the
  logits alone at the same batch size, images/s.

The SGD-probe protocol against the same protocol in PyTorch is the ``eval_suite`` row of
results.json (JAX ``sgd`` column vs PyTorch), measured by run.py with both sides in
separate, interleaved processes.

scikit-learn and NumPy are timed with BLAS limited to 1 thread and with the default thread
count (threadpoolctl), the faster compared (as PyTorch in run.py: on a loaded machine
OpenBLAS's spinning threads can be several times slower). Runs of the sides alternate (round r runs both, the order rotating), median of
``--repeats``; JAX is warmed up (compiled) first.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import common  # noqa: E402


def with_threads(fn, n):
    """``fn`` run under a BLAS/OpenMP thread limit of ``n`` (threadpoolctl; None: the default)."""
    from threadpoolctl import threadpool_limits

    def run():
        if n is None:
            return fn()
        with threadpool_limits(n):
            return fn()
    return run


def best_of(t: dict, prefix: str) -> str:
    """The fastest configuration whose name starts with ``prefix``."""
    return min((k for k in t["median_s"] if k.startswith(prefix)), key=lambda k: t["median_s"][k])


def interleave(fns: dict, repeats: int) -> dict:
    times = {k: [] for k in fns}
    out = {}
    for k, f in fns.items():  # warm-up (compile)
        out[k] = f()
    for r in range(repeats):
        order = list(fns)[r % len(fns):] + list(fns)[:r % len(fns)]
        for k in order:
            t0 = time.perf_counter()
            out[k] = fns[k]()
            times[k].append(time.perf_counter() - t0)
    return {"median_s": {k: statistics.median(v) for k, v in times.items()}, "samples_s": times}, out


# ----------------------------------------------------------------------------- NumPy side

def np_collapse(h, y, k, w, b):
    """NCC predictions' class means and the ten NC metrics of ``collapse_metrics`` (float64)."""
    h = h.astype(np.float64)
    onehot = np.eye(k)[y]
    counts = onehot.sum(0)
    mu = onehot.T @ h / counts[:, None]
    mu_g = h.mean(0)

    def nc1_of(hh, mm, mg):
        r = hh - mm[y]
        s_w = r.T @ r / len(y)
        m = mm - mg
        s_b = m.T @ m / k
        return float(np.trace(s_w @ np.linalg.pinv(s_b, rcond=1e-10, hermitian=True)) / k)

    hn = h / np.linalg.norm(h, axis=1, keepdims=True)
    mun = onehot.T @ hn / counts[:, None]
    m = mu - mu_g
    norms = np.linalg.norm(m, axis=1)
    u = m / norms[:, None]
    cos = u @ u.T
    off = ~np.eye(k, dtype=bool)
    g = m @ m.T
    etf = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    w = w.astype(np.float64)
    net = np.argmax(h @ w.T + b, 1)
    d = (h * h).sum(1)[:, None] - 2 * h @ mu.T + (mu * mu).sum(1)[None, :]
    ncc = np.argmin(d, 1)
    return {
        "nc1": nc1_of(h, mu, mu_g),
        "nc1_class_mean_global": nc1_of(h, mu, mu.mean(0)),
        "nc1_normalized": nc1_of(hn, mun, hn.mean(0)),
        "nc2_equinorm": float(norms.std() / norms.mean()),
        "nc2_equiangularity": float(cos[off].std()),
        "nc2_angle_to_etf": float(np.abs(cos[off] + 1 / (k - 1)).mean()),
        "nc2_etf_distance": float(np.linalg.norm(g / np.linalg.norm(g) - etf)),
        "nc3_self_duality": float(np.linalg.norm(w / np.linalg.norm(w) - m / np.linalg.norm(m))),
        "misalignment": float(np.mean(1 - (m * w).sum(1) / (norms * np.linalg.norm(w, axis=1)))),
        "nc4_ncc_disagreement": float(np.mean(net != ncc)),
    }, mu


def np_ncc_predict(tx, ty, k, vx):
    mu = np.stack([tx[ty == c].mean(0) for c in range(k)]).astype(np.float64)
    vx = vx.astype(np.float64)
    d = (vx * vx).sum(1)[:, None] - 2 * vx @ mu.T + (mu * mu).sum(1)[None, :]
    return np.argmin(d, 1)


# ----------------------------------------------------------------------------- rows

def lbfgs_row(tx, ty, vx, vy, k, repeats):
    import jax
    import jax.numpy as jnp
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from jaxunlearn import heads
    l2 = 1e-4
    jtx, jty, jvx = jnp.asarray(tx), jnp.asarray(ty), jnp.asarray(vx)

    def jax_side():
        p = heads.linear_probe_fit(jtx, jty, k, l2=l2)
        return np.asarray(jax.block_until_ready(jnp.argmax(heads.linear_probe_predict(p, jvx), -1)))

    def sk_side():
        sc = StandardScaler().fit(tx)
        clf = LogisticRegression(C=1.0 / (l2 * len(ty)), tol=1e-4, max_iter=100, solver="lbfgs")
        clf.fit(sc.transform(tx), ty)
        sk_side.n_iter = int(np.max(clf.n_iter_))
        return clf.predict(sc.transform(vx))

    t, out = interleave({"jax": jax_side, "sklearn t1": with_threads(sk_side, 1),
                         "sklearn default": with_threads(sk_side, None)}, repeats)
    sk = best_of(t, "sklearn")
    return {"what": "heads.linear_probe_fit vs StandardScaler + LogisticRegression(C=1/(l2 N), lbfgs, tol 1e-4)",
            **t, "sklearn_config": sk, "ratio_sklearn_over_jax": t["median_s"][sk] / t["median_s"]["jax"],
            "test_accuracy": {s: float(np.mean(out[s] == vy)) for s in out},
            "prediction_agreement": float(np.mean(out["jax"] == out[sk])),
            "sklearn_iterations": sk_side.n_iter}


def ncc_nc_row(tx, ty, vx, vy, k, repeats):
    import jax
    import jax.numpy as jnp

    from jaxunlearn import collapse, heads
    rng = np.random.default_rng(1)
    w = rng.normal(size=(k, tx.shape[1])).astype(np.float32) * 0.05  # a fixed head (NC3, NC4)
    b = np.zeros(k, np.float32)
    jtx, jty, jvx = jnp.asarray(tx), jnp.asarray(ty), jnp.asarray(vx)

    def jax_side():
        pred = np.asarray(jax.block_until_ready(heads.ncc_predict(heads.ncc_fit(jtx, jty, k), jvx)))
        m = collapse.collapse_metrics(jtx, jty, k, jnp.asarray(w), jnp.asarray(b))
        return pred, {n: float(m[n]) for n in NC_NAMES}

    def np_side():
        pred = np_ncc_predict(tx, ty, k, vx)
        m, _ = np_collapse(tx, ty, k, w, b)
        return pred, m

    t, out = interleave({"jax": jax_side, "numpy t1": with_threads(np_side, 1),
                         "numpy default": with_threads(np_side, None)}, repeats)
    npc = best_of(t, "numpy")
    jm, nm = out["jax"][1], out[npc][1]
    return {"what": "NCC + collapse.collapse_metrics (overall) vs float64 NumPy of NCC and the same ten metrics",
            **t, "numpy_config": npc, "ratio_numpy_over_jax": t["median_s"][npc] / t["median_s"]["jax"],
            "ncc_test_accuracy": {s: float(np.mean(out[s][0] == vy)) for s in out},
            "metrics": {n: {"jax": jm[n], "numpy": nm[n]} for n in NC_NAMES},
            "max_rel_diff": max(abs(jm[n] - nm[n]) / max(abs(nm[n]), 1e-12) for n in NC_NAMES)}


NC_NAMES = ("nc1", "nc1_class_mean_global", "nc1_normalized", "nc2_equinorm", "nc2_equiangularity",
            "nc2_angle_to_etf", "nc2_etf_distance", "nc3_self_duality", "misalignment", "nc4_ncc_disagreement")


def features_row(n, repeats):
    import jax
    import jax.numpy as jnp

    from jaxunlearn import train
    from jaxunlearn.models import get_model
    from jaxunlearn.state import Net
    net = Net(get_model("cnn", 10), (0.2860,), (0.3530,))
    state = train.init_state(net, jax.random.key(0), (28, 28, 1), train.OptimConfig())
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8))
    predict = train.make_predict(net, 1000)
    fwd = jax.jit(lambda p, s, x: net.forward(p, s, x, False)[0])

    def extract():
        return jax.block_until_ready(predict(state.params, state.batch_stats, images))

    def forward():
        return jax.block_until_ready([fwd(state.params, state.batch_stats, images[i:i + 1000])
                                      for i in range(0, n, 1000)])

    t, _ = interleave({"features (make_predict)": extract, "forward (logits only)": forward}, repeats)
    ips = {k: n / v for k, v in t["median_s"].items()}
    return {"what": f"small CNN, {n} images 28x28x1, batch 1000", **t, "images_per_s": ips,
            "ratio_extract_over_forward_throughput": ips["features (make_predict)"] / ips["forward (logits only)"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="lbfgs_probe,ncc_nc,features_vs_forward")
    p.add_argument("--out", default=str(HERE / "eval_like.json"))
    a = p.parse_args()
    tx, ty, vx, vy = common.make_features()
    if a.quick:
        tx, ty, vx, vy = tx[:6000], ty[:6000], vx[:2000], vy[:2000]
    k = common.EVAL["num_classes"]
    out = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": " ".join([".venv/bin/python", "benchmarks/eval_like.py", *sys.argv[1:]]),
           "features": list(tx.shape), "test": list(vx.shape), "loadavg_start": os.getloadavg()}
    only = a.only.split(",")
    if "lbfgs_probe" in only:
        out["lbfgs_probe"] = lbfgs_row(tx, ty, vx, vy, k, a.repeats)
        print("lbfgs_probe", json.dumps({x: out["lbfgs_probe"][x] for x in ("median_s", "test_accuracy")}), flush=True)
    if "ncc_nc" in only:
        out["ncc_nc"] = ncc_nc_row(tx, ty, vx, vy, k, a.repeats)
        print("ncc_nc", json.dumps({x: out["ncc_nc"][x] for x in ("median_s", "ncc_test_accuracy", "max_rel_diff")}),
              flush=True)
    if "features_vs_forward" in only:
        out["features_vs_forward"] = features_row(2000 if a.quick else 10_000, a.repeats)
        print("features_vs_forward", json.dumps(out["features_vs_forward"]["images_per_s"]), flush=True)
    out["machine"] = common.machine()
    out["loadavg_end"] = os.getloadavg()
    pathlib.Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
