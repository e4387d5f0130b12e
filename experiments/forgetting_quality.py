"""Forgetting quality from model pools: the competition's ε score, U-LiRA, and the feature view.

``jaxunlearn reproduce forgetting_quality --config digits --workdir W`` builds, in ``W`` (all
resumable, see :mod:`jaxunlearn.pool`):

* one class-forgetting pool (the paper's setting: forget class 3 on digits, class 0 on
  Fashion-MNIST): one original model, ``2N`` retrained models (``N`` for the comparison and a
  retrain-vs-retrain floor from the two halves) and ``N`` unlearned models per method, all
  from that one original (CMF methods from its CMF model);
* one U-LiRA pool per method on a fixed random sample forget set (10 % of the training
  split): ``K`` shadows on random halves, ``T`` targets (half unlearned, half retrained);
* a sample-forgetting pool (the competition's setting, 10 % of the training split) for a few
  methods.

It writes ``W/forgetting_quality/``: ``results.json`` (every number), ``table.md`` and
``table.tex`` (F, final score, U-LiRA accuracy / AUC, output and LP / NCC forget accuracy of
the same pools' models), ``eps_hist.png`` (per-example ε histograms) and ``README.md`` with
the command (and ``eps_hist_sample.png`` for the sample-forgetting pools). F, the final
score and the floors (Retrain vs Retrain with linear heads, and through CMF heads for the
+ CMF rows) come from :mod:`jaxunlearn.forgetting_quality`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time

import numpy as np

from jaxunlearn import data as data_lib, evaluate, forgetting_quality as fq, pool as pool_lib, report, runs


@dataclasses.dataclass(frozen=True)
class FQConfig:
    dataset: str
    model: str
    forget: str                      # the class of the main (class-forgetting) pool
    models: int = 64                 # N per side
    batch: int = 16
    epochs: int | None = None        # training epochs (None: the recipe's)
    max_train: int | None = None
    evaluated: int = 4               # models per pool whose features are evaluated (LP / NCC)
    # vmap: an MLP batches well on CPU (benchmarks/README.md); "auto" measures a proxy, which on
    # a machine shared with other jobs can pick the loop (15.6 s / model here vs 0.1 vmapped)
    strategy: str = "vmap"
    shadows: int = 16                # U-LiRA
    targets: int = 16
    ulira_fraction: float = 0.1
    sample_forget: str = "0.1"       # the sample-forgetting pool
    methods: tuple = (("random_label", "full"), ("salun", "full"), ("neggrad_plus", "full"), ("scrub", "full"),
                      ("random_label", "classifier_only"), ("neggrad_plus", "classifier_only"),
                      ("classifier_edit", "full"),
                      ("random_label", "cmf"), ("salun", "cmf"), ("neggrad_plus", "cmf"), ("scrub", "cmf"))
    # U-LiRA shadows are per method; on the shared 2-core CPU the experiment runs it for these
    ulira_methods: tuple = (("retrain", "full"), ("random_label", "full"), ("random_label", "classifier_only"),
                            ("random_label", "cmf"), ("neggrad_plus", "full"), ("neggrad_plus", "classifier_only"))
    # the competition's setting (a random sample forget set); empty by default (the class pools
    # are the paper's setting); the digits and fashion_mnist configs run SAMPLE_METHODS
    sample_methods: tuple = ()


# the sample-forgetting pools' methods (the competition's setting)
SAMPLE_METHODS = (("finetune", "full"), ("random_label", "full"), ("salun", "full"), ("neggrad_plus", "full"),
                  ("scrub", "full"), ("random_label", "classifier_only"), ("random_label", "cmf"),
                  ("neggrad_plus", "cmf"))

CONFIGS = {
    "digits": FQConfig("digits", "mlp", "3", sample_methods=SAMPLE_METHODS),
    # 10,000 training images (as the Fashion-MNIST study), the MLP recipe's 15 epochs
    "fashion_mnist": FQConfig("fashion_mnist", "mlp", "0", max_train=10000, sample_methods=SAMPLE_METHODS),
}


def title(method: str, mode: str) -> str:
    if method == "retrain":
        return "Retrain, CMF heads (floor of the + CMF rows)" if mode == "cmf" else \
            "Retrain (floor: retrain vs retrain)"
    return method + {"full": "", "classifier_only": " (classifier only)", "cmf": " + CMF"}[mode]


def _mean_std(values) -> tuple | None:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if not v.size:
        return None
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _features_of(workdir, ds, spec, side, method, mode, head, forget_key) -> dict:
    """LP / NCC forget (and retain) accuracy of the kept models of one pool side."""
    states = pool_lib.load_states(workdir, side, method, mode)
    net = runs.make_net(ds, runs.read_json(pathlib.Path(workdir) / "pool.json")["model"])
    out = {"lp_forget": [], "ncc_forget": [], "lp_retain": [], "ncc_retain": []}
    for i in sorted(states):
        ev = evaluate.evaluate_model(net, states[i], ds, spec, head=head, knn=False, collapse_metrics=False,
                                     privacy_attacks=False, relearn=())
        for h in ("lp", "ncc"):
            out[f"{h}_forget"].append(ev[h].get(forget_key))
            out[f"{h}_retain"].append(ev[h].get("retain"))
    return {k: _mean_std(v) for k, v in out.items()} | {"n_evaluated": len(states)}


def _phi(side: dict, labels) -> np.ndarray:
    return np.asarray(fq.phi(side["logits"]["forget"], labels))


def _score(pool: dict) -> dict:
    """F, final score and ε of one method pool against the first N retrained models."""
    n = pool["config"]["models"]
    lab = pool["labels"]["forget"]
    r, u = pool["retrained"], pool["unlearned"]
    phi_r, phi_u = _phi(r, lab)[:n], _phi(u, lab)
    acc_r = {k: v[:n] for k, v in r["accuracy"].items()}
    s = fq.score_pool(phi_u, phi_r, u["accuracy"]["retain"], acc_r["retain"], u["accuracy"]["test"], acc_r["test"])
    return {**s, "accuracy_u": {k: _mean_std(v) for k, v in u["accuracy"].items()},
            "time_per_model_s": float(np.mean(u["time_per_model_s"])),
            "strategy": sorted({b["strategy"] for b in u["batches"]})}


def _floor(pool: dict) -> dict:
    """The retrain-vs-retrain floor at N per side (the two halves of the 2N retrained models)."""
    r = pool["retrained"]
    n = pool["config"]["models"]
    phi_r = _phi(r, pool["labels"]["forget"])
    a, b = np.arange(n), np.arange(n, 2 * n)
    res = fq.example_epsilons(phi_r[b], phi_r[a])
    f = fq.forgetting_quality(res["eps"])
    acc = r["accuracy"]
    fs = fq.final_score(f, acc["retain"][b], acc["retain"][a], acc["test"][b], acc["test"][a])
    s = fq.score_pool(phi_r[b], phi_r[a])
    return {**s, "F": f, "final_score": fs, "accuracy_u": {k: _mean_std(v[b]) for k, v in acc.items()},
            "time_per_model_s": float(np.mean(r["time_per_model_s"])),
            "strategy": sorted({x["strategy"] for x in r["batches"]})}


def run_pools(cfg: FQConfig, workdir: pathlib.Path, forget: str, methods, log=print) -> dict:
    """Builds (or resumes) one pool workdir and scores every method in it."""
    ds = data_lib.load_dataset(cfg.dataset, max_train=cfg.max_train)
    common = dict(dataset=cfg.dataset, model=cfg.model, forget=forget, models=cfg.models, batch=cfg.batch,
                  floor=True, epochs=cfg.epochs, max_train=cfg.max_train, dtype="float32")
    spec = data_lib.parse_forget(forget, ds.num_classes)
    forget_key = "forget" if spec.classes else "train_forget"
    t = time.perf_counter()
    base = pool_lib.build_pool(workdir, None, ds=ds, log=log, keep_states=cfg.evaluated, strategy=cfg.strategy,
                               **common)
    out = {"retrain-full": {**_floor(base), "features": _features_of(workdir, ds, spec, "retrained", None, "full",
                                                                 "linear", forget_key)}}
    log(f"retrained side and floor: {time.perf_counter() - t:.0f} s")
    for method, mode in methods:
        t = time.perf_counter()
        from jaxunlearn.unlearn import get_method
        strategy = cfg.strategy if get_method(method).traceable else "loop"  # host-side methods loop
        p = pool_lib.build_pool(workdir, method, mode, ds=ds, log=log, keep_states=cfg.evaluated,
                                strategy=strategy, **common)
        head = "cmf" if mode == "cmf" else "linear"
        if mode == "cmf" and "retrain-cmf" not in out:
            # CMF pools are compared with the retrained models read through CMF heads (bounded
            # cosine logits), so their floor is retrain vs retrain through those heads
            out["retrain-cmf"] = {**_floor(p), "features": _features_of(workdir, ds, spec, "retrained", None, "full",
                                                                        "cmf", forget_key)}
        out[f"{method}-{mode}"] = {**_score(p), "retrained_head": p["retrained"]["head"],
                                   "features": _features_of(workdir, ds, spec, "unlearned", method, mode, head,
                                                            forget_key)}
        log(f"{title(method, mode)}: F {out[f'{method}-{mode}']['F']:.3f} ({time.perf_counter() - t:.0f} s)")
    return out


def run_ulira(cfg: FQConfig, workdir: pathlib.Path, methods, log=print) -> dict:
    ds = data_lib.load_dataset(cfg.dataset, max_train=cfg.max_train)
    out = {}
    for method, mode in methods:
        if method == "classifier_edit":
            out[f"{method}-{mode}"] = {"skipped": "edits whole classes' head rows: no sample-forgetting variant"}
            continue
        t = time.perf_counter()
        sets = ()
        if method == "retrain":  # the pool's training recipe (epochs, batch), so Retrain is the same-recipe floor
            r = runs.recipe_for(cfg.dataset, cfg.model, epochs=cfg.epochs)
            sets = (f"epochs={r.epochs}", f"batch_size={r.batch_size}", f"lr={r.lr}")
        arr = pool_lib.build_ulira_pool(workdir, method, mode, sets=sets, dataset=cfg.dataset, model=cfg.model,
                                        forget_fraction=cfg.ulira_fraction, shadows=cfg.shadows,
                                        targets=cfg.targets, epochs=cfg.epochs, strategy=cfg.strategy, ds=ds,
                                        log=log)
        res = fq.ulira(*pool_lib.ulira_inputs(arr, "shadows"))
        ret = fq.ulira(*pool_lib.ulira_inputs(arr, "retrained"))
        out[f"{method}-{mode}"] = {"accuracy": res["accuracy"], "auc": res["auc"], "n_pairs": res["n_pairs"],
                                   "accuracy_out_retrained": ret["accuracy"], "auc_out_retrained": ret["auc"],
                                   "n_pairs_out_retrained": ret["n_pairs"], "time_s": time.perf_counter() - t}
        log(f"U-LiRA {title(method, mode)}: accuracy {res['accuracy']:.3f}, AUC {res['auc']:.3f}; OUT = retrained "
            f"shadows: {ret['accuracy']:.3f}, {ret['auc']:.3f} ({time.perf_counter() - t:.0f} s)")
    return out


# ----------------------------------------------------------------------------- report

def _pm(ms, scale=100.0, digits=1):
    if ms is None:
        return "–"
    m, s = ms
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def _num(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}"


HEADER = ["method", "F", "final score", "U-LiRA acc.", "U-LiRA AUC", "U-LiRA acc. (OUT retrained)",
          "output forget acc. %",
          "LP forget acc. %", "NCC forget acc. %", "retain acc. %", "s / model"]


def table_rows(results: dict, ulira: dict | None, order) -> list[list[str]]:
    rows = []
    for method, mode in order:
        key = f"{method}-{mode}"
        r = results.get(key)
        if r is None:
            continue
        u = (ulira or {}).get(key, {})
        f = r["features"]
        rows.append([title(method, mode), _num(r["F"]), _num(r["final_score"]), _num(u.get("accuracy")),
                     _num(u.get("auc")), _num(u.get("accuracy_out_retrained")), _pm(r["accuracy_u"]["forget"]), _pm(f["lp_forget"]), _pm(f["ncc_forget"]),
                     _pm(r["accuracy_u"]["retain"]), f"{r['time_per_model_s']:.2f} ({', '.join(r['strategy'])})"])
    return rows


def markdown(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def latex(header, rows, caption) -> str:
    esc = report.latex_escape
    body = ["\\begin{table}[t]", "\\centering", f"\\caption{{{esc(caption)}}}",
            "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
            " & ".join(esc(h) for h in header) + " \\\\", "\\midrule"]
    body += [" & ".join(esc(c) for c in r) + " \\\\" for r in rows]
    body += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(body) + "\n"


def eps_plot(results: dict, order, path, title_text: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [f"{m}-{o}" for m, o in order if f"{m}-{o}" in results]
    cols = 4
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), sharex=True, squeeze=False)
    edges = np.arange(14) * 0.5
    for ax, key in zip(axes.flat, keys):
        r = results[key]
        eps = np.asarray(r["eps"], np.float64)
        clipped = np.minimum(eps, 7.0)  # ε at or past 6.5 (scores 0) piles up at the right
        ax.hist(clipped, bins=np.append(edges, 7.25), color="tab:gray" if key.startswith("retrain-") else "tab:red")
        ax.axvline(6.5, color="k", lw=0.6, ls=":")
        m, o = key.rsplit("-", 1)
        ax.set_title(f"{title(m, o)}\nF = {r['F']:.3f}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("per-example ε (≥ 6.5 scores 0)", fontsize=7)
    fig.suptitle(title_text, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _strip(results: dict) -> dict:
    """results without the per-example ε arrays (kept in ``eps.npz``)."""
    return {k: {kk: vv for kk, vv in v.items() if kk != "eps"} for k, v in results.items()}


def row_order(methods) -> list:
    """Table order: Retrain's floor, the methods, with the CMF-head floor before the first + CMF row."""
    order = [("retrain", "full")]
    for m in methods:
        if m[1] == "cmf" and ("retrain", "cmf") not in order:
            order.append(("retrain", "cmf"))
        order.append(tuple(m))
    return order


def write(out_dir: pathlib.Path, cfg: FQConfig, class_res, ulira_res, sample_res, command: str, times) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    order = row_order(cfg.methods)
    name = f"{cfg.dataset} / {cfg.model}"
    t_class = table_rows(class_res, ulira_res, order)
    cap = (f"Forgetting quality on {name}, class {cfg.forget} forgotten, N = {cfg.models} models per side "
           f"(F: competition score, floor = Retrain row; U-LiRA on a 10 % sample forget set, K = {cfg.shadows} "
           f"shadows, {cfg.targets} targets; LP/NCC: mean ± std over {cfg.evaluated} models of each pool)")
    md = [f"### Forgetting quality, {name}, class {cfg.forget} (N = {cfg.models} per side)\n", markdown(HEADER, t_class)]
    tex = latex(HEADER, t_class, cap)
    if sample_res:
        order_s = row_order(cfg.sample_methods)
        t_s = table_rows(sample_res, None, order_s)
        md += [f"\n### Sample forgetting ({float(cfg.sample_forget):.0%} of the training split, N = {cfg.models})\n",
               markdown(HEADER, t_s)]
        tex += latex(HEADER, t_s, f"As above, sample forgetting ({cfg.sample_forget} of the training split)")
    text = "\n".join(md) + "\n"
    (out_dir / "table.md").write_text(text)
    (out_dir / "table.tex").write_text(tex)
    eps_plot(class_res, order, out_dir / "eps_hist.png",
             f"Per-example ε, {name}, class {cfg.forget}, N = {cfg.models} per side")
    if sample_res:
        eps_plot(sample_res, order_s, out_dir / "eps_hist_sample.png",
                 f"Per-example ε, {name}, {cfg.sample_forget} sample forgetting, N = {cfg.models} per side")
    np.savez(out_dir / "eps.npz", **{f"class/{k}": np.asarray(v["eps"]) for k, v in class_res.items()},
             **{f"sample/{k}": np.asarray(v["eps"]) for k, v in (sample_res or {}).items()})
    runs.write_json_atomic(out_dir / "results.json", {
        "config": dataclasses.asdict(cfg), "command": command, "times_s": times,
        "class": _strip(class_res), "ulira": ulira_res, "sample": _strip(sample_res or {})})
    return text


def reproduce(args) -> int:
    """``jaxunlearn reproduce forgetting_quality --config digits|fashion_mnist [--workdir W]``."""
    if args.config not in CONFIGS:
        raise ValueError(f"forgetting_quality has configs {', '.join(CONFIGS)}; got {args.config!r}")
    cfg = CONFIGS[args.config]
    if args.seeds is not None:  # --seeds N: models per side
        if args.seeds < 2:
            raise ValueError(f"--seeds (models per side) must be at least 2, got {args.seeds}")
        cfg = dataclasses.replace(cfg, models=args.seeds)
    workdir = pathlib.Path(args.workdir or f"runs/forgetting_quality-{cfg.dataset}")
    command = " ".join(["jaxunlearn", *sys.argv[1:]]) if sys.argv and "jaxunlearn" in sys.argv[0] else \
        " ".join(sys.argv)
    times = {}
    t = time.perf_counter()
    class_res = run_pools(cfg, workdir / "class", cfg.forget, cfg.methods)
    times["class_pools"] = time.perf_counter() - t
    t = time.perf_counter()
    ulira_res = run_ulira(cfg, workdir / "ulira", cfg.ulira_methods)
    times["ulira"] = time.perf_counter() - t
    t = time.perf_counter()
    sample_res = run_pools(cfg, workdir / "sample", cfg.sample_forget, cfg.sample_methods) \
        if cfg.sample_methods else None
    times["sample_pools"] = time.perf_counter() - t
    text = write(workdir / "forgetting_quality", cfg, class_res, ulira_res, sample_res, command, times)
    print(text)
    print(f"results in {workdir / 'forgetting_quality'}")
    return 0
