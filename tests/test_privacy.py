"""Membership-inference attacks against the same sklearn procedures written out."""

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from jaxunlearn import privacy


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Tiny sklearn fits run ~50x slower when BLAS threads contend with XLA's threads."""
    with threadpool_limits(1):
        yield


def _confidences(seed):
    rng = np.random.default_rng(seed)
    retain = rng.beta(8, 1, 700)  # members: confident
    test = rng.beta(3, 2, 300)  # non-members: less so
    forget = rng.beta(4, 2, 200)
    return retain, test, forget


def test_mia_efficacy_equals_salun_procedure():
    retain, test, forget = _confidences(0)
    x = np.concatenate([retain[: len(test)], test])[:, None]
    y = np.concatenate([np.ones(len(test)), np.zeros(len(test))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    want = 1 - clf.predict(forget[:, None]).mean()
    got = privacy.mia_efficacy(retain, test, forget)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0.0 < got < 1.0


def test_mia_efficacy_direction():
    retain, test, _ = _confidences(1)
    rng = np.random.default_rng(2)
    looks_trained = rng.beta(8, 1, 200)
    looks_unseen = rng.beta(3, 2, 200)
    assert privacy.mia_efficacy(retain, test, looks_unseen) > 0.6
    assert privacy.mia_efficacy(retain, test, looks_trained) < 0.4
    # Fewer retain than test samples: all retain samples are used.
    assert 0.0 <= privacy.mia_efficacy(retain[:100], test, looks_unseen) <= 1.0
    with pytest.raises(ValueError, match="forget_probs_true"):
        privacy.mia_efficacy(retain, test, np.array([np.nan]))


def test_true_class_confidence():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(50, 7)) * 10
    labels = rng.integers(0, 7, 50)
    want = softmax(logits, axis=1)[np.arange(50), labels]
    np.testing.assert_allclose(privacy.true_class_confidence(logits, labels), want, rtol=1e-12)


def test_loss_attack_equals_stratified_cv():
    rng = np.random.default_rng(4)
    members = rng.exponential(0.3, 120)
    non = rng.exponential(1.0, 200)
    got = privacy.loss_attack(members, non, folds=5, seed=0, balance=False)
    x = np.concatenate([members, non])[:, None]
    y = np.concatenate([np.ones(120), np.zeros(200)]).astype(int)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    want = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")
    aucs = [roc_auc_score(y[te], LogisticRegression().fit(x[tr], y[tr]).decision_function(x[te]))
            for tr, te in cv.split(x, y)]
    assert got["accuracy"] == pytest.approx(want.mean(), abs=1e-12)
    assert got["auc"] == pytest.approx(np.mean(aucs), abs=1e-12)
    assert got["n_per_class"] == [120, 200]


def test_loss_attack_leakage_levels():
    rng = np.random.default_rng(5)
    same = privacy.loss_attack(rng.exponential(1.0, 400), rng.exponential(1.0, 1000))
    assert same["n_per_class"] == [400, 400]  # balanced by subsampling
    assert abs(same["accuracy"] - 0.5) < 0.1 and abs(same["auc"] - 0.5) < 0.1
    leak = privacy.loss_attack(rng.uniform(0, 0.1, 300), rng.uniform(0.5, 3, 300))
    assert leak["accuracy"] > 0.95 and leak["auc"] > 0.99
