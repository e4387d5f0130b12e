"""Relearning attack: fine-tune each unlearned model on a small labelled set (k = 10 / 100
forget samples and k of every retain class) and follow the forget accuracy of the output and
NCC heads and the output's retain accuracy (forget set 0); Retrain is the baseline."""

from experiments.configs import MethodRun
from jaxunlearn import report, runs


def _run_of(config, key: str) -> MethodRun:
    """The configured run with this key (so the model is the one the tables use)."""
    for r in config.table1 + config.table2 + config.table3:
        if r.key == key:
            return r
    if key == "retrain":
        return MethodRun("retrain")
    raise ValueError(f"relearn: {key!r} is not a method of the study's tables")


def run(study) -> str:
    c = study.config
    curves = {}
    for key in c.relearn_methods:
        r = _run_of(c, key)
        ev = study.evaluation(f"{key}-relearn", study.unlearned(r, 0), 0, relearn=c.relearn_samples,
                              relearn_steps=c.relearn_steps, knn=False, collapse_metrics=False,
                              privacy_attacks=False)
        curves[r.title] = ev["relearn"]
    out = study.out_dir("relearn")
    runs.write_json_atomic(out / "relearn.json", {"forget_set": c.forget_sets[0], "curves": curves})
    return write_outputs(out, c.dataset, curves, c.relearn_steps)


def write_outputs(out, dataset: str, curves: dict, steps: int) -> str:
    """``relearn.png`` / ``.md`` / ``.tex`` from ``{model: {k: relearn_curve dict}}``.

    One panel per k: the curves of one k share their step grid (the attack evaluates at the
    same epoch boundaries for every model), while different k have different grids.
    """
    ks = list(dict.fromkeys(k for v in curves.values() for k in v))
    panels = {f"k = {k} forget samples (+ {k} per retain class)":
              {f"{t}, {h}": (cv[k]["steps"], cv[k][key]) for t, cv in curves.items() if k in cv
               for h, key in (("Full", "full"), ("NCC", "ncc"))}
              for k in ks}
    report.line_panels(panels, out / "relearn.png", f"{dataset}: relearning attack, fine-tuning on k labelled samples",
                       "fine-tuning step", "forget-class test accuracy (%)",
                       note="one seed, the study's first forget set; retain accuracy in relearn.md")
    lines = ["| model | k | Full forget (start → end) | NCC forget (start → end) | Full retain (start → end) |",
             "|---|---|---|---|---|"]
    for t, ks_ in curves.items():
        for k, cv in ks_.items():
            lines.append(f"| {t} | {k} | {100 * cv['full'][0]:.1f} → {100 * cv['full'][-1]:.1f} | "
                         f"{100 * cv['ncc'][0]:.1f} → {100 * cv['ncc'][-1]:.1f} | "
                         f"{100 * cv['retain'][0]:.1f} → {100 * cv['retain'][-1]:.1f} |")
    md = (f"### Relearning ({steps} steps on k forget samples and k of each retain class)\n\n"
          + "\n".join(lines) + "\n")
    runs.write_text_atomic(out / "relearn.md", md)
    tex = report.latex_tabular(
        ["model", "k", "Full forget (%)", "NCC forget (%)", "Full retain (%)"],
        [[t, k, f"{100 * cv['full'][-1]:.1f}", f"{100 * cv['ncc'][-1]:.1f}", f"{100 * cv['retain'][-1]:.1f}"]
         for t, ks_ in curves.items() for k, cv in ks_.items()], "llccc")
    runs.write_text_atomic(out / "relearn.tex",
                           f"% {dataset}: test accuracy after {steps} relearning steps\n" + tex)
    return md
