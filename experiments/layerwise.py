"""Layer-wise probes: linear-probe accuracy on the forget classes at every stage of the
network (forget set 0) for the original, Retrain, the baselines and CMF methods."""

from experiments.configs import MethodRun
from jaxunlearn import report, runs


def run(study) -> str:
    c = study.config
    models = {"Original": ("original", study.original()), "Retrain": ("retrain", study.retrained(0))}
    for r in c.table1[:2] + c.table3[:1]:
        models[r.title] = (r.key, study.unlearned(r, 0))
    table = {}
    for title, (name, model) in models.items():
        ev = study.evaluation(f"{name}-layerwise", model, 0, layerwise=True, knn=False, collapse_metrics=False,
                              privacy_attacks=False)
        table[title] = ev["layerwise"]
    out = study.out_dir("layerwise")
    runs.write_json_atomic(out / "layerwise.json", {"forget_set": c.forget_sets[0], "probes": table})
    return write_outputs(out, c.dataset, table, c.forget_sets[0])


def write_outputs(out, dataset: str, table: dict, forget_set) -> str:
    """``layerwise.png`` / ``.md`` / ``.tex`` from the probes ``{model: {stage: {split: acc}}}``."""
    stages = list(next(iter(table.values())))
    report.line_plot({t: (list(range(1, len(stages) + 1)), [v[s]["forget"] for s in stages]) for t, v in table.items()},
                     out / "layerwise.png", f"{dataset}: linear-probe accuracy on the forget classes, by stage",
                     "network stage (probe on its output)", "forget-class LP test accuracy (%)",
                     xticklabels=[f"{i}\n{s}" for i, s in enumerate(stages, 1)],
                     note=f"one seed, forget set {list(forget_set)}")
    lines = ["| model | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
    lines += [f"| {t} | " + " | ".join(f"{100 * v[s]['forget']:.1f}" for s in stages) + " |" for t, v in table.items()]
    md = "### Layer-wise probes, forget-class test accuracy (%)\n\n" + "\n".join(lines) + "\n"
    runs.write_text_atomic(out / "layerwise.md", md)
    tex = report.latex_tabular(["model"] + stages, [[t] + [f"{100 * v[s]['forget']:.1f}" for s in stages]
                                                     for t, v in table.items()])
    runs.write_text_atomic(out / "layerwise.tex",
                           f"% {dataset}: forget-class linear-probe test accuracy (%) by stage\n"
                           + tex)
    return md
