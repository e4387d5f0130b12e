"""Learning curves: forget-class test accuracy of Full, LP and NCC every few steps of
unlearning (forget set 0). Heads are fitted on a fixed 10k subsample of training features."""

import jax.numpy as jnp
import numpy as np

from jaxunlearn import evaluate, heads, report, runs


def _heads_on(study, net, state, head, sub, fc):
    ds = study.ds_all
    sub_ds = ds._replace(train_images=ds.train_images[sub], train_labels=ds.train_labels[sub])
    f = evaluate.extract(net, state, sub_ds, head)
    h = heads.evaluate_heads(jnp.asarray(f.train_feats["features"]), jnp.asarray(sub_ds.train_labels),
                             jnp.asarray(f.test_feats["features"]), ds.test_labels, fc, ds.num_classes, knn=False)
    full = heads.split_accuracy(f.test_logits.argmax(-1), ds.test_labels, fc)
    return {"full": full["forget"], "lp": h["lp"]["forget"], "ncc": h["ncc"]["forget"]}


def run(study) -> str:
    c = study.config
    out = study.out_dir("learning_curve")
    path = out / "learning_curve.json"
    if path.is_file():
        import json
        curves = json.loads(path.read_text())["curves"]
    else:
        rng = np.random.default_rng(0)
        sub = np.sort(rng.choice(len(study.ds_all.train_labels), min(10000, len(study.ds_all.train_labels)),
                                 replace=False))
        fc = list(c.forget_sets[0])
        curves = {}
        for r in c.curve_methods:
            source = study.cmf_original() if r.mode == "cmf" else study.original()
            net, state, head, _ = source
            points = [{"step": 0, **_heads_on(study, net, state, head, sub, fc)}]

            def on_chunk(st, phase, step, aux, points=points, net=net, head=head):
                points.append({"step": len(points) * c.curve_every, "phase": phase,
                               **_heads_on(study, net, st, head, sub, fc)})

            study._unlearn(r, 0, source, on_chunk=on_chunk, chunk=c.curve_every)
            curves[r.title] = points
        runs.write_json_atomic(path, {"forget_set": c.forget_sets[0], "every": c.curve_every, "curves": curves})
    return write_outputs(out, c.dataset, curves, study.first_model_label())


def write_outputs(out, dataset: str, curves: dict, which: str = "first forget set") -> str:
    """``learning_curve.png`` / ``.md`` / ``.tex`` from ``{method: [{"step", "full", "lp", "ncc"}]}``;
    ``which`` (the forget set and seed) goes into the markdown heading."""
    series = {f"{name}, {label}": ([p["step"] for p in pts], [p[h] for p in pts])
              for name, pts in curves.items() for h, label in (("full", "Full"), ("lp", "LP"), ("ncc", "NCC"))}
    report.line_plot(series, out / "learning_curve.png", f"{dataset}: forget-class accuracy during unlearning",
                     "unlearning step", "forget-class test accuracy (%)", note="one seed, the study's first forget set")
    lines = ["| method | step | Full forget | LP forget | NCC forget |", "|---|---|---|---|---|"]
    for name, pts in curves.items():
        for p in pts:
            lines.append(f"| {name} | {p['step']} | " + " | ".join(f"{100 * p[h]:.1f}" for h in ("full", "lp", "ncc")) + " |")
    md = f"### Learning curves ({which})\n\n" + "\n".join(lines) + "\n"
    runs.write_text_atomic(out / "learning_curve.md", md)
    runs.write_text_atomic(out / "learning_curve.tex", _latex(curves))
    return md


def _latex(curves):
    return report.latex_tabular(["method", "step", "Full", "LP", "NCC"],
                                [[n, p["step"]] + [f"{100 * p[h]:.1f}" for h in ("full", "lp", "ncc")]
                                 for n, pts in curves.items() for p in pts])
