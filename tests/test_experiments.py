"""Every experiment on a tiny digits study: outputs exist, numbers trace back to evaluations,
and a second run resumes from disk instead of recomputing."""

import json

import numpy as np
import pytest

import experiments
from experiments import configs
from experiments.configs import MethodRun
from experiments.study import Study
from tiny_study import TINY


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    study = Study(TINY, d, progress=False)
    for name in experiments.EXPERIMENTS:
        __import__(f"experiments.{name}").__dict__[name].run(study)
    return d


@pytest.mark.parametrize("name", experiments.EXPERIMENTS)
def test_each_experiment_writes_json_markdown_latex_png(study_dir, name):
    out = study_dir / name
    assert any(out.glob("*.json")) and any(out.glob("*.md")) and any(out.glob("*.png"))
    if name != "features":
        assert any(out.glob("*.tex"))


def test_table_numbers_come_from_evaluations(study_dir):
    """Each cell is the mean over seeds of the per-seed evaluations (one forget set here)."""
    table = json.loads((study_dir / "table1" / "table1.json").read_text())
    evs = [json.loads((study_dir / "evals" / f"random_label-full-f3-s{s}.json").read_text()) for s in TINY.seeds]
    row = next(r for r in table["rows"] if r["name"] == "random_label")
    assert row["cells"]["lp_forget"]["mean"] == pytest.approx(np.mean([e["lp"]["forget"] for e in evs]))
    assert row["cells"]["full_forget"]["mean"] == pytest.approx(np.mean([e["full"]["forget"] for e in evs]))
    assert row["cells"]["lp_forget"]["std"] == pytest.approx(np.std([e["lp"]["forget"] for e in evs], ddof=1))
    assert row["n"] == len(TINY.seeds) and all(e["full"]["forget"] <= 0.1 for e in evs)  # output forgot
    md = (study_dir / "table1" / "table1.md").read_text()
    assert f"{100 * np.mean([e['lp']['forget'] for e in evs]):.1f}" in md
    lp = [100 * e["lp"]["forget"] for e in evs]  # the forget-set matrix: this forget set, then pooled
    cell = f"{np.mean(lp):.1f} ± {np.std(lp, ddof=1):.1f}"
    matrix = (study_dir / "table1" / "table1_by_forget_set.md").read_text().split("LP forget per forget set")[1]
    assert f"| random_label | {len(TINY.seeds)} | {cell} | {cell} |" in matrix


def test_long_csv_has_every_seed_forget_set_and_model_and_tables_recompute_from_it(study_dir):
    from scipy import stats

    from jaxunlearn import report
    recs = report.read_long_csv(study_dir / "results_long.csv")
    models = {(r["method"], r["mode"]) for r in recs}
    assert {("original", "full"), ("retrain", "full"), ("random_label", "full"), ("random_label", "cmf"),
            ("random_label", "classifier_only"), ("classifier_edit", "full"), ("cmf_original", "cmf")} <= models
    for m in models:  # every model has every seed x forget set
        got = {(r["seed"], r["forget_set"]) for r in recs if (r["method"], r["mode"]) == m and r["head"] == "full"
               and r["split"] == "forget"}
        assert got == {(s, "f3") for s in TINY.seeds}, m
    table = json.loads((study_dir / "table3" / "table3.json").read_text())
    for row in table["rows"]:
        for head in ("full", "lp", "ncc"):
            vals = [r["accuracy"] for r in recs if (r["method"], r["mode"]) == (row["method"], row["mode"])
                    and r["head"] == head and r["split"] == "forget"]
            cell = row["cells"][f"{head}_forget"]
            assert cell["mean"] == pytest.approx(np.mean(vals)) and cell["std"] == pytest.approx(np.std(vals, ddof=1))
            half = stats.t.ppf(0.975, len(vals) - 1) * np.std(vals, ddof=1) / np.sqrt(len(vals))
            assert cell["ci95"] == pytest.approx(half)
    strategies = json.loads((study_dir / "strategies.json").read_text())
    assert strategies["original"]["strategy"] in ("vmap", "loop") and strategies["original"]["reason"]
    assert strategies["classifier_edit-full-f3"]["strategy"] == "loop"  # host-side by declaration


def test_salun_table_gap_and_geometry_table_recompute_from_evaluations(study_dir):
    """SalUn's table: UA / RA / TA / MIA from each evaluation, the average gap = the mean of the
    four |value - Retrain's value| on the same seed (0 for Retrain), run time from the run."""
    table = json.loads((study_dir / "table1" / "table1_salun.json").read_text())
    rows = {r["name"]: r for r in table["rows"]}
    ev = lambda name, s: json.loads((study_dir / "evals" / f"{name}-f3-s{s}.json").read_text())
    gaps = []
    for s in TINY.seeds:
        a, b = ev("random_label-full", s), ev("retrain", s)
        va = [a["full"]["UA"], a["full"]["RA"], a["full"]["TA"], a["privacy"]["mia_efficacy"]]
        vb = [b["full"]["UA"], b["full"]["RA"], b["full"]["TA"], b["privacy"]["mia_efficacy"]]
        gaps.append(np.mean(np.abs(np.subtract(va, vb))))
    rl = rows["random_label"]["cells"]
    assert rl["model_all_avg_gap"]["mean"] == pytest.approx(np.mean(gaps))
    assert rl["full_all_UA"]["mean"] == pytest.approx(np.mean([ev("random_label-full", s)["full"]["UA"]
                                                               for s in TINY.seeds]))
    assert rows["Retrain"]["cells"]["model_all_avg_gap"]["mean"] == pytest.approx(0.0)
    assert rl["model_all_runtime_s"]["mean"] > 0
    md = (study_dir / "table1" / "table1_salun.md").read_text()
    assert "Avg. gap" in md and "MIA-efficacy" in md and "run time (s)" in md
    geo = json.loads((study_dir / "table3" / "table3_geometry.json").read_text())
    row = next(r for r in geo["rows"] if r["method"] == "random_label")
    nc1 = [ev("random_label-cmf", s)["collapse"]["nc1"] for s in TINY.seeds]
    assert row["cells"]["model_all_nc1"]["mean"] == pytest.approx(np.mean(nc1))
    cka = [ev("random_label-cmf", s)["similarity"]["original"]["forget"] for s in TINY.seeds]
    assert row["cells"]["model_forget_cka_original"]["mean"] == pytest.approx(np.mean(cka))
    # the references are the same seed's models: Retrain against itself has CKA 1
    assert all(ev("retrain", s)["similarity"]["retrained"]["forget"] == pytest.approx(1.0, abs=1e-5)
               for s in TINY.seeds)
    assert all(ev("original", s)["similarity"]["original"]["all"] == pytest.approx(1.0, abs=1e-5) for s in TINY.seeds)
    assert (study_dir / "table1" / "table1_salun.tex").is_file()


def test_theory_simulation_is_exact(study_dir):
    t = json.loads((study_dir / "theory" / "theory.json").read_text())
    exact = t["simulation"][0]
    assert exact["noise"] == 0 and exact["after"]["forget"] == 0.0 and exact["after"]["retain"] == 1.0
    edit = next(r for r in t["trained_model"] if r["name"] == "classifier_edit")
    assert edit["cells"]["full_forget"]["mean"] == 0.0


def test_second_run_resumes_from_disk(study_dir, capsys):
    study = Study(TINY, study_dir, progress=False)
    experiments.table1.run(study)
    experiments.relearn.run(study)
    out = capsys.readouterr().out
    assert "built" not in out and "evaluated" not in out


def test_results_md_links_every_plot_and_names_the_first_forget_set(study_dir):
    from experiments import _run_all
    assert _run_all(Study(TINY, study_dir, progress=False)) == 0  # resumes: every model is on disk
    md = (study_dir / "RESULTS.md").read_text()
    plots = sorted(p.relative_to(study_dir).as_posix() for p in study_dir.glob("*/*.png"))
    assert len(plots) == len(experiments.EXPERIMENTS) + 1  # features draws PCA and t-SNE
    for p in plots:
        assert f"[{p}]({p})" in md
    first = "_".join(map(str, TINY.forget_sets[0]))  # the tag the tables use: f3 for class 3
    for heading in ("Learning curves", "Feature geometry"):
        assert f"### {heading} (first forget set f{first}, seed {TINY.seeds[0]})" in md


def test_unknown_experiment_and_config():
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        experiments.run_experiment("nope")
    with pytest.raises(ValueError, match="unknown study config 'nope'"):
        configs.get_config("nope")


def test_every_study_config_names_real_methods_modes_hparams_and_options():
    """A typo in a config (a positional argument in the wrong place, an unknown option) would
    otherwise surface only deep into a long study."""
    import dataclasses
    import inspect
    import re

    from jaxunlearn.unlearn import core, get_method
    fields = {f.name for f in dataclasses.fields(core.Settings)} - {"options", "mode"}
    read = lambda mod: set(re.findall(r'option\("([a-z_]+)"', inspect.getsource(mod)))
    for config in configs.CONFIGS.values():
        for run in (*config.table1, *config.table2, *config.table3, *config.curve_methods, config.cmf_finetune):
            method = get_method(run.method)
            assert run.mode in core.MODES, (config.name, run)
            assert set(dict(run.hparams)) <= set(method.hparams), (config.name, run)
            parts = (method.phases, method.prepare, method.apply, method.streams, method.finish)
            known = fields | read(core) | set().union(*(read(inspect.getmodule(f)) for f in parts if f is not None))
            assert set(dict(run.settings)) <= known, (config.name, run, known)
            assert run.title
        keys = {r.key for r in (*config.table1, *config.table3)} | {"retrain"}
        assert set(config.relearn_methods) <= keys, config.name


def test_models_on_the_original_encoder_reuse_its_features(study_dir, monkeypatch):
    """Classifier-only and classifier_edit models keep the original's encoder bit for bit, so
    the study hands their evaluation the original's features with their own head's logits
    (no forward pass): equal to extracting them; a full-model method is extracted."""
    from jaxunlearn import evaluate
    study = Study(TINY, study_dir, progress=False)
    orig = study.original(0)
    extracted = []
    real_extract = evaluate.extract
    monkeypatch.setattr(evaluate, "extract", lambda *a, **k: extracted.append(1) or real_extract(*a, **k))
    study.features("original", 0, orig, shared=True)
    for run, reused in ((MethodRun("random_label", "classifier_only"), True), (MethodRun("classifier_edit"), True),
                        (MethodRun("random_label"), False)):
        model = study.unlearned(run, 0, 0)
        assert evaluate.shares_encoder(model[0], model[1], orig[1]) is reused
        before = len(extracted)
        f = study.features(run.key, 0, model)
        assert len(extracted) - before == (0 if reused else 1), run.key
        want = real_extract(model[0], model[1], study.ds_all)
        np.testing.assert_allclose(f.test_logits, want.test_logits, atol=1e-5)
        np.testing.assert_allclose(f.train_logits, want.train_logits, atol=1e-5)
        np.testing.assert_array_equal(f.test_feats["features"], want.test_feats["features"])
        np.testing.assert_allclose(f.weights, want.weights)
