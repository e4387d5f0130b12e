"""The evaluator registry and each metric family against an independent reference (sklearn or a
NumPy transcription), for class and sample forget sets; the forget set as data (run.json record)."""

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.svm import SVC
from test_similarity import ref_cka
from threadpoolctl import threadpool_limits

from jaxunlearn import collapse as collapse_lib, data as data_lib, evaluators, heads, report
from jaxunlearn.evaluators import Evaluator, Features, ForgetSet, Inputs

K, D, N, M = 4, 12, 600, 240


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(1):  # tiny sklearn fits are far slower with contending BLAS threads
        yield


@pytest.fixture(scope="module")
def synth():
    """Features of a noisy 4-class mixture, logits of a random classifier, and reference features."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(K, D)) * 1.5
    ytr, yte = rng.integers(0, K, N), rng.integers(0, K, M)
    xtr = (centres[ytr] + rng.normal(size=(N, D))).astype(np.float32)
    xte = (centres[yte] + rng.normal(size=(M, D))).astype(np.float32)
    w, b = rng.normal(size=(K, D)).astype(np.float32), rng.normal(size=K).astype(np.float32)
    # "stage1": another view of the same size, so the probe's compiled shapes are reused
    f = Features(xtr @ w.T + b, {"features": xtr, "stage1": np.tanh(xtr[:, ::-1])}, xte @ w.T + b,
                 {"features": xte, "stage1": np.tanh(xte[:, ::-1])}, w, b)
    mix = rng.normal(size=(D, D)).astype(np.float32)
    ref = Features(None, {"features": np.tanh(xtr @ mix)}, None, {"features": np.tanh(xte @ mix)}, None, None)
    return Inputs(f, ytr, yte, K, {"original": ref})


def forget_sets(inputs):
    """A class forget set (class 2) and a sample forget set (60 random training samples)."""
    idx = np.sort(np.random.default_rng(1).choice(N, 60, replace=False))
    return {"classes": ForgetSet.from_classes(inputs.train_labels, inputs.test_labels, [2]),
            "samples": ForgetSet.from_indices(N, M, idx)}


def masks(inputs, kind):
    """NumPy transcription of the masks: (train forget, test forget)."""
    if kind == "classes":
        return inputs.train_labels == 2, inputs.test_labels == 2
    tr = np.zeros(N, bool)
    tr[np.sort(np.random.default_rng(1).choice(N, 60, replace=False))] = True
    return tr, np.zeros(M, bool)


def ref_accuracy(pred_te, pred_tr, inputs, kind, train_splits):
    """The accuracy dict written out with NumPy masks."""
    tr_f, te_f = masks(inputs, kind)
    acc = lambda p, y, m: None if m.sum() == 0 else float(np.mean(p[m] == y[m]))
    out = {"retain": acc(pred_te, inputs.test_labels, ~te_f), "forget": acc(pred_te, inputs.test_labels, te_f),
           "all": acc(pred_te, inputs.test_labels, np.ones(M, bool))}
    if train_splits:
        out["train_retain"] = acc(pred_tr, inputs.train_labels, ~tr_f)
        out["train_forget"] = acc(pred_tr, inputs.train_labels, tr_f)
    return out


def fit_rows(inputs, kind):
    """The rows a head is fitted on: all training rows (classes), the retain rows (samples)."""
    return np.ones(N, bool) if kind == "classes" else ~masks(inputs, kind)[0]


def assert_acc(got, want, tol=0.0):
    assert set(got) == set(want)
    for k, v in want.items():
        if v is None:
            assert got[k] is None, k
        else:
            assert got[k] == pytest.approx(v, abs=tol), k


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_shape():
    assert evaluators.names() == ["full", "lp", "ncc", "knn", "collapse", "privacy", "similarity", "layerwise",
                                  "relearn"]
    for name, e in evaluators.REGISTRY.items():
        assert e.name == name and callable(e.evaluate) and callable(e.columns) and e.summary
        assert set(e.needs) <= set(evaluators.NEEDS)
    assert set(evaluators.DEFAULT) <= set(evaluators.REGISTRY)
    assert "forgetting_quality" in evaluators.POOL_FAMILIES and "forgetting_quality" not in evaluators.REGISTRY


def test_registry_refuses_unknown_names_and_unmet_needs(synth):
    fs = forget_sets(synth)["classes"]
    with pytest.raises(ValueError, match="unknown evaluator 'nope'; choose from full, lp"):
        evaluators.run(synth, fs, ["ncc", "nope"])
    bare = synth._replace(features=synth.features._replace(train_logits=None, test_logits=None))
    with pytest.raises(ValueError, match="evaluator 'privacy' needs logits"):
        evaluators.run(bare, fs, ["privacy"])
    with pytest.raises(ValueError, match="evaluator 'relearn' needs model"):
        evaluators.run(synth, fs, ["relearn"])
    with pytest.raises(ValueError, match="do not match the splits"):
        evaluators.run(synth, ForgetSet.from_indices(N + 1, M, [0]), ["ncc"])
    with pytest.raises(ValueError, match="exists; pass replace=True"):
        evaluators.register(evaluators.REGISTRY["ncc"])
    with pytest.raises(ValueError, match="reserved"):
        evaluators.register(Evaluator("runtime_s", lambda i, f: {}, lambda v: []))
    with pytest.raises(ValueError, match="unknown pool family"):
        evaluators.pool_family("nope")


def test_one_module_adds_a_section_and_its_columns(synth, monkeypatch):
    """A new family: registered once, it is selected by name and names its own report columns."""
    def evaluate(inputs, forget, scale=1.0):
        return {"mean_norm": scale * float(np.linalg.norm(inputs.features.train_feats["features"], axis=1).mean())}

    new = Evaluator("norms", evaluate, lambda v: [("model", "all", f"norms_{k}", x) for k, x in v.items()])
    monkeypatch.setitem(evaluators.REGISTRY, "norms", new)
    fs = forget_sets(synth)["classes"]
    out, timings = evaluators.run(synth, fs, {"ncc": {}, "norms": {"scale": 2.0}})
    want = 2.0 * np.linalg.norm(synth.features.train_feats["features"], axis=1).mean()
    assert list(out) == ["ncc", "norms"] and set(timings) == {"ncc", "norms"}
    assert out["norms"]["mean_norm"] == pytest.approx(want, rel=1e-6)
    by = {(r["head"], r["split"]): r for r in report.long_records(out, 0, [2], "m", "full")}
    assert by["model", "all"]["norms_mean_norm"] == out["norms"]["mean_norm"]
    assert by["ncc", "forget"]["accuracy"] == out["ncc"]["forget"]


# ----------------------------------------------------------------------------- families


@pytest.mark.parametrize("kind", ["classes", "samples"])
def test_output_against_numpy(synth, kind):
    fs = forget_sets(synth)[kind]
    got = evaluators.get("full").evaluate(synth, fs)
    f = synth.features
    want = ref_accuracy(f.test_logits.argmax(1), f.train_logits.argmax(1), synth, kind, True)
    assert_acc({k: got[k] for k in want}, want)
    assert got["UA"] == pytest.approx(1 - want["train_forget"]) and got["RA"] == want["train_retain"]
    assert got["TA"] == want["retain"]
    if kind == "classes":  # the class case is heads.split_accuracy's convention
        assert {k: got[k] for k in ("retain", "forget", "all")} == heads.split_accuracy(
            f.test_logits.argmax(1), synth.test_labels, [2])
    else:
        assert got["forget"] is None and got["retain"] == got["all"]


@pytest.mark.parametrize("kind", ["classes", "samples"])
def test_ncc_against_sklearn(synth, kind):
    fs = forget_sets(synth)[kind]
    f, rows = synth.features, fit_rows(synth, kind)
    ref = NearestCentroid().fit(f.train_feats["features"][rows].astype(np.float64), synth.train_labels[rows])
    pred = lambda x: ref.predict(x.astype(np.float64))
    want = ref_accuracy(pred(f.test_feats["features"]), pred(f.train_feats["features"]), synth, kind,
                        kind == "samples")
    assert_acc(evaluators.get("ncc").evaluate(synth, fs), want)


@pytest.mark.parametrize("kind", ["classes", "samples"])
def test_knn_against_sklearn(synth, kind):
    fs = forget_sets(synth)[kind]
    f, rows = synth.features, fit_rows(synth, kind)
    ref = KNeighborsClassifier(5, metric="cosine", algorithm="brute").fit(
        f.train_feats["features"][rows].astype(np.float64), synth.train_labels[rows])
    pred = lambda x: ref.predict(x.astype(np.float64))
    want = ref_accuracy(pred(f.test_feats["features"]), pred(f.train_feats["features"]), synth, kind,
                        kind == "samples")
    assert_acc(evaluators.get("knn").evaluate(synth, fs), want)  # continuous data: no distance ties


@pytest.mark.parametrize("kind", ["classes", "samples"])
def test_probe_against_sklearn(synth, kind):
    """The fast probe is sklearn's LogisticRegression(C = 1 / (l2 n)) on standardised features of
    the fitted rows (heads.linear_probe_fit); a few borderline samples may flip."""
    fs = forget_sets(synth)[kind]
    f, rows = synth.features, fit_rows(synth, kind)
    x = f.train_feats["features"][rows].astype(np.float64)
    mu, sd = x.mean(0), x.std(0)
    clf = LogisticRegression(C=1.0 / (1e-4 * rows.sum()), max_iter=1000, tol=1e-8).fit((x - mu) / sd,
                                                                                   synth.train_labels[rows])
    pred = lambda z: clf.predict((z.astype(np.float64) - mu) / sd)
    want = ref_accuracy(pred(f.test_feats["features"]), pred(f.train_feats["features"]), synth, kind,
                        kind == "samples")
    assert_acc(evaluators.get("lp").evaluate(synth, fs), want, tol=3 / 60)


def test_layerwise_is_the_probe_per_stage(synth):
    fs = forget_sets(synth)["samples"]
    got = evaluators.get("layerwise").evaluate(synth, fs)
    assert list(got) == ["stage1", "features"]
    for stage in got:
        assert got[stage] == evaluators.get("lp").evaluate(synth, fs, feature=stage)
    by = {(h, s): x for h, s, c, x in evaluators.columns("layerwise", got)}
    assert by["lp_stage1", "train_forget"] == got["stage1"]["train_forget"]


@pytest.mark.parametrize("kind", ["classes", "samples"])
def test_privacy_against_sklearn(synth, kind):
    """SalUn's SVC on p[y] of retain-train (members) vs non-forget test samples; forget = the
    forgotten training samples; the loss attack: forgotten vs forget-class test (or all test)."""
    fs = forget_sets(synth)[kind]
    tr_f, te_f = masks(synth, kind)
    f = synth.features
    p_tr = softmax(f.train_logits.astype(np.float64), 1)[np.arange(N), synth.train_labels]
    p_te = softmax(f.test_logits.astype(np.float64), 1)[np.arange(M), synth.test_labels]
    members, non = p_tr[~tr_f], p_te[~te_f]
    x = np.concatenate([members[:len(non)], non])[:, None]
    y = np.concatenate([np.ones(min(len(members), len(non))), np.zeros(len(non))])
    want = 1 - SVC(C=3, gamma="auto", kernel="rbf").fit(x, y).predict(p_tr[tr_f][:, None]).mean()
    got = evaluators.get("privacy").evaluate(synth, fs)
    assert got["mia_efficacy"] == pytest.approx(want, abs=1e-6)
    n_non = te_f.sum() if kind == "classes" else M  # balanced: both groups cut to the smaller
    assert got["loss_attack"]["n_per_class"] == [int(min(tr_f.sum(), n_non))] * 2


@pytest.mark.parametrize("kind", ["classes", "samples"])
def test_similarity_against_numpy_cka(synth, kind):
    fs = forget_sets(synth)[kind]
    tr_f, te_f = masks(synth, kind)
    a, b = synth.features, synth.references["original"]
    got = evaluators.get("similarity").evaluate(synth, fs)["original"]
    xa, xb = a.test_feats["features"], b.test_feats["features"]
    assert got["all"] == pytest.approx(ref_cka(xa, xb), abs=1e-5)
    assert got["retain"] == pytest.approx(ref_cka(xa[~te_f], xb[~te_f]), abs=1e-5)
    if kind == "classes":
        assert got["forget"] == pytest.approx(ref_cka(xa[te_f], xb[te_f]), abs=1e-5) and "train_forget" not in got
    else:
        assert got["forget"] is None
        assert got["train_forget"] == pytest.approx(
            ref_cka(a.train_feats["features"][tr_f], b.train_feats["features"][tr_f]), abs=1e-5)
    assert evaluators.get("similarity").evaluate(synth._replace(references=None), fs) is None


def test_collapse_is_collapse_metrics(synth):
    """collapse_metrics is tested against NumPy in test_collapse; the family passes it the training
    features, the classifier and the forget classes."""
    f = synth.features
    got = evaluators.get("collapse").evaluate(synth, forget_sets(synth)["classes"])
    want = collapse_lib.collapse_metrics(f.train_feats["features"], synth.train_labels, K, f.weights, f.bias, [2])
    assert got["nc1"] == pytest.approx(want["nc1"], rel=1e-6)
    assert got["forget"]["nc1"] == pytest.approx(want["forget"]["nc1"], rel=1e-6)
    # (sample forgetting passes no classes: the CLI test checks it has no forget restriction)


# ----------------------------------------------------------------------------- the forget set as data


def test_forget_record_round_trip(digits):
    spec = data_lib.parse_forget("0.1", digits.num_classes, seed=3)
    rec = evaluators.forget_record(digits, spec)
    assert rec["kind"] == "samples" and rec["fraction"] == 0.1 and rec["seed"] == 3
    fs = evaluators.forget_from_record(digits, rec)
    split = data_lib.forget_split(digits, spec)
    np.testing.assert_array_equal(np.flatnonzero(fs.train), split.train_forget)
    assert not fs.test.any() and fs.kind == "samples" and rec["num_forget"] == len(split.train_forget)
    # another training split (max_train) is refused, not silently evaluated on other samples
    small = digits._replace(train_labels=digits.train_labels[:-1], train_images=digits.train_images[:-1])
    with pytest.raises(ValueError, match="drawn from .* training samples but the dataset has"):
        evaluators.forget_from_record(small, rec)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        evaluators.forget_from_record(digits, {**rec, "sha256": "0" * 16})
    cls = evaluators.forget_from_record(digits, evaluators.forget_record(digits, "3,5"))
    np.testing.assert_array_equal(cls.train, np.isin(digits.train_labels, [3, 5]))
    assert cls.classes == (3, 5) and cls.kind == "classes"
    idx = evaluators.forget_from_record(digits, {"kind": "indices", "indices": [4, 1, 4]})
    assert np.flatnonzero(idx.train).tolist() == [1, 4]
    with pytest.raises(ValueError, match="outside the training split"):
        ForgetSet.from_indices(10, 5, [10])
    with pytest.raises(ValueError, match="unknown forget record kind"):
        evaluators.forget_from_record(digits, {"kind": "rows"})
