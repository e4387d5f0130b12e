"""Table 2: classifier-only unlearning (last layer zeroed and retrained, encoder and
BatchNorm frozen) and the closed-form classifier edit, next to full-model unlearning."""

from experiments.configs import MethodRun
from jaxunlearn import report


def run(study) -> str:
    c = study.config
    rows = []
    for r in c.table2:
        if r.mode == "classifier_only":
            full = MethodRun(r.method, "full", r.hparams, r.settings)
            rows.append(report.row_from_evals(full.title, study.method_evals(full)))
        rows.append(report.row_from_evals(r.title, study.method_evals(r)))
    out = study.out_dir("table2")
    report.bar_plot(rows, out / "table2.png", f"{c.dataset}: classifier-only vs full-model unlearning")
    return report.write_table(out, "table2", rows, f"Table 2 ({c.dataset}, {c.model}): classifier-only unlearning")
