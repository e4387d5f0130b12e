"""Model-level evaluation: extract features, then run the evaluator registry.

:func:`evaluate_model` is what ``jaxunlearn evaluate`` and the experiments call. It extracts
features once per model (:func:`extract`) and runs the selected metric families of
:mod:`jaxunlearn.evaluators` (output, probes, NCC, k-NN, collapse, privacy, similarity,
layer-wise probes, relearning) on them, with the forget set as masks
(:class:`jaxunlearn.evaluators.ForgetSet`).

Head conventions (PAPER.md §5): the linear probe and NCC use the penultimate features of the
full training split (all classes, true labels) and are scored on retain / forget test
samples. For sample forgetting (a random fraction or a list of training samples) they are
fitted on the retain training samples and also scored on the forgotten ones
(``train_forget``) and the retain ones (``train_retain``). For a CMF model (``head="cmf"``)
the CMF head is recomputed from the final encoder, and the features handed to the probes are
the CMF classifier's input (normalised, centred).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import cmf, evaluators, train
from jaxunlearn.data import Dataset
from jaxunlearn.evaluators import Features, ForgetSet, Inputs, ModelRef, as_forget_set  # noqa: F401 (re-exported)
from jaxunlearn.evaluators.relearning import relearn_curve as _relearn_curve
from jaxunlearn.state import Net, TrainState


def extract(net: Net, state: TrainState, ds: Dataset, head: str = "linear", batch_size: int | None = None,
            mesh=None) -> Features:
    """Runs the model over the train and test splits, ``batch_size`` images at a time (default
    :func:`jaxunlearn.train.default_predict_batch`).

    For ``head="cmf"`` the CMF head is fitted to the train features (true labels) and both
    logits and the ``"features"`` entry become the CMF logits / CMF features.

    With a ``mesh`` (:func:`jaxunlearn.parallel.make_mesh`) each batch (``batch_size`` rounded
    up to a multiple of the devices) is split over the ``"data"`` axis and the parameters
    are replicated; with several processes each places only its own devices' rows, and every
    process receives all the outputs. The numbers equal the one-device run up to float
    rounding.
    """
    if mesh is None:
        predict = train.make_predict(net, batch_size)
        images = jnp.asarray
    else:
        predict, images = _sharded_predict(net, mesh, batch_size or train.default_predict_batch()), np.asarray
    tr_logits, tr_feats = predict(state.params, state.batch_stats, images(ds.train_images))
    te_logits, te_feats = predict(state.params, state.batch_stats, images(ds.test_images))
    if head == "cmf":
        h = cmf.cmf_head(tr_feats["features"], jnp.asarray(ds.train_labels), ds.num_classes)
        tr_logits, te_logits = cmf.cmf_logits(h, tr_feats["features"]), cmf.cmf_logits(h, te_feats["features"])
        tr_feats = {**tr_feats, "features": cmf.cmf_features(h, tr_feats["features"])}
        te_feats = {**te_feats, "features": cmf.cmf_features(h, te_feats["features"])}
        weights, bias = np.asarray(h.weights), None
    elif head == "linear":
        weights, bias = net.head_weights(state.params)  # the bias may be absent (None)
    else:
        raise ValueError(f"unknown head {head!r}; choose linear or cmf")
    host = lambda t: jax.tree.map(np.asarray, t)
    return Features(host(tr_logits), host(tr_feats), host(te_logits), host(te_feats), weights, bias)


def shares_encoder(net: Net, state: TrainState, other: TrainState) -> bool:
    """True iff ``state`` and ``other`` differ at most in the linear head: every parameter
    outside ``net.head_path`` and every BatchNorm statistic bit-identical (host-side check).

    A classifier-only model and ``classifier_edit``'s keep their original's encoder so; their
    penultimate features are the original's (:func:`with_linear_head`).
    """
    from jaxunlearn.state import tree_equal
    # ``state`` with ``other``'s head must be ``other`` itself
    return tree_equal(state.batch_stats, other.batch_stats) and \
        tree_equal(net.replace_head(state.params, net.head_params(other.params)), other.params)


def with_linear_head(f: Features, net: Net, params) -> Features:
    """``f`` (a linear-head model's :func:`extract` output) with the logits of the head in
    ``params`` instead: ``features [N, D] @ kernel [D, K] + bias [K]`` on train and test.

    Equal to :func:`extract` of a model with that head on the same encoder, up to float
    rounding (the forward's own matmul); saves its forward passes.
    """
    weights, bias = net.head_weights(params)
    w, b = jnp.asarray(weights.T), (None if bias is None else jnp.asarray(bias))
    logits = lambda x: np.asarray(jnp.asarray(x) @ w + (0.0 if b is None else b))
    return Features(logits(f.train_feats["features"]), f.train_feats, logits(f.test_feats["features"]), f.test_feats,
                    weights, bias)


@functools.lru_cache(maxsize=16)
def _sharded_predict(net: Net, mesh, batch_size: int):
    """``predict(params, batch_stats, images [N, ...] host) -> (logits [N, K], features)`` as
    host arrays, with every batch split over ``mesh``'s ``"data"`` axis (inference mode)."""
    from jaxunlearn import parallel

    n_dev = mesh.size
    everywhere = parallel.replicated(mesh)

    @functools.partial(jax.jit, out_shardings=everywhere)  # gathered, so every process can read them
    def one(params, batch_stats, xb):
        logits, feats, _ = net.forward(params, batch_stats, xb, train=False)
        return logits, feats

    def predict(params, batch_stats, images):
        images = np.asarray(images)
        n = images.shape[0]
        bs = -(-min(batch_size, n) // n_dev) * n_dev
        n_batches = -(-n // bs)
        pad = n_batches * bs - n
        if pad:
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
        params, batch_stats = parallel.replicate((params, batch_stats), mesh)
        outs = []
        for i in range(n_batches):  # fetched batch by batch: never several un-awaited all-gathers
            out = one(params, batch_stats, parallel.shard_batch(images[i * bs:(i + 1) * bs], mesh))
            outs.append(jax.tree.map(np.asarray, out))
        logits, feats = jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outs)
        return logits, feats

    return predict


def output_accuracy(f: Features, ds: Dataset, forget) -> dict:
    """The model's own output per split (test retain / forget / all, train retain / forget) and
    SalUn's UA / RA / TA; ``forget``: class ids, a ``ForgetSpec`` or a :class:`ForgetSet`."""
    fs = as_forget_set(forget, ds.train_labels, ds.test_labels, ds)
    inputs = Inputs(f, ds.train_labels, ds.test_labels, ds.num_classes)
    return evaluators.get("full").evaluate(inputs, fs)


def relearn_curve(net: Net, state: TrainState, ds: Dataset, forget, **kw) -> dict:
    """:func:`jaxunlearn.evaluators.relearning.relearn_curve`; ``forget``: class ids, a
    ``ForgetSpec`` or a :class:`ForgetSet`."""
    return _relearn_curve(net, state, ds, as_forget_set(forget, ds.train_labels, ds.test_labels, ds), **kw)


def selection(*, probe: str = "fast", knn: bool = True, collapse_metrics: bool = True,
              privacy_attacks: bool = True, layerwise: bool = False, relearn: tuple = (10, 100),
              relearn_steps: int = 30, mia_max_samples: int | None = None) -> dict:
    """``{name: config}`` of the evaluators that :func:`evaluate_model`'s flags select."""
    sel = {"full": {}, "lp": {"probe": probe}, "ncc": {}}
    if knn:
        sel["knn"] = {}
    if collapse_metrics:
        sel["collapse"] = {}
    if privacy_attacks:
        sel["privacy"] = {"mia_max_samples": mia_max_samples}
    sel["similarity"] = {}
    if layerwise:
        sel["layerwise"] = {}
    if relearn:
        sel["relearn"] = {"samples": tuple(relearn), "steps": relearn_steps}
    return sel


#: runtime_s keys of the heads (the names they had before the registry)
_RUNTIME_KEY = {"lp": "head_lp", "ncc": "head_ncc", "knn": "head_knn"}


def evaluate_model(net: Net, state: TrainState, ds: Dataset, forget, *, head: str = "linear",
                   original: tuple | None = None, retrained: tuple | None = None, probe: str = "fast",
                   knn: bool = True, collapse_metrics: bool = True, privacy_attacks: bool = True,
                   layerwise: bool = False, relearn: tuple = (10, 100), relearn_steps: int = 30,
                   mesh=None, mia_max_samples: int | None = None, evaluators_config: dict | None = None,
                   features: Features | None = None) -> dict:
    """Every metric of one (unlearned) model: extract features, then run the evaluator registry.

    Args:
      net, state: the model. ``head``: ``"linear"`` or ``"cmf"``.
      ds: its dataset; ``forget``: the forget set: class ids, a :class:`jaxunlearn.data.ForgetSpec`
        or a :class:`ForgetSet` (masks; sample forgetting reports the forgotten training samples
        as ``train_forget`` of every head).
      original, retrained: optional ``(net, state, head)`` for representation similarity, or
        their :class:`Features` already extracted (a study extracts each reference once).
      probe: ``"fast"`` (full-batch L-BFGS), ``"sgd"`` (the paper's protocol) or ``"paper-*"``.
      knn, collapse_metrics, privacy_attacks, layerwise: select those families.
      relearn: sample counts of the relearning attack (empty: skip); relearn_steps: its steps.
      mesh: split feature extraction (this model's and the references') over its devices.
      mia_max_samples: cap of the MIA-efficacy SVC's training set (None: SalUn's protocol).
      evaluators_config: ``{name: config}`` selecting the families of
        :data:`jaxunlearn.evaluators.REGISTRY` and their configs directly (the selecting flags
        ``probe`` ... ``mia_max_samples`` are then ignored; see :func:`selection`).
      features: this model's :func:`extract` output, if already computed (then not re-extracted).

    Returns:
      ``{name: section}`` for each family run (``"full", "lp", "ncc", "knn", "collapse",
      "privacy", "similarity", "layerwise", "relearn"``; absent sections are omitted) and
      ``"runtime_s"`` (seconds per part). Accuracies are fractions.
    """
    runtime = {}
    t = time.perf_counter()
    f = features if features is not None else extract(net, state, ds, head, mesh=mesh)
    runtime["features"] = time.perf_counter() - t
    fs = as_forget_set(forget, ds.train_labels, ds.test_labels, ds)
    sel = evaluators_config if evaluators_config is not None else selection(
        probe=probe, knn=knn, collapse_metrics=collapse_metrics, privacy_attacks=privacy_attacks,
        layerwise=layerwise, relearn=relearn, relearn_steps=relearn_steps, mia_max_samples=mia_max_samples)
    refs = {}
    if "similarity" in sel:
        for name, ref in (("original", original), ("retrained", retrained)):
            if isinstance(ref, Features):
                refs[name] = ref
            elif ref is not None:
                refs[name] = extract(ref[0], ref[1], ds, ref[2], mesh=mesh)
    inputs = Inputs(f, ds.train_labels, ds.test_labels, ds.num_classes, refs, ModelRef(net, state, head, ds))
    out, timings = evaluators.run(inputs, fs, sel)
    runtime.update({_RUNTIME_KEY.get(k, k): v for k, v in timings.items() if k not in ("full", "similarity")})
    out["runtime_s"] = runtime
    return out
