"""Table 1: Original, Retrain and each baseline method: Full / LP / NCC on retain and forget
test samples, mean ± std over forget sets. Shows the illusion: output forget accuracy ~0
while LP / NCC forget accuracy stays high."""

from experiments.configs import MethodRun
from jaxunlearn import report


def run(study) -> str:
    c = study.config
    n = len(c.forget_sets)
    rows = [report.row_from_evals("Original", [study.evaluation("original", study.original(), i) for i in range(n)]),
            report.row_from_evals("Retrain", study.method_evals(MethodRun("retrain")))]
    for r in c.table1:
        rows.append(report.row_from_evals(r.title, study.method_evals(r)))
        rows[-1]["runtime_s"] = study.runtime(r)
    out = study.out_dir("table1")
    report.bar_plot(rows, out / "table1.png", f"{c.dataset} / {c.model}: forget-class accuracy per head")
    return report.write_table(out, "table1", rows, f"Table 1 ({c.dataset}, {c.model}): baseline unlearning",
                              {"forget_sets": c.forget_sets})
