"""Representation similarity to reference models ("similarity"): linear CKA of the test
features (:func:`jaxunlearn.similarity.linear_cka`) on every / retain / forget test sample and,
for sample forgetting, on the forgotten training samples (``train_forget``)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from jaxunlearn import similarity as similarity_lib
from jaxunlearn.evaluators.base import MODEL, ForgetSet, Inputs, leaves

NAME = "similarity"
NEEDS = ("references",)


def _cka(a, b, mask):
    if mask.sum() < 2:
        return None
    v = float(similarity_lib.linear_cka(a[mask], b[mask]))
    return v if np.isfinite(v) else None


def evaluate(inputs: Inputs, forget: ForgetSet, feature: str = "features") -> dict | None:
    """``{reference: {"all", "retain", "forget"(, "train_forget")}}`` (None for a subset of < 2
    samples); None when ``inputs.references`` is empty (nothing to report)."""
    if not inputs.references:
        return None
    f = inputs.features
    a = np.asarray(f.test_feats[feature], np.float32)
    out = {}
    for name, ref in inputs.references.items():
        b = np.asarray(ref.test_feats[feature], np.float32)
        d = {"all": _cka(a, b, np.ones_like(forget.test)), "retain": _cka(a, b, ~forget.test),
             "forget": _cka(a, b, forget.test)}
        if forget.held_out:
            d["train_forget"] = _cka(np.asarray(f.train_feats[feature], np.float32),
                                     np.asarray(ref.train_feats[feature], np.float32), forget.train)
        out[name] = d
    return out


def columns(value):
    """``cka_<reference>`` on ``(model, split)``."""
    for ref, d in value.items():
        if isinstance(d, Mapping):
            for split, x in leaves(d):
                yield MODEL, split, f"cka_{ref}", x
