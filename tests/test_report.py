"""report: long-format records and CSV, tables over seeds (checked against a NumPy
recomputation from the CSV), LaTeX escaping and compilation, and the plots."""

import csv
import json
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
import scipy.stats

from jaxunlearn import report

REPO = pathlib.Path(__file__).resolve().parents[1]
PDFLATEX = shutil.which("pdflatex")


def fake_eval(rng, forget_acc=None) -> dict:
    """An ``evaluate_model``-shaped dict with random numbers (every section it writes)."""
    u = lambda: float(rng.uniform(0.6, 0.95))
    acc = lambda: {"retain": u(), "forget": u(), "all": u()}
    full = {**acc(), "train_retain": u(), "train_forget": u()}
    if forget_acc is not None:
        full["forget"] = forget_acc
    full.update(UA=1 - full["train_forget"], RA=full["train_retain"], TA=full["retain"])
    return {
        "full": full, "lp": acc(), "ncc": acc(), "knn": acc(),
        "collapse": {"nc1": u(), "misalignment": u(), "forget": {"nc1": u(), "centred_norm_ratio": u()},
                     "retain": {"nc1": u()}, "authors": {"cdnv": u(), "nc1_sw": {"forget": u()}}, "nc3": None},
        "privacy": {"mia_efficacy": u(), "loss_attack": {"accuracy": u(), "auc": u(), "n_per_class": [10, 10]}},
        "similarity": {"original": {"all": u(), "retain": u(), "forget": u()},
                       "retrained": {"all": u(), "retain": u(), "forget": u()}},
        "layerwise": {"stage1": acc(), "features": acc()},
        "relearn": {"10": {"steps": [0, 10], "full": [0.0, u()], "ncc": [u(), u()], "retain": [u(), u()],
                           "num_forget": 10, "num_retain": 90}},
        "runtime_s": {"features": 1.5, "privacy": 0.25},
    }


def test_long_records_flatten_every_section():
    ev = fake_eval(np.random.default_rng(0))
    recs = report.long_records(ev, 3, [2, 4, 6], "random_label", "full")
    by = {(r["head"], r["split"]): r for r in recs}
    assert all(r["seed"] == 3 and r["forget_set"] == "f2_4_6" and r["method"] == "random_label"
               and r["mode"] == "full" for r in recs)
    assert len(by) == len(recs)  # one record per (head, split)
    for head in ("full", "lp", "ncc", "knn"):
        for split in ("retain", "forget", "all"):
            assert by[head, split]["accuracy"] == ev[head][split]
    assert by["full", "train_forget"]["accuracy"] == ev["full"]["train_forget"]
    assert by["full", "all"]["UA"] == ev["full"]["UA"] and by["full", "all"]["TA"] == ev["full"]["TA"]
    m = by["model", "all"]
    assert m["nc1"] == ev["collapse"]["nc1"] and m["misalignment"] == ev["collapse"]["misalignment"]
    assert m["mia_efficacy"] == ev["privacy"]["mia_efficacy"]
    assert m["loss_attack_auc"] == ev["privacy"]["loss_attack"]["auc"]
    assert m["cka_original"] == ev["similarity"]["original"]["all"]
    assert m["runtime_features_s"] == 1.5
    assert by["model", "forget"]["nc1"] == ev["collapse"]["forget"]["nc1"]
    assert m["authors_cdnv"] == ev["collapse"]["authors"]["cdnv"]
    assert m["authors_nc1_sw_forget"] == ev["collapse"]["authors"]["nc1_sw"]["forget"]
    assert "nc3" not in m  # None: undefined, not a column value
    assert by["model", "forget"]["cka_retrained"] == ev["similarity"]["retrained"]["forget"]
    assert by["lp_stage1", "forget"]["accuracy"] == ev["layerwise"]["stage1"]["forget"]
    assert by["full", "forget"]["relearn_k10_end"] == ev["relearn"]["10"]["full"][-1]
    assert by["full", "retain"]["relearn_k10_end"] == ev["relearn"]["10"]["retain"][-1]
    assert not any("n_per_class" in k for r in recs for k in r)  # lists are not columns


def test_long_records_of_a_study_evaluation_file():
    path = REPO / "docs/results/study-fashion_mnist/evals/random_label-full-f0-s0.json"
    if not path.is_file():
        pytest.skip("no stored study evaluation")
    ev = json.loads(path.read_text())
    by = {(r["head"], r["split"]): r for r in report.long_records(ev, 0, "f0", "random_label", "full")}
    assert by["ncc", "forget"]["accuracy"] == ev["ncc"]["forget"]
    assert by["model", "all"]["mia_efficacy"] == ev["privacy"]["mia_efficacy"]
    assert by["model", "retain"]["nc2_etf_distance"] == ev["collapse"]["retain"]["nc2_etf_distance"]


def test_long_records_generic_sections_and_bad_input():
    recs = report.long_records({"full": {"forget": 0.0}, "extra": {"a": {"b": 2}}, "wall": 3, "tag": "x"},
                               0, "f0", "m", "full")
    by = {(r["head"], r["split"]): r for r in recs}
    assert by["model", "all"] == {"seed": 0, "forget_set": "f0", "method": "m", "mode": "full", "head": "model",
                                  "split": "all", "extra_a_b": 2.0, "wall": 3.0}
    with pytest.raises(ValueError, match="seed must be an int"):
        report.long_records({}, "0", "f0", "m", "full")
    with pytest.raises(ValueError, match="mode must be a non-empty string"):
        report.long_records({}, 0, "f0", "m", "")
    with pytest.raises(ValueError, match="forget set is empty"):
        report.long_records({}, 0, [], "m", "full")
    with pytest.raises(ValueError, match="clashes"):
        report.long_records({"seed": 1.0}, 0, "f0", "m", "full")


def _grid(seeds=(0, 1, 2), forget_sets=("f0", "f8"), models=(("original", "none"), ("random_label", "full"),
                                                            ("random_label", "cmf"))):
    rng = np.random.default_rng(42)
    recs = []
    for s in seeds:
        for f in forget_sets:
            for m, mode in models:
                recs += report.long_records(fake_eval(rng, 0.0 if mode == "full" else None), s, f, m, mode)
    return recs


def test_csv_round_trip_is_exact_and_ordered(tmp_path):
    recs = _grid()
    path = tmp_path / "long.csv"
    report.write_long_csv(path, recs)
    assert [p.name for p in tmp_path.iterdir()] == ["long.csv"]  # no temporary left behind
    header = path.read_text().splitlines()[0].split(",")
    assert header[:7] == ["seed", "forget_set", "method", "mode", "head", "split", "accuracy"]
    assert header[7:] == sorted(header[7:])
    back = report.read_long_csv(path)
    assert [{k: v for k, v in r.items() if v is not None} for r in back] == recs
    with pytest.raises(ValueError, match="two records"):
        report.write_long_csv(tmp_path / "dup.csv", recs + recs[:1])
    with pytest.raises(ValueError, match="has no seed"):
        report.write_long_csv(tmp_path / "bad.csv", [{"method": "m"}])
    with pytest.raises(ValueError, match="does not exist"):
        report.read_long_csv(tmp_path / "nope.csv")


def _numpy_from_csv(path, method, mode, head, split, metric="accuracy"):
    """``[seeds, forget sets]`` array of one cell, parsed with the csv module and NumPy only."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r["method"], r["mode"], r["head"], r["split"]) == (method, mode, head, split)]
    seeds = sorted({int(r["seed"]) for r in rows})
    fss = sorted({r["forget_set"] for r in rows}, key=lambda s: int(s[1:]))
    a = np.full((len(seeds), len(fss)), np.nan)
    for r in rows:
        a[seeds.index(int(r["seed"])), fss.index(r["forget_set"])] = float(r[metric])
    return a, fss


def _check(summary, values):
    n = len(values)
    assert summary["n"] == n
    assert summary["mean"] == pytest.approx(np.mean(values), rel=1e-12, abs=1e-15)
    assert summary["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-9, abs=1e-15)
    half = scipy.stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n)
    assert summary["ci95"] == pytest.approx(half, rel=1e-9, abs=1e-15)


def test_table_statistics_equal_numpy_recomputation_from_csv(tmp_path):
    path = tmp_path / "long.csv"
    report.write_long_csv(path, _grid())
    records = report.read_long_csv(path)
    cols = report.COLUMNS + [("full", "all", "UA"), ("model", "all", "mia_efficacy"), ("model", "forget", "nc1")]
    models = [("original", "none", "Original"), ("random_label", "full"), ("random_label", "cmf")]
    rows = report.rows_over_seeds(records, models, cols)
    assert [r["name"] for r in rows] == ["Original", "random_label", "random_label (cmf)"]
    for row, (m, mode, *_) in zip(rows, models):
        assert row["seeds"] == [0, 1, 2] and row["forget_sets"] == ["f0", "f8"] and row["n"] == 3
        for col in cols:
            h, s, metric = (*col, "accuracy")[:3]
            a, fss = _numpy_from_csv(path, m, mode, h, s, metric)
            key = report.column_key(col)
            _check(row["cells"][key], a.mean(axis=1))  # pooled: per-seed mean over forget sets
            for j, f in enumerate(fss):
                _check(row["per_forget_set"][f][key], a[:, j])
    # the markdown prints exactly these numbers
    md = report.markdown_table(rows, "T")
    c = rows[0]["cells"]["lp_forget"]
    assert f"{100 * c['mean']:.1f} ± {100 * c['std']:.1f} [{100 * c['ci_low']:.1f}, {100 * c['ci_high']:.1f}]" in md
    assert "over n = 3 seeds" in md and "forget set f8" in md
    assert rows[1]["cells"]["full_forget"]["mean"] == 0.0


def test_forget_set_matrix_prints_each_forget_sets_seed_statistics(tmp_path):
    path = tmp_path / "long.csv"
    report.write_long_csv(path, _grid(forget_sets=("f0", "f3", "f8")))
    models = [("original", "none", "Original"), ("random_label", "cmf")]
    rows = report.rows_over_seeds(report.read_long_csv(path), models)
    md = report.forget_set_matrix(rows, title="T")
    for head in ("full", "lp", "ncc"):
        block = md.split(f"### T: {report.HEADER[head]} forget")[1].split("###")[0]
        assert "| method | n | f0 | f3 | f8 | pooled |" in block
        for row, (m, mode, *_) in zip(rows, models):
            a, fss = _numpy_from_csv(path, m, mode, head, "forget")
            assert fss == ["f0", "f3", "f8"]
            cells = [f"{100 * a[:, j].mean():.1f} ± {100 * a[:, j].std(ddof=1):.1f}" for j in range(3)]
            pooled = a.mean(axis=1)
            cells.append(f"{100 * pooled.mean():.1f} ± {100 * pooled.std(ddof=1):.1f}")
            line = next(ln for ln in block.splitlines() if ln.startswith(f"| {row['name']} |"))
            assert line == f"| {row['name']} | 3 | " + " | ".join(cells) + " |"


def test_rows_over_seeds_refuses_holes_and_unknown_methods():
    recs = [r for r in _grid() if not (r["seed"] == 1 and r["forget_set"] == "f8" and r["method"] == "original")]
    with pytest.raises(ValueError, match="no record for seed 1, forget set f8"):
        report.rows_over_seeds(recs, [("original", "none")])
    rows = report.rows_over_seeds(recs, [("original", "none")], seeds=[0, 2])
    assert rows[0]["n"] == 2
    rows = report.rows_over_seeds(recs, [("original", "none")], forget_sets=["f0"])
    assert rows[0]["n"] == 3 and rows[0]["forget_sets"] == ["f0"]
    with pytest.raises(ValueError, match="no records of method 'nope'"):
        report.rows_over_seeds(recs, [("nope", "full")])


def test_a_missing_metric_leaves_the_seed_out_of_the_pooled_cell():
    recs = _grid(forget_sets=("f0", "f1"))
    for r in recs:
        if r["seed"] == 0 and r["forget_set"] == "f1" and r["head"] == "knn":
            r["accuracy"] = None
    row = report.rows_over_seeds(recs, [("original", "none")], [("knn", "forget")])[0]
    assert row["cells"]["knn_forget"]["n"] == 2
    assert row["per_forget_set"]["f0"]["knn_forget"]["n"] == 3


def test_single_seed_renders_without_interval():
    rows = report.rows_over_seeds(_grid(seeds=(0,)), [("original", "none")])
    md = report.markdown_table(rows, "one seed", per_forget_set=False)
    assert "[" not in md.split("*")[0] and "n = 1 seeds" in md


def test_latex_escape():
    assert report.latex_escape("random_label") == r"random\_label"
    assert report.latex_escape("a & b % c # d $ e") == r"a \& b \% c \# d \$ e"
    assert report.latex_escape("{x}") == r"\{x\}"
    assert report.latex_escape("~^\\") == r"\textasciitilde{}\textasciicircum{}\textbackslash{}"
    assert report.latex_escape("74 ± 1 → 0") == r"74 $\pm$ 1 $\rightarrow$ 0"
    assert report.latex_escape("plain text, (1)") == "plain text, (1)"
    assert report.latex_escape(3) == "3"


def test_legacy_rows_render_as_before():
    rows = [report.row_from_evals("random_label", [{"full": {"retain": 0.9, "forget": 0.0}},
                                                   {"full": {"retain": 0.8, "forget": 0.1}}])]
    md = report.markdown_table(rows, "t")
    assert "| random_label | 85.00 ± 5.00 | 5.00 ± 5.00 |" in md
    tex = report.latex_table(rows, "Table (fashion_mnist): 100%")
    assert r"random\_label &" in tex and r"(fashion\_mnist): 100\%" in tex


def _tables(tmp_path):
    """Every kind of LaTeX file the library writes, from synthetic and stored study data."""
    from experiments import layerwise, learning_curve, relearn
    recs = _grid()
    out = {}
    rows = report.rows_over_seeds(recs, [("original", "none", "Original_model & #1"), ("random_label", "full"),
                                         ("random_label", "cmf", "random_label + CMF")])
    out["seed_table"] = report.latex_table(rows, "Table 1 (fashion_mnist, cnn): 50% of {x}~^\\.")
    out["salun_table"] = report.latex_table(report.rows_over_seeds(
        recs, [("random_label", "full")], [("full", "all", "UA"), ("full", "all", "RA"), ("full", "all", "TA"),
                                           ("model", "all", "mia_efficacy"), ("model", "forget", "cka_original")]),
        "SalUn-style")
    legacy = [report.row_from_evals("neggrad_plus (classifier_only)", [fake_eval(np.random.default_rng(1))])]
    out["legacy_table"] = report.latex_table(legacy, "Table 2 (fashion_mnist)")
    write_dir = tmp_path / "written"
    report.write_table(write_dir, "table1", rows, "Table 1 (fashion_mnist, cnn): baseline_unlearning")
    out["write_table"] = (write_dir / "table1.tex").read_text()
    res = REPO / "docs/results/study-fashion_mnist"
    if (res / "layerwise/layerwise.json").is_file():
        d = json.loads((res / "layerwise/layerwise.json").read_text())
        layerwise.write_outputs(tmp_path / "lw", "fashion_mnist", d["probes"], d["forget_set"])
        out["layerwise"] = (tmp_path / "lw/layerwise.tex").read_text()
        d = json.loads((res / "relearn/relearn.json").read_text())
        relearn.write_outputs(tmp_path / "rl", "fashion_mnist", d["curves"], 30)
        out["relearn"] = (tmp_path / "rl/relearn.tex").read_text()
        d = json.loads((res / "learning_curve/learning_curve.json").read_text())
        learning_curve.write_outputs(tmp_path / "lc", "fashion_mnist", d["curves"])
        out["learning_curve"] = (tmp_path / "lc/learning_curve.tex").read_text()
    return out


def test_generated_latex_has_no_bare_specials(tmp_path):
    for name, tex in _tables(tmp_path).items():
        body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
        for word in ("random_label", "fashion_mnist", "neggrad_plus", "classifier_only", "50%"):
            assert word not in body, (name, word)


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed")
def test_every_generated_latex_file_compiles(tmp_path):
    for name, tex in _tables(tmp_path).items():
        d = tmp_path / f"tex_{name}"
        d.mkdir()
        (d / "table.tex").write_text(tex)
        (d / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                   "\\input{table.tex}\n\\end{document}\n")
        r = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=d,
                           capture_output=True, text=True, timeout=120)
        errors = [line for line in r.stdout.splitlines() if line.startswith("!")]
        assert r.returncode == 0 and not errors, (name, errors or r.stdout[-2000:])
        assert (d / "doc.pdf").is_file()


def _is_png(path):
    return pathlib.Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_are_written(tmp_path):
    from experiments import features
    recs = _grid()
    rows = report.rows_over_seeds(recs, [("original", "none"), ("random_label", "full"), ("random_label", "cmf")])
    report.bar_plot(rows, tmp_path / "seed_bars.png", "seeds")
    report.bar_plot([report.row_from_evals("x", [fake_eval(np.random.default_rng(0), 0.0)])],
                    tmp_path / "legacy_bars.png", "legacy", error="std")
    with pytest.raises(ValueError, match="error must be"):
        report.bar_plot(rows, tmp_path / "x.png", "x", error="sem")
    series = {f"s{i}": ([0, 10, 20], [0.1 * i, None, 0.05 * i], [0.01, 0.02, 0.01]) for i in range(12)}
    report.line_plot(series, tmp_path / "lines.png", "lines", "step", "acc", error_label="band: std over seeds")
    report.line_panels({"k = 10": {"a": ([0, 12], [0, 1]), "b": ([0, 12], [1, 0])}, "k = 100": {"a": ([0, 10], [0, 1])}},
                       tmp_path / "panels.png", "panels", "step", "acc", note="one seed")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 200)
    features.draw({"A": rng.normal(size=(200, 2)), "B": rng.normal(size=(200, 2))}, y, [0],
                  [f"class {k}" for k in range(10)], tmp_path / "feat.png", "features")
    for p in ("seed_bars", "legacy_bars", "lines", "panels", "feat"):
        assert _is_png(tmp_path / f"{p}.png"), p
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary


def test_series_styles_are_distinct():
    styles = [report.series_style(i) for i in range(30)]
    assert len({(s["color"], str(s["linestyle"]), s["marker"]) for s in styles}) == 30
    first = styles[:10]
    assert len({s["color"] for s in first}) == len({str(s["linestyle"]) for s in first}) == 10


def test_average_gap_to_retrain_equals_numpy():
    recs = _grid(models=(("retrain", "full"), ("random_label", "full")))
    out = report.with_gap(recs)
    assert len(out) == len(recs) and recs[0].get("avg_gap") is None  # copies, input untouched
    get = lambda m, s, f, h, sp, c: next(r[c] for r in recs if (r["method"], r["seed"], r["forget_set"], r["head"],
                                                                 r["split"]) == (m, s, f, h, sp))
    for r in out:
        if r["head"] == "model" and r["split"] == "all":
            want = np.mean([abs(get(r["method"], r["seed"], r["forget_set"], h, sp, c)
                                - get("retrain", r["seed"], r["forget_set"], h, sp, c))
                            for h, sp, c in report.SALUN_COLUMNS])
            assert r["avg_gap"] == pytest.approx(want, abs=1e-15)
            if r["method"] == "retrain":
                assert r["avg_gap"] == 0.0
    row = report.rows_over_seeds(out, [("random_label", "full")], report.SALUN_COLUMNS + [("model", "all", "avg_gap")])[0]
    assert row["cells"]["model_all_avg_gap"]["n"] == 3
    assert "| Avg. gap |" in report.markdown_table([row], "SalUn")
    with pytest.raises(ValueError, match="no records of the reference"):
        report.with_gap(recs, reference=("nope", "none"))
