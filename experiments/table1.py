"""Table 1: Original, Retrain and each baseline method: Full / LP / NCC on retain and forget
test samples, mean ± std over seeds with a 95 % CI, pooled over forget sets and per forget set.
Shows the illusion: output forget accuracy ~0 while LP / NCC forget accuracy stays high."""

from experiments.configs import MethodRun
from jaxunlearn import report


def run(study) -> str:
    c = study.config
    entries = [MethodRun("original", label="Original"), MethodRun("retrain", label="Retrain"), *c.table1]
    rows = study.rows(entries)
    return finish(study, "table1", rows, f"Table 1 ({c.dataset}, {c.model}): baseline unlearning",
                  f"{c.dataset} / {c.model}: forget-class accuracy per head")


def finish(study, name: str, rows, title: str, plot_title: str) -> str:
    """Writes the table (JSON, markdown, LaTeX), its plot and the long-format CSV so far."""
    c = study.config
    out = study.out_dir(name)
    report.bar_plot(rows, out / f"{name}.png", plot_title)
    study.write_records()
    return report.write_table(out, name, rows, title, {"forget_sets": c.forget_sets, "seeds": list(study.seeds)})
