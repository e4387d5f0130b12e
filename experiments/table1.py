"""Table 1: Original, Retrain and each baseline method: Full / LP / NCC on retain and forget
test samples, mean ± std over seeds with a 95 % CI, pooled over forget sets and per forget set.
Shows the illusion: output forget accuracy ~0 while LP / NCC forget accuracy stays high."""

from experiments.configs import MethodRun
from jaxunlearn import report
from jaxunlearn.runs import write_text_atomic


def run(study) -> str:
    c = study.config
    entries = [MethodRun("original", label="Original"), MethodRun("retrain", label="Retrain"), *c.table1]
    rows = study.rows(entries)
    return finish(study, "table1", rows, f"Table 1 ({c.dataset}, {c.model}): baseline unlearning",
                  f"{c.dataset} / {c.model}: forget-class accuracy per head", entries)


def finish(study, name: str, rows, title: str, plot_title: str, entries=()) -> str:
    """Writes the table (JSON, markdown, LaTeX), its plot, the forget columns as forget-set x
    method matrices (``NAME_by_forget_set.md``), and for ``entries`` two companion
    tables over seeds: SalUn's (``NAME_salun``: UA, RA, TA, MIA-efficacy, run time, average
    gap to Retrain) and the geometry (``NAME_geometry``: NC metrics, CKA to the original and
    the retrained model); then the long-format CSV so far. Returns the markdown of all three."""
    c = study.config
    out = study.out_dir(name)
    extra = {"forget_sets": c.forget_sets, "seeds": list(study.seeds)}
    report.bar_plot(rows, out / f"{name}.png", plot_title)
    md = report.write_table(out, name, rows, title, extra)
    md += f"\nPlot: [{name}/{name}.png]({name}/{name}.png)\n"
    matrix = report.forget_set_matrix(rows, title=title.split(":")[0])
    write_text_atomic(out / f"{name}_by_forget_set.md", matrix)
    md += "\n" + matrix
    if entries:
        md += "\n" + report.write_table(
            out, f"{name}_salun", study.rows(entries, report.SALUN_TABLE_COLUMNS, gap=True),
            f"{title.split(':')[0]}: SalUn's metrics (UA = 1 - forget train accuracy, RA = retain train "
            "accuracy, TA = retain test accuracy; average gap to Retrain over the four; run time per model, the "
            "seeds of one batched (vmap) program sharing its time equally)", extra, per_forget_set=False)
        md += "\n" + report.write_table(
            out, f"{name}_geometry", study.rows(entries, report.GEOMETRY_COLUMNS),
            f"{title.split(':')[0]}: neural collapse of the train features and CKA of the forget-class test "
            "features to the original / retrained model", extra, per_forget_set=False)
    study.write_records()
    return md
