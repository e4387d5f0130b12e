"""Membership-inference attacks on an unlearned model (host-side, scikit-learn).

* :func:`mia_efficacy` -- SalUn's "MIA-efficacy" (Fan et al. 2024; code in
  ``OPTML-Group/Unlearn-Saliency``, ``Classification/evaluation/SVC_MIA.py``, the
  ``confidence`` entry of ``SVC_MIA_forget_efficacy``). An RBF SVC is fitted on the 1-d
  **confidence** ``p[y] = softmax(logits)[y]`` of shadow members (the first ``len(test)``
  retain samples, label 1) against shadow non-members (the test samples, label 0). The
  efficacy is the fraction of forget samples the SVC calls non-members (higher = the forget
  set looks less like training data). The reference evaluates without augmentation and
  takes the retain samples in dataset order; pass them that way.
* :func:`loss_attack` -- a logistic-regression attack on the per-sample loss, forget-class
  training samples (members) against test samples (non-members), scored by stratified
  k-fold cross-validation (accuracy 0.5 / AUC 0.5 = no leakage).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC


def true_class_confidence(logits, labels) -> np.ndarray:
    """Softmax probability of the true class, ``softmax(logits)[y]``, in float64.

    Args:
      logits: ``[N, K]`` logits.
      labels: ``[N]`` int labels.

    Returns:
      ``[N]`` float64 confidences in [0, 1].
    """
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels).astype(np.int64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p[np.arange(len(y)), y]


def _column(x, name) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-d [N], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values")
    return a


def mia_efficacy(retain_probs_true, test_probs_true, forget_probs_true, seed: int = 0,
                 max_samples: int | None = None) -> float:
    """SalUn MIA-efficacy on the true-class confidence (SalUn's ``confidence`` variant).

    Procedure (as in SalUn's ``SVC_fit_predict``):
      1. members: ``retain_probs_true[:len(test)]`` (label 1); non-members:
         ``test_probs_true`` (label 0). If there are fewer retain than test samples, all
         retain samples are used (the reference would fail there).
      2. fit ``SVC(C=3, gamma='auto', kernel='rbf')`` on the 1-d feature (gamma 'auto' =
         1 / n_features = 1).
      3. efficacy = ``1 - mean(svc.predict(forget_probs_true))`` = fraction of forget
         samples predicted non-member.

    Args:
      retain_probs_true: ``[Nr]`` confidences ``p[y]`` of retain training samples, in
        dataset order.
      test_probs_true: ``[Nt]`` confidences of test samples.
      forget_probs_true: ``[Nf]`` confidences of forget samples.
      seed: passed to the SVC's ``random_state`` (it only affects probability estimates,
        which are not used, so the result is deterministic regardless).
      max_samples: if set, the SVC is fitted on at most this many non-members (the first
        ``max_samples`` test confidences) and as many members. SalUn uses every test sample;
        the RBF SVC's fit grows about quadratically with it (9.3 s of a 16 s evaluation at
        10,000 test samples on the 2-core CPU), so the CPU study caps it (docs/parity.md).

    Returns:
      Efficacy in [0, 1].
    """
    retain = _column(retain_probs_true, "retain_probs_true")
    test = _column(test_probs_true, "test_probs_true")
    forget = _column(forget_probs_true, "forget_probs_true")
    if test.size == 0 or retain.size == 0 or forget.size == 0:
        raise ValueError("retain, test and forget confidences must all be non-empty")
    if max_samples is not None:
        test = test[:max_samples]
    members = retain[: test.size]
    x = np.concatenate([members, test])[:, None]
    y = np.concatenate([np.ones(members.size), np.zeros(test.size)])
    clf = SVC(C=3, gamma="auto", kernel="rbf", random_state=seed)
    clf.fit(x, y)
    return float(1.0 - clf.predict(forget[:, None]).mean())


def loss_attack(forget_train_losses, test_losses, folds: int = 5, seed: int = 0,
                balance: bool = True) -> dict:
    """Loss-based membership inference with a cross-validated logistic regression.

    Members are forget-class training samples (label 1), non-members test samples (label 0).
    With ``balance`` (default) the larger group is randomly subsampled (``seed``) to the
    size of the smaller, so 0.5 accuracy is chance. A ``LogisticRegression`` (sklearn
    defaults) on the 1-d loss is scored by ``StratifiedKFold(folds, shuffle=True,
    random_state=seed)``.

    Args:
      forget_train_losses: ``[Nf]`` per-sample losses of forget-class training samples.
      test_losses: ``[Nt]`` per-sample losses of test samples.
      folds: number of CV folds.
      seed: subsampling and fold seed.
      balance: subsample to equal group sizes.

    Returns:
      ``{"accuracy": mean CV accuracy, "accuracy_std": its std over folds,
      "auc": mean CV ROC AUC, "n_per_class": [members, non-members]}``.
    """
    mem = _column(forget_train_losses, "forget_train_losses")
    non = _column(test_losses, "test_losses")
    rng = np.random.default_rng(seed)
    if balance:
        n = min(mem.size, non.size)
        mem = mem[rng.permutation(mem.size)[:n]]
        non = non[rng.permutation(non.size)[:n]]
    if min(mem.size, non.size) < folds:
        raise ValueError(
            f"need at least folds={folds} samples per group, got {mem.size}, {non.size}")
    x = np.concatenate([mem, non])[:, None]
    y = np.concatenate([np.ones(mem.size, np.int64), np.zeros(non.size, np.int64)])
    accs, aucs = [], []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        clf = LogisticRegression().fit(x[tr], y[tr])
        accs.append(clf.score(x[te], y[te]))
        aucs.append(roc_auc_score(y[te], clf.decision_function(x[te])))
    return {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "auc": float(np.mean(aucs)),
        "n_per_class": [int(mem.size), int(non.size)],
    }
