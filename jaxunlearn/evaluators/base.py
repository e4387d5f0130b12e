"""What every evaluator reads: one model's features (:class:`Features`, :class:`Inputs`) and the
forget set as data (:class:`ForgetSet`: boolean masks over the train and test splits).

A forget set is either whole classes (a sample is forgotten iff its label is a forget class,
in both splits) or training samples (a random fraction with its seed, or a list of indices;
the test split then has no forget samples). A run stores its forget set in ``run.json``
(:func:`forget_record`) and evaluation rebuilds the masks from that record
(:func:`forget_from_record`), so the forget set is never flattened to a class list.

Split names in every accuracy dict (fractions, ``None`` for an empty subset):

* ``retain`` / ``forget`` / ``all``: the **test** samples outside / inside the forget set, and
  all of them (for sample forgetting ``forget`` is ``None`` and ``retain`` == ``all``);
* ``train_retain`` / ``train_forget``: the training samples outside / inside the forget set.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np


class Features(NamedTuple):
    """Logits and features of one model on the train and test splits (host arrays).

    ``train_logits`` / ``test_logits`` are ``None`` for features from elsewhere (an ``.npz``
    of :mod:`jaxunlearn.analyze`); ``weights`` is ``None`` when no classifier is known.
    """

    train_logits: np.ndarray | None   # [N, K]
    train_feats: dict                 # name -> [N, D]; "features" is the classifier's input
    test_logits: np.ndarray | None    # [M, K]
    test_feats: dict                  # name -> [M, D]
    weights: np.ndarray | None        # [K, D] the classifier actually used
    bias: np.ndarray | None           # [K] (None for CMF or a head without bias)


class ModelRef(NamedTuple):
    """The model itself, for evaluators that run it again (the relearning attack)."""

    net: Any          # jaxunlearn.state.Net
    state: Any        # jaxunlearn.state.TrainState
    head: str         # "linear" or "cmf"
    dataset: Any      # jaxunlearn.data.Dataset the features were extracted from


class Inputs(NamedTuple):
    """The shared input of every evaluator.

    Attributes:
      features: the evaluated model's :class:`Features`.
      train_labels: ``[N]`` int labels of the training split.
      test_labels: ``[M]`` int labels of the test split.
      num_classes: K.
      references: ``{name: Features}`` of reference models on the same inputs (``"original"``,
        ``"retrained"``), for representation similarity; None: none.
      model: a :class:`ModelRef` for evaluators that need the model (relearning); None: none.
    """

    features: Features
    train_labels: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    references: Mapping[str, Features] | None = None
    model: ModelRef | None = None


class ForgetSet(NamedTuple):
    """The forget set as masks over the two splits.

    Attributes:
      train: ``[N]`` bool, the forgotten training samples.
      test: ``[M]`` bool, the test samples of the forget set (the forget classes' samples;
        all False for sample forgetting).
      classes: the forget class ids (sorted), ``()`` for sample forgetting.
    """

    train: np.ndarray
    test: np.ndarray
    classes: tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        """``"classes"`` or ``"samples"``."""
        return "classes" if self.classes else "samples"

    @property
    def held_out(self) -> bool:
        """True when the forgotten samples are training samples only (sample forgetting): heads
        are then fitted on the retain training samples and also scored on the forgotten ones."""
        return not self.classes

    def describe(self) -> str:
        if self.classes:
            return "classes " + ",".join(map(str, self.classes))
        return f"{int(self.train.sum())} training samples"

    @classmethod
    def from_classes(cls, train_labels, test_labels, classes) -> "ForgetSet":
        """A class forget set: samples whose label is in ``classes`` (may be empty: nothing forgotten)."""
        fc = tuple(sorted({int(c) for c in np.asarray([] if classes is None else classes).reshape(-1)}))
        arr = np.asarray(fc, np.int64)
        return cls(np.isin(np.asarray(train_labels), arr), np.isin(np.asarray(test_labels), arr), fc)

    @classmethod
    def from_indices(cls, num_train: int, num_test: int, indices) -> "ForgetSet":
        """A sample forget set: the training samples at ``indices`` (ints in ``[0, num_train)``).

        Raises:
          ValueError: an index out of range, or no index at all.
        """
        idx = np.asarray(indices).reshape(-1)
        if idx.size == 0:
            raise ValueError("empty forget set: give at least one training sample index")
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"forget indices must be integers, got dtype {idx.dtype}")
        if idx.min() < 0 or idx.max() >= num_train:
            raise ValueError(f"forget index {int(idx.min() if idx.min() < 0 else idx.max())} is outside the "
                             f"training split [0, {num_train})")
        train = np.zeros(num_train, bool)
        train[idx] = True
        return cls(train, np.zeros(num_test, bool), ())

    @classmethod
    def from_spec(cls, ds, spec) -> "ForgetSet":
        """The masks of a :class:`jaxunlearn.data.ForgetSpec` (or a forget text, parsed) on ``ds``."""
        from jaxunlearn import data as data_lib
        spec = data_lib.parse_forget(spec, ds.num_classes)
        if spec.fraction is None:
            return cls.from_classes(ds.train_labels, ds.test_labels, spec.classes)
        split = data_lib.forget_split(ds, spec)
        return cls.from_indices(len(ds.train_labels), len(ds.test_labels), split.train_forget)

    def check(self, num_train: int, num_test: int) -> None:
        """Raises ValueError when the masks do not match splits of these sizes."""
        if self.train.shape != (num_train,) or self.test.shape != (num_test,):
            raise ValueError(f"forget masks {self.train.shape} / {self.test.shape} do not match the splits "
                             f"({num_train},) / ({num_test},); build the ForgetSet from the same dataset")


def as_forget_set(forget, train_labels, test_labels, ds=None) -> ForgetSet:
    """A :class:`ForgetSet` from one, from a ``ForgetSpec`` (needs ``ds``) or from class ids."""
    if isinstance(forget, ForgetSet):
        forget.check(len(train_labels), len(test_labels))
        return forget
    from jaxunlearn.data import ForgetSpec
    if isinstance(forget, ForgetSpec):
        if ds is None:
            raise ValueError("a ForgetSpec needs its dataset to become masks; pass a ForgetSet")
        return ForgetSet.from_spec(ds, forget)
    return ForgetSet.from_classes(train_labels, test_labels, forget)


def _digest(indices) -> str:
    return hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()[:16]


def forget_record(ds, spec) -> dict:
    """The run.json record of a forget specification on ``ds`` (see :func:`forget_from_record`).

    Classes: ``{"kind": "classes", "classes": [...]}``. A random fraction: ``{"kind":
    "samples", "fraction", "seed", "num_train", "num_forget", "sha256"}`` (the digest of the
    drawn indices, so a changed dataset is refused instead of evaluated on other samples).
    """
    from jaxunlearn import data as data_lib
    spec = data_lib.parse_forget(spec, ds.num_classes)
    if spec.fraction is None:
        return {"kind": "classes", "classes": [int(c) for c in spec.classes]}
    idx = data_lib.forget_split(ds, spec).train_forget
    return {"kind": "samples", "fraction": float(spec.fraction), "seed": int(spec.seed),
            "num_train": int(len(ds.train_labels)), "num_forget": int(len(idx)), "sha256": _digest(idx)}


def forget_from_record(ds, record: Mapping) -> ForgetSet:
    """The :class:`ForgetSet` of a :func:`forget_record` (or ``{"kind": "indices", "indices":
    [...]}``) on ``ds``.

    Raises:
      ValueError: an unknown kind, or a sample record whose dataset split no longer matches
        (another ``max_train`` or data version: the message says which count differs).
    """
    from jaxunlearn import data as data_lib
    kind = record.get("kind")
    n, m = len(ds.train_labels), len(ds.test_labels)
    if kind == "classes":
        return ForgetSet.from_classes(ds.train_labels, ds.test_labels, record["classes"])
    if kind == "indices":
        return ForgetSet.from_indices(n, m, record["indices"])
    if kind == "samples":
        if record.get("num_train") != n:
            raise ValueError(f"the forget set was drawn from {record.get('num_train')} training samples but the "
                             f"dataset has {n}; load the run's dataset (same --data-dir and max_train)")
        spec = data_lib.ForgetSpec((), float(record["fraction"]), int(record["seed"]))
        idx = data_lib.forget_split(ds, spec).train_forget
        if record.get("sha256") not in (None, _digest(idx)):
            raise ValueError("the forget samples drawn now differ from the run's (sha256 mismatch): the "
                             "dataset's training split changed since the run; load the run's data")
        return ForgetSet.from_indices(n, m, idx)
    raise ValueError(f"unknown forget record kind {kind!r}; expected classes, samples or indices")


# ----------------------------------------------------------------------------- accuracy


def split_accuracy(test_pred, test_labels, forget: ForgetSet, train_pred=None, train_labels=None) -> dict:
    """Accuracy on the splits of the module docstring (host-side).

    Args:
      test_pred, test_labels: ``[M]`` int predictions and labels of the test split.
      forget: the forget set (its masks select the subsets).
      train_pred, train_labels: ``[N]`` of the training split; None: no ``train_*`` entries.

    Returns:
      ``{"retain", "forget", "all"}`` (+ ``"train_retain", "train_forget"``): fractions or None.
    """
    def frac(correct, mask):
        k = int(mask.sum())
        return None if k == 0 else float(correct[mask].sum() / k)

    correct = np.asarray(test_pred).reshape(-1) == np.asarray(test_labels).reshape(-1)
    out = {"retain": frac(correct, ~forget.test), "forget": frac(correct, forget.test),
           "all": frac(correct, np.ones_like(forget.test))}
    if train_pred is not None:
        c = np.asarray(train_pred).reshape(-1) == np.asarray(train_labels).reshape(-1)
        out["train_retain"], out["train_forget"] = frac(c, ~forget.train), frac(c, forget.train)
    return out


# ----------------------------------------------------------------------------- report columns

#: split names of an accuracy section
ACCURACY_SPLITS = ("retain", "forget", "all", "train_retain", "train_forget")
#: the pseudo-head of model-level metrics in the long format
MODEL = "model"

Column = tuple  # (head, split, metric, value)


def is_number(v) -> bool:
    import numbers
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def leaves(d: Mapping, prefix: str = "") -> Iterator[tuple[str, float]]:
    """``(path, number)`` for every numeric leaf of nested dicts, path parts joined by ``_``."""
    for k, v in d.items():
        key = f"{prefix}{k}"
        if is_number(v):
            yield key, v
        elif isinstance(v, Mapping):
            yield from leaves(v, key + "_")


def accuracy_columns(name: str, value: Mapping) -> Iterator[Column]:
    """Columns of an accuracy section ``name``: head = ``name``, ``accuracy`` per split, the
    section's other numbers (UA, RA, TA) on its ``all`` split under their own names."""
    for k, v in value.items():
        if k in ACCURACY_SPLITS:
            yield name, k, "accuracy", v
        elif is_number(v):
            yield name, "all", k, v
        elif isinstance(v, Mapping):
            for col, x in leaves(v, f"{k}_"):
                yield name, "all", col, x


def model_columns(value: Mapping, prefix: str = "") -> Iterator[Column]:
    """Every numeric leaf as a model-level column on ``split="all"``."""
    for col, x in leaves(value, prefix):
        yield MODEL, "all", col, x


def fit_and_queries(inputs: Inputs, forget: ForgetSet, name: str = "features"):
    """``(fit_x [n, D], fit_y [n], queries [M (+ N), D])`` of a head: fitted on every training
    sample (class forgetting, the paper's protocol) or on the retain training samples (sample
    forgetting); queried on the test split, then (sample forgetting) on the training split."""
    f = inputs.features
    tr, te = np.asarray(f.train_feats[name]), np.asarray(f.test_feats[name])
    y = np.asarray(inputs.train_labels)
    if forget.held_out:
        return tr[~forget.train], y[~forget.train], np.concatenate([te, tr])
    return tr, y, te


def head_accuracy(pred, inputs: Inputs, forget: ForgetSet) -> dict:
    """:func:`split_accuracy` of predictions on :func:`fit_and_queries`' queries."""
    pred = np.asarray(pred)
    m = len(inputs.test_labels)
    if forget.held_out:
        return split_accuracy(pred[:m], inputs.test_labels, forget, pred[m:], inputs.train_labels)
    return split_accuracy(pred, inputs.test_labels, forget)


def as_config(selection: Sequence[str] | Mapping[str, Mapping] | None) -> dict:
    """``{name: config}`` of a selection given as names or as a mapping."""
    if selection is None:
        return {}
    if isinstance(selection, Mapping):
        return {str(k): dict(v or {}) for k, v in selection.items()}
    return {str(k): {} for k in selection}
