"""Membership inference on the forgotten training samples ("privacy"): SalUn's MIA-efficacy and
the loss-based logistic attack (:mod:`jaxunlearn.privacy`)."""

from __future__ import annotations

import numpy as np

from jaxunlearn import privacy as privacy_lib
from jaxunlearn.evaluators.base import ForgetSet, Inputs, model_columns

NAME = "privacy"
NEEDS = ("logits",)


def evaluate(inputs: Inputs, forget: ForgetSet, mia_max_samples: int | None = None) -> dict:
    """MIA on the forgotten training samples.

    * ``mia_efficacy``: an SVC on the true-class confidence, members = retain training
      samples, non-members = test samples outside the forget set; the fraction of forgotten
      training samples it calls non-members (``mia_max_samples`` caps its training set).
    * ``loss_attack``: cross-validated logistic regression on the loss, forgotten training
      samples vs the test samples of the forget set (class forgetting) or every test sample
      (sample forgetting, whose test split has no forget samples); only with >= 5 of each.

    Returns:
      ``{"mia_efficacy": float, "loss_attack": {...}}`` (the attack may be absent).
    """
    f = inputs.features
    p_train = privacy_lib.true_class_confidence(f.train_logits, inputs.train_labels)
    p_test = privacy_lib.true_class_confidence(f.test_logits, inputs.test_labels)
    tr, te = forget.train, forget.test
    out = {"mia_efficacy": privacy_lib.mia_efficacy(p_train[~tr], p_test[~te], p_train[tr],
                                                    max_samples=mia_max_samples)}
    non_members = te if te.any() else np.ones_like(te)
    if non_members.sum() >= 5 and tr.sum() >= 5:
        loss = lambda p: -np.log(np.maximum(p, 1e-30))
        out["loss_attack"] = privacy_lib.loss_attack(loss(p_train[tr]), loss(p_test[non_members]))
    return out


def columns(value):
    return model_columns(value)
