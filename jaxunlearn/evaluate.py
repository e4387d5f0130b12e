"""Model-level evaluation: features -> every head, collapse, privacy, similarity, relearning.

:func:`evaluate_model` is what ``jaxunlearn evaluate`` and the experiments call. It extracts
features once per model and hands them to the pure metric modules (:mod:`heads`,
:mod:`collapse`, :mod:`privacy`, :mod:`similarity`).

Head conventions (PAPER.md §5): the linear probe and NCC use the penultimate features of the
full training split (all classes, true labels) and are scored on retain / forget test
samples. For a CMF model (``head="cmf"``) the CMF head is recomputed from the final encoder,
and the features handed to the probes are the CMF classifier's input (normalised, centred).
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import cmf, collapse, heads, privacy, similarity, train
from jaxunlearn.data import Dataset
from jaxunlearn.models import HEAD
from jaxunlearn.state import Net, TrainState


class Features(NamedTuple):
    """Logits and features of one model on the train and test splits (host arrays)."""

    train_logits: np.ndarray   # [N, K]
    train_feats: dict          # name -> [N, D]
    test_logits: np.ndarray    # [M, K]
    test_feats: dict
    weights: np.ndarray        # [K, D] the classifier actually used
    bias: np.ndarray | None    # [K] (None for CMF)


def extract(net: Net, state: TrainState, ds: Dataset, head: str = "linear", batch_size: int = 1000,
            mesh=None) -> Features:
    """Runs the model over the train and test splits.

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
        predict, images = _sharded_predict(net, mesh, batch_size), np.asarray
    tr_logits, tr_feats = predict(state.params, state.batch_stats, images(ds.train_images))
    te_logits, te_feats = predict(state.params, state.batch_stats, images(ds.test_images))
    if head == "cmf":
        h = cmf.cmf_head(tr_feats["features"], jnp.asarray(ds.train_labels), ds.num_classes)
        tr_logits, te_logits = cmf.cmf_logits(h, tr_feats["features"]), cmf.cmf_logits(h, te_feats["features"])
        tr_feats = {**tr_feats, "features": cmf.cmf_features(h, tr_feats["features"])}
        te_feats = {**te_feats, "features": cmf.cmf_features(h, te_feats["features"])}
        weights, bias = np.asarray(h.weights), None
    elif head == "linear":
        weights, bias = np.asarray(state.params[HEAD]["kernel"]).T, np.asarray(state.params[HEAD]["bias"])
    else:
        raise ValueError(f"unknown head {head!r}; choose linear or cmf")
    host = lambda t: jax.tree.map(np.asarray, t)
    return Features(host(tr_logits), host(tr_feats), host(te_logits), host(te_feats), weights, bias)


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


def output_accuracy(f: Features, ds: Dataset, forget_classes) -> dict:
    """The model's own output on retain/forget classes, test and train, plus SalUn's UA/RA/TA."""
    test = heads.split_accuracy(f.test_logits.argmax(-1), ds.test_labels, forget_classes)
    tr = heads.split_accuracy(f.train_logits.argmax(-1), ds.train_labels, forget_classes)
    out = {"retain": test["retain"], "forget": test["forget"], "all": test["all"],
           "train_retain": tr["retain"], "train_forget": tr["forget"]}
    out["UA"] = None if tr["forget"] is None else 1.0 - tr["forget"]
    out["RA"], out["TA"] = tr["retain"], test["retain"]
    return out


def privacy_metrics(f: Features, ds: Dataset, forget_classes, mia_max_samples: int | None = None) -> dict:
    """SalUn's MIA-efficacy and the loss-based logistic attack (forget train vs forget test).

    ``mia_max_samples`` caps the MIA's SVC training set (see :func:`privacy.mia_efficacy`).
    """
    fc = np.asarray(forget_classes)
    tr_forget = np.isin(ds.train_labels, fc)
    te_forget = np.isin(ds.test_labels, fc)
    p_train = privacy.true_class_confidence(f.train_logits, ds.train_labels)
    p_test = privacy.true_class_confidence(f.test_logits, ds.test_labels)
    out = {"mia_efficacy": privacy.mia_efficacy(p_train[~tr_forget], p_test[~te_forget], p_train[tr_forget],
                                                max_samples=mia_max_samples)}
    if te_forget.sum() >= 5 and tr_forget.sum() >= 5:
        out["loss_attack"] = privacy.loss_attack(-np.log(np.maximum(p_train[tr_forget], 1e-30)),
                                                 -np.log(np.maximum(p_test[te_forget], 1e-30)))
    return out


def layerwise_probes(f: Features, ds: Dataset, forget_classes, probe: str = "fast") -> dict:
    """Linear-probe test accuracy (retain/forget) on every stage output and the final features."""
    out = {}
    for name in sorted(f.train_feats, key=lambda n: (n == "features", len(n), n)):
        r = heads.evaluate_heads(jnp.asarray(f.train_feats[name]), jnp.asarray(ds.train_labels),
                                 jnp.asarray(f.test_feats[name]), ds.test_labels, forget_classes,
                                 ds.num_classes, probe=probe, knn=False)
        out[name] = r["lp"]
    return out


def relearn_curve(net: Net, state: TrainState, ds: Dataset, forget_classes, *, head: str = "linear",
                  samples: int = 10, retain_per_class: int | None = None, steps: int = 30,
                  eval_every: int = 10, lr: float = 0.01, seed: int = 0, ncc_subsample: int = 10000) -> dict:
    """Relearning attack: fine-tune on a small labelled set holding ``samples`` forget-class
    training samples and ``retain_per_class`` (default: ``samples``) of every retain class.

    The retain samples keep the attack from degenerating: fine-tuned on forget samples alone
    (``retain_per_class=0``), a model soon predicts the forget class for every input, which
    puts its forget accuracy at 100 % and its retain accuracy near 0 % whatever it had
    forgotten (measured on Fashion-MNIST, Retrain included). Cross-entropy with true labels,
    SGD (Nesterov momentum 0.9), batch = ``min(set size, 32)``, through the generic training
    loop. Every ``eval_every`` steps: forget-class test accuracy of the output head and of NCC
    (class means of a ``ncc_subsample`` subset of train features), and the output head's
    retain-class test accuracy (what the attack costs the rest of the model).

    Returns:
      ``{"steps": [...], "full": [...], "ncc": [...], "retain": [...], "num_forget": int,
      "num_retain": int}``: forget accuracies of the output head and NCC and retain accuracy of
      the output head (fractions), and the attack set's composition.
    """
    from jaxunlearn.unlearn.core import Problem, Settings, make_cmf_refresh, retain_ce, with_cmf

    rng = np.random.default_rng(seed)
    fc = np.asarray(forget_classes)
    pool = np.flatnonzero(np.isin(ds.train_labels, fc))
    forget_chosen = rng.choice(pool, size=min(samples, len(pool)), replace=False)
    per_class = samples if retain_per_class is None else retain_per_class
    if per_class < 0:
        raise ValueError(f"retain_per_class must be >= 0, got {per_class}")
    chosen = [forget_chosen]
    for c in range(ds.num_classes):
        if c not in fc:
            idx = np.flatnonzero(ds.train_labels == c)
            chosen.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    chosen = np.concatenate(chosen).astype(np.int64)
    bs = min(len(chosen), 32)
    cfg = train.OptimConfig(weight_decay=5e-4, schedule="constant", total_steps=steps)
    data = {"images": jnp.asarray(ds.train_images), "labels": jnp.asarray(ds.train_labels)}
    loss = (lambda *a: retain_ce(*a, stream="relearn"))
    aux = {}
    if head == "cmf":
        loss = with_cmf(loss)
        aux = make_cmf_refresh(net, data, ds.num_classes)(state, 0, {})
        aux["update_mask"] = {k: jax.tree.map(lambda _: k != HEAD, v) for k, v in state.params.items()}
    step = train.make_step(net, loss, cfg)
    run_steps = train.make_run_steps(step, {"relearn": bs}, "relearn")
    spe = train.steps_per_epoch(len(chosen), bs)
    sub = rng.choice(len(ds.train_labels), size=min(ncc_subsample, len(ds.train_labels)), replace=False)
    sub_ds = ds._replace(train_images=ds.train_images[sub], train_labels=ds.train_labels[sub])
    te_forget = np.isin(ds.test_labels, fc)
    curve = {"steps": [], "full": [], "ncc": [], "retain": [], "num_forget": int(len(forget_chosen)),
             "num_retain": int(len(chosen) - len(forget_chosen))}

    next_eval = [eval_every]

    def on_chunk(s, n):
        if n >= next_eval[0] or n >= steps:
            next_eval[0] = (n // eval_every + 1) * eval_every
            record(s, n)

    def record(s, n):
        f = extract(net, s, sub_ds, head)
        curve["steps"].append(n)
        correct = f.test_logits.argmax(-1) == ds.test_labels
        curve["full"].append(float(np.mean(correct[te_forget])))
        curve["retain"].append(float(np.mean(correct[~te_forget])))
        means = heads.ncc_fit(jnp.asarray(f.train_feats["features"]), jnp.asarray(sub_ds.train_labels), ds.num_classes)
        pred = np.asarray(heads.ncc_predict(means, jnp.asarray(f.test_feats["features"])))
        curve["ncc"].append(float(np.mean(pred[te_forget] == ds.test_labels[te_forget])))

    s = train.fresh_optimizer(TrainState(state.params, state.batch_stats, None, state.step), cfg)
    record(s, 0)
    train.fit(run_steps, s, jax.random.key(seed), data, {"relearn": jnp.asarray(chosen, jnp.int32)},
              {"lr": jnp.float32(lr)}, aux, epochs=-(-steps // spe), steps_per_epoch=spe, chunk=min(eval_every, spe),
              on_chunk=on_chunk)
    return curve


def evaluate_model(net: Net, state: TrainState, ds: Dataset, forget_classes, *, head: str = "linear",
                   original: tuple | None = None, retrained: tuple | None = None, probe: str = "fast",
                   knn: bool = True, collapse_metrics: bool = True, privacy_attacks: bool = True,
                   layerwise: bool = False, relearn: tuple = (10, 100), relearn_steps: int = 30,
                   mesh=None, mia_max_samples: int | None = None) -> dict:
    """Every metric of one (unlearned) model; sections as written by ``jaxunlearn evaluate``.

    Args:
      net, state: the model. ``head``: ``"linear"`` or ``"cmf"``.
      ds: its dataset; ``forget_classes``: int sequence.
      original, retrained: optional ``(net, state, head)`` for representation similarity.
      probe: ``"fast"`` (full-batch L-BFGS) or ``"sgd"`` (the paper's protocol).
      relearn: sample counts of the relearning attack (empty: skip).
      mesh: split feature extraction (this model's and the references') over its devices.
      mia_max_samples: cap of the MIA-efficacy SVC's training set (None: SalUn's protocol).

    Returns:
      ``{"full", "lp", "ncc", "knn", "collapse", "privacy", "similarity", "relearn",
      "layerwise", "runtime_s"}`` (accuracies are fractions; absent sections are omitted).
    """
    runtime = {}
    t = time.perf_counter()
    f = extract(net, state, ds, head, mesh=mesh)
    runtime["features"] = time.perf_counter() - t
    fc = np.asarray(forget_classes, np.int32)
    out = {"full": output_accuracy(f, ds, fc)}
    t = time.perf_counter()
    h = heads.evaluate_heads(jnp.asarray(f.train_feats["features"]), jnp.asarray(ds.train_labels),
                             jnp.asarray(f.test_feats["features"]), ds.test_labels, fc, ds.num_classes,
                             probe=probe, knn=knn)
    runtime.update({f"head_{k}": v for k, v in h.pop("timings").items()})
    out.update(h)
    if collapse_metrics:
        t = time.perf_counter()
        out["collapse"] = collapse.collapse_metrics(f.train_feats["features"], ds.train_labels, ds.num_classes,
                                                    f.weights, f.bias, fc)
        runtime["collapse"] = time.perf_counter() - t
    if privacy_attacks:
        t = time.perf_counter()
        out["privacy"] = privacy_metrics(f, ds, fc, mia_max_samples)
        runtime["privacy"] = time.perf_counter() - t
    sims = {}
    for name, ref in (("original", original), ("retrained", retrained)):
        if ref is not None:
            rf = extract(ref[0], ref[1], ds, ref[2], mesh=mesh)
            sims[name] = similarity.cka_retain_forget(f.test_feats["features"], rf.test_feats["features"],
                                                      ds.test_labels, fc)
    if sims:
        out["similarity"] = sims
    if layerwise:
        t = time.perf_counter()
        out["layerwise"] = layerwise_probes(f, ds, fc)
        runtime["layerwise"] = time.perf_counter() - t
    if relearn:
        t = time.perf_counter()
        out["relearn"] = {str(k): relearn_curve(net, state, ds, fc, head=head, samples=k, steps=relearn_steps)
                          for k in relearn}
        runtime["relearn"] = time.perf_counter() - t
    out["runtime_s"] = runtime
    return out
