"""The model's own output head ("full"): accuracy per split and SalUn's UA / RA / TA."""

from __future__ import annotations

import numpy as np

from jaxunlearn.evaluators.base import ForgetSet, Inputs, accuracy_columns, split_accuracy

NAME = "full"
NEEDS = ("logits",)


def evaluate(inputs: Inputs, forget: ForgetSet) -> dict:
    """Argmax of the model's logits on both splits.

    Returns:
      ``{"retain", "forget", "all"}`` (test), ``{"train_retain", "train_forget"}`` (train), and
      ``UA = 1 - train_forget`` (None without forgotten training samples), ``RA = train_retain``,
      ``TA = retain`` (test accuracy outside the forget set).
    """
    f = inputs.features
    out = split_accuracy(np.asarray(f.test_logits).argmax(-1), inputs.test_labels, forget,
                         np.asarray(f.train_logits).argmax(-1), inputs.train_labels)
    out["UA"] = None if out["train_forget"] is None else 1.0 - out["train_forget"]
    out["RA"], out["TA"] = out["train_retain"], out["retain"]
    return out


def columns(value):
    return accuracy_columns(NAME, value)
