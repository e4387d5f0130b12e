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
    stages = list(next(iter(table.values())))
    runs.write_json_atomic(out / "layerwise.json", {"forget_set": c.forget_sets[0], "probes": table})
    report.line_plot({t: (list(range(1, len(stages) + 1)), [v[s]["forget"] for s in stages]) for t, v in table.items()},
                     out / "layerwise.png", f"{c.dataset}: forget-class probe accuracy by stage ({', '.join(stages)})",
                     "stage", "forget-class LP accuracy (%)")
    lines = ["| model | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
    lines += [f"| {t} | " + " | ".join(f"{100 * v[s]['forget']:.1f}" for s in stages) + " |" for t, v in table.items()]
    md = "### Layer-wise probes, forget-class test accuracy (%)\n\n" + "\n".join(lines) + "\n"
    runs.write_text_atomic(out / "layerwise.md", md)
    runs.write_text_atomic(out / "layerwise.tex", "\\begin{tabular}{l" + "c" * len(stages) + "}\n" + " & ".join(
        ["model"] + stages) + " \\\\\n" + "\n".join(f"{t} & " + " & ".join(f"{100 * v[s]['forget']:.1f}" for s in stages) + r" \\"
                                                 for t, v in table.items()) + "\n\\end{tabular}\n")
    return md
