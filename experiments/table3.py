"""Table 3: the CMF model and CMF variants of the unlearning methods (Algorithm 2)."""

from jaxunlearn import report


def run(study) -> str:
    c = study.config
    n = len(c.forget_sets)
    rows = [report.row_from_evals("CMF model", [study.evaluation("cmf_original", study.cmf_original(), i)
                                                for i in range(n)])]
    for r in c.table3:
        rows.append(report.row_from_evals(r.title, study.method_evals(r)))
        rows[-1]["runtime_s"] = study.runtime(r)
    out = study.out_dir("table3")
    report.bar_plot(rows, out / "table3.png", f"{c.dataset}: CMF unlearning, forget-class accuracy per head")
    return report.write_table(out, "table3", rows, f"Table 3 ({c.dataset}, {c.model}): CMF unlearning")
