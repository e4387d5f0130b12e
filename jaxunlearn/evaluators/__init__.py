"""Evaluators: one small module per metric family, one registry.

Every family is a function

    evaluate(inputs: Inputs, forget: ForgetSet, **config) -> dict

over one model's extracted :class:`Features` (train/test logits and features, the classifier)
with the labels (:class:`Inputs`), and the forget set as masks (:class:`ForgetSet`). The
registry maps a family's **name** to it; the name is the key of its section in an evaluation
(``evaluate_model``, ``analyze_features``, ``jaxunlearn evaluate``) and names its report
columns (each family says how its section flattens into long-format columns, ``columns``).

=============  ======================  =========  ============================================
name           module                  needs      section
=============  ======================  =========  ============================================
full           output                  logits     the model's own output: accuracy, UA/RA/TA
lp             probe                   -          linear probe on the classifier's input
ncc            ncc                     -          nearest class centre
knn            knn                     -          cosine k-NN
collapse       collapse                -          neural-collapse metrics and misalignment
privacy        privacy                 logits     MIA-efficacy, loss attack on forgotten samples
similarity     similarity              references linear CKA to reference models
layerwise      probe                   -          linear probe on every stage's output
relearn        relearning              model      the relearning attack's curves
=============  ======================  =========  ============================================

Adding a family: a module with ``NAME``, ``NEEDS``, ``evaluate`` and ``columns``, one
:func:`register` call (or a line in :data:`_FAMILIES`), and its test.

Families over **model pools** (``[models, examples]`` logits of many retrained and unlearned
models) are not single-model evaluators and are not run by ``evaluate_model``: their slot is
:data:`POOL_FAMILIES` (``forgetting_quality``: the competition's ε score and U-LiRA, module
``jaxunlearn.forgetting_quality``, issue 15 item 2), resolved on use by :func:`pool_family`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import time
from typing import Callable, Iterable, Mapping, Sequence

from jaxunlearn.evaluators import collapse, knn, ncc, output, privacy, probe, relearning, similarity
from jaxunlearn.evaluators.base import (ACCURACY_SPLITS, MODEL, Features, ForgetSet, Inputs, ModelRef,
                                        accuracy_columns, as_config, as_forget_set, forget_from_record,
                                        forget_record, split_accuracy)

__all__ = ["ACCURACY_SPLITS", "DEFAULT", "Evaluator", "Features", "ForgetSet", "Inputs", "MODEL", "ModelRef",
           "POOL_FAMILIES", "REGISTRY", "accuracy_columns", "as_forget_set", "columns", "forget_from_record",
           "forget_record", "get", "names", "pool_family", "register", "run", "split_accuracy"]

#: what an evaluator may need beyond the features
NEEDS = ("logits", "references", "model")


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """A metric family.

    Attributes:
      name: its section's key and the head / prefix of its report columns.
      evaluate: ``(inputs, forget, **config) -> dict`` (None: nothing to report, e.g. no
        reference models for similarity).
      columns: ``(section) -> iterable of (head, split, metric, value)``, its long-format columns.
      needs: what it reads beyond features: ``"logits"``, ``"references"``, ``"model"``.
      summary: one line.
    """

    name: str
    evaluate: Callable[..., dict | None]
    columns: Callable[[Mapping], Iterable[tuple]]
    needs: tuple[str, ...] = ()
    summary: str = ""

    def missing(self, inputs: Inputs) -> list[str]:
        """What ``inputs`` lacks of :attr:`needs`."""
        f = inputs.features
        have = {"logits": f.train_logits is not None and f.test_logits is not None,
                "references": True,  # optional: no reference, no section
                "model": inputs.model is not None}
        return [n for n in self.needs if not have[n]]


def _of(module, name=None, fn=None, cols=None) -> Evaluator:
    evaluate = fn or module.evaluate
    doc = (module.__doc__ or "").strip().splitlines()
    return Evaluator(name or module.NAME, evaluate, cols or module.columns, tuple(module.NEEDS),
                     doc[0] if doc else "")


_FAMILIES = (
    _of(output), _of(probe), _of(ncc), _of(knn), _of(collapse), _of(privacy), _of(similarity),
    _of(probe, probe.LAYERWISE, probe.evaluate_layerwise, probe.layerwise_columns), _of(relearning),
)

#: name -> :class:`Evaluator`, in the order sections are computed
REGISTRY: dict[str, Evaluator] = {e.name: e for e in _FAMILIES}

#: the families ``evaluate_model`` runs by default (``layerwise`` only when asked)
DEFAULT = ("full", "lp", "ncc", "knn", "collapse", "privacy", "similarity", "relearn")

#: families over model pools, not run by ``evaluate_model``: name -> module (resolved on use)
POOL_FAMILIES = {"forgetting_quality": "jaxunlearn.forgetting_quality"}


def register(evaluator: Evaluator, *, replace: bool = False) -> Evaluator:
    """Adds ``evaluator`` to :data:`REGISTRY` (its name then selects it and names its columns).

    Raises:
      ValueError: the name is taken (pass ``replace=True``) or clashes with a reserved section.
    """
    if evaluator.name in ("runtime_s", "run", "timings") or not evaluator.name:
        raise ValueError(f"evaluator name {evaluator.name!r} is reserved; choose another")
    if evaluator.name in REGISTRY and not replace:
        raise ValueError(f"an evaluator {evaluator.name!r} exists; pass replace=True to replace it")
    bad = [n for n in evaluator.needs if n not in NEEDS]
    if bad:
        raise ValueError(f"evaluator {evaluator.name!r} needs {bad[0]!r}; needs are among {', '.join(NEEDS)}")
    REGISTRY[evaluator.name] = evaluator
    return evaluator


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Evaluator:
    """The evaluator ``name``; ValueError naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown evaluator {name!r}; choose from {', '.join(REGISTRY)}") from None


def run(inputs: Inputs, forget: ForgetSet, selection: Sequence[str] | Mapping[str, Mapping]) -> tuple[dict, dict]:
    """Runs the selected evaluators, in the order given.

    Args:
      inputs: the shared :class:`Inputs`.
      forget: the forget set (masks matching ``inputs``' splits).
      selection: names, or ``{name: config}`` (each config goes to that evaluator as keywords).

    Returns:
      ``(sections, timings)``: ``{name: section}`` (sections that returned None are absent)
      and ``{name: seconds}``.

    Raises:
      ValueError: an unknown name, an evaluator whose needs ``inputs`` does not meet (naming
        what is missing), or masks of other split sizes.
    """
    forget.check(len(inputs.train_labels), len(inputs.test_labels))
    config = as_config(selection)
    evaluators = [get(n) for n in config]  # every name checked before any work
    for e in evaluators:
        missing = e.missing(inputs)
        if missing:
            raise ValueError(f"evaluator {e.name!r} needs {', '.join(missing)}, which these inputs lack "
                             f"(features without logits come from an .npz; drop {e.name!r} from the selection)")
    out, timings = {}, {}
    for e in evaluators:
        t = time.perf_counter()
        section = e.evaluate(inputs, forget, **config[e.name])
        timings[e.name] = time.perf_counter() - t
        if section is not None:
            out[e.name] = section
    return out, timings


def columns(section: str, value: Mapping) -> list[tuple] | None:
    """The long-format columns ``[(head, split, metric, value)]`` of one section of an
    evaluation, from its evaluator; None when no evaluator has that name."""
    e = REGISTRY.get(section)
    return None if e is None else list(e.columns(value))


def pool_family(name: str):
    """The module of a pool family (:data:`POOL_FAMILIES`), imported on first use.

    Raises:
      ValueError: an unknown name, or its module is not installed in this version.
    """
    if name not in POOL_FAMILIES:
        raise ValueError(f"unknown pool family {name!r}; choose from {', '.join(POOL_FAMILIES)}")
    module = POOL_FAMILIES[name]
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"{name}: module {module} is not part of this version of jaxunlearn")
    return importlib.import_module(module)
