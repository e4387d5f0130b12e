"""Both linear probes on the same features: the authors' SGD protocol against the L-BFGS probe.

The paper's LP columns come from the authors' SGD probe (``heads.PROBE_PROTOCOLS["paper-*"]``:
raw features, SGD lr 0.01, momentum 0.9, batch 128, 10 % held out, best held-out epoch); the
library's ``fast`` probe is an L2-regularised multinomial logistic regression on standardised
features solved by L-BFGS (``heads.linear_probe_fit``). This script fits both on the *same*
penultimate features of each model (training split, true labels, every class; for a CMF model
the CMF head's input, as ``jaxunlearn evaluate`` does) and scores them on the test split's
retain and forget classes, so the README can show how far apart they are
(docs/parity.md item 1).

Usage::

    # the cached models of a finished study (seed 0 by default; originals once per forget set)
    python -m experiments.probe_compare --workdir runs/study-fashion_mnist --out probes.md
    # a quick self-contained run: a digits MLP, Retrain, RL and RL + CMF for forget class 3
    python -m experiments.probe_compare --digits --out probes.md

The table (Markdown) and a JSON file next to it (``--out`` with ``.json``) are written; an
existing file is never overwritten.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import cmf, data as data_lib, heads, runs, train


def features_of(net, state, ds, head: str = "linear", batch_size: int = 1000):
    """Probe features ``([N_train, D], [N_test, D])`` of the training and test splits.

    The penultimate features; for a CMF model (``head="cmf"``) the CMF head's input
    ``normalize(normalize(f) - mu)`` with the head fitted to the training features, the
    convention of :func:`jaxunlearn.evaluate.evaluate` (so the numbers are the study's).
    """
    predict = train.make_predict(net, batch_size)

    def feats(images):
        _, f = predict(state.params, state.batch_stats, jnp.asarray(images))
        return f["features"]

    tr, te = feats(ds.train_images), feats(ds.test_images)
    if head == "cmf":
        h = cmf.cmf_head(tr, jnp.asarray(ds.train_labels), ds.num_classes)
        tr, te = cmf.cmf_features(h, tr), cmf.cmf_features(h, te)
    return np.asarray(tr, np.float32), np.asarray(te, np.float32)


def compare_probes(train_x, train_y, test_x, test_y, forget, num_classes: int, probes, seed: int = 0) -> dict:
    """``{probe: {"retain", "forget", "all", "time_s"}}`` (test accuracies in %) on one model's features."""
    out = {}
    for probe in probes:
        t0 = time.perf_counter()
        res = heads.evaluate_heads(train_x, train_y, test_x, test_y, forget, num_classes, probe=probe, knn=False,
                                   key=jax.random.key(seed))
        lp = res["lp"]
        out[probe] = {k: (None if lp[k] is None else 100.0 * lp[k]) for k in ("retain", "forget", "all")}
        out[probe]["time_s"] = time.perf_counter() - t0
    return out


_NAME = re.compile(r"^(?P<model>.+?)(?:-f(?P<forget>[0-9_]+))?-s(?P<seed>\d+)$")


def study_models(workdir, seeds=(0,)) -> list:
    """``[(label, run directory, seed, forget set or None)]`` of a study's finished models."""
    rows = []
    for d in sorted(pathlib.Path(workdir, "models").iterdir()):
        m = _NAME.match(d.name)
        if m is None or not (d / "summary.json").is_file() or int(m["seed"]) not in seeds:
            continue
        forget = None if m["forget"] is None else tuple(int(c) for c in m["forget"].split("_"))
        rows.append((m["model"], d, int(m["seed"]), forget))
    return rows


def run_study(workdir, seeds, probes, log=print) -> list:
    """Both probes on every finished model of a study workdir (originals once per forget set)."""
    models = study_models(workdir, seeds)
    if not models:
        raise SystemExit(f"error: no finished models for seeds {list(seeds)} under {workdir}/models")
    forget_sets = sorted({f for *_, f in models if f is not None})
    ds = None
    results = []
    for label, path, seed, forget in models:
        run = runs.load_run(path, dataset=ds)
        ds = run.dataset
        tr, te = features_of(run.net, run.state, ds, run.info.get("head", "linear"))
        for f in ([forget] if forget is not None else forget_sets):
            res = compare_probes(tr, ds.train_labels, te, ds.test_labels, list(f), ds.num_classes, probes, seed)
            results.append({"model": label, "seed": seed, "forget": list(f), **res})
            log(_row(results[-1], probes))
    return results


def run_digits(probes, seed: int = 0, log=print) -> list:
    """A digits MLP and three unlearned models of forget class 3, both probes on each."""
    from jaxunlearn.unlearn import get_method, make_problem, presets, unlearn
    ds = data_lib.load_dataset("digits")
    net, state, _ = runs.train_model(ds, "mlp", runs.recipe_for("digits", "mlp"), seed=seed, progress=False)
    forget = (3,)
    problem = make_problem(ds, data_lib.parse_forget("3", ds.num_classes))
    models = [("original", state, "linear")]
    for name, mode in (("retrain", "full"), ("random_label", "full"), ("random_label", "cmf")):
        method = get_method(name)
        hp, settings, _ = presets.resolve(method, "digits", mode)
        res = unlearn(method, jax.random.key(seed), net, state, problem, hp, settings)
        models.append((name if mode == "full" else f"{name}-{mode}", res.state, "cmf" if mode == "cmf" else "linear"))
    results = []
    for label, st, head in models:
        tr, te = features_of(net, st, ds, head)
        res = compare_probes(tr, ds.train_labels, te, ds.test_labels, list(forget), ds.num_classes, probes, seed)
        results.append({"model": label, "seed": seed, "forget": list(forget), **res})
        log(_row(results[-1], probes))
    return results


def _fmt(x):
    return "-" if x is None else f"{x:.1f}"


def _row(r, probes) -> str:
    a, b = probes
    cells = [r["model"], str(r["seed"]), ",".join(map(str, r["forget"]))]
    for k in ("retain", "forget"):
        cells += [_fmt(r[a][k]), _fmt(r[b][k]),
                  _fmt(None if r[a][k] is None or r[b][k] is None else r[b][k] - r[a][k])]
    cells += [f"{r[a]['time_s']:.1f}", f"{r[b]['time_s']:.1f}"]
    return "| " + " | ".join(cells) + " |"


def table(results, probes) -> str:
    """Markdown: per model, both probes' retain / forget test accuracy (%) and their gap."""
    a, b = probes
    head = (f"| model | seed | forget | retain {a} | retain {b} | Δ retain | forget {a} | forget {b} | Δ forget "
            f"| s {a} | s {b} |")
    lines = [head, "|" + "---|" * 11]
    lines += [_row(r, probes) for r in results]
    gaps = {k: [r[b][k] - r[a][k] for r in results if r[a][k] is not None and r[b][k] is not None]
            for k in ("retain", "forget")}
    summary = "; ".join(f"{k}: mean |Δ| {np.mean(np.abs(v)):.2f} pt, max |Δ| {np.max(np.abs(v)):.2f} pt"
                        for k, v in gaps.items() if v)
    return ("\n".join(lines) + f"\n\nΔ = {b} − {a} (percentage points) over {len(results)} models: {summary}. "
            "s: seconds per probe fit (the first row includes compilation).\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.probe_compare", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="a study workdir (its models/ directory)")
    src.add_argument("--digits", action="store_true", help="train and unlearn a digits MLP here (quick)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds of the study's models (default: 0)")
    p.add_argument("--probe", default=None,
                   help="the SGD protocol to compare with fast (default: the dataset's paper-* protocol)")
    p.add_argument("--out", required=True, help="Markdown table to write (a .json with the numbers beside it)")
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    out_json = out.with_suffix(".json")
    for f in (out, out_json):
        if f.exists():
            print(f"error: {f} exists; choose another --out (results are never overwritten)", file=sys.stderr)
            return 2
    if args.workdir is not None and not pathlib.Path(args.workdir, "models").is_dir():
        print(f"error: {args.workdir} has no models/ directory; pass a study workdir", file=sys.stderr)
        return 2
    if args.probe is not None and args.probe not in heads.PROBE_PROTOCOLS:
        print(f"error: unknown probe {args.probe!r}; use one of {', '.join(heads.PROBE_PROTOCOLS)}",
              file=sys.stderr)
        return 2
    if args.digits:
        probes = ("fast", args.probe or heads.paper_probe("digits"))
        results = run_digits(probes)
        source = "digits MLP (trained here), forget class 3"
    else:
        seeds = tuple(int(s) for s in args.seeds.split(","))
        info = json.loads(next(pathlib.Path(args.workdir, "models").glob("*/run.json")).read_text())
        probes = ("fast", args.probe or heads.paper_probe(info["dataset"]))
        results = run_study(args.workdir, seeds, probes)
        source = f"{args.workdir} ({info['dataset']}, {info['model']}), seeds {list(seeds)}"
    out.write_text(f"Linear probes on the same features: {source}.\n\n" + table(results, probes))
    out_json.write_text(json.dumps({"source": source, "probes": list(probes), "results": results}, indent=1))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
