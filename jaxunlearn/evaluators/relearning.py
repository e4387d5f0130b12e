"""The relearning attack ("relearn"): fine-tune on a few forgotten samples (and a few of every
retain class) and follow how fast forget accuracy comes back."""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.evaluators.base import ForgetSet, Inputs

NAME = "relearn"
NEEDS = ("model",)


def relearn_curve(net, state, ds, forget: ForgetSet, *, head: str = "linear", samples: int = 10,
                  retain_per_class: int | None = None, steps: int = 30, eval_every: int = 10, lr: float = 0.01,
                  seed: int = 0, ncc_subsample: int = 10000) -> dict:
    """Relearning attack: fine-tune on a small labelled set holding ``samples`` forgotten
    training samples and ``retain_per_class`` (default: ``samples``) retain training samples of
    every class (every retain class for class forgetting).

    The retain samples keep the attack from degenerating: fine-tuned on forget samples alone
    (``retain_per_class=0``), a model soon predicts the forget class for every input, which
    puts its forget accuracy at 100 % and its retain accuracy near 0 % whatever it had
    forgotten (measured on Fashion-MNIST, Retrain included). Cross-entropy with true labels,
    SGD (Nesterov momentum 0.9), batch = ``min(set size, 32)``, through the generic training
    loop. Every ``eval_every`` steps: forget accuracy of the output head and of NCC (class means
    of a ``ncc_subsample`` subset of train features) and the output head's retain accuracy.

    Forget accuracy is measured on the forget-class test samples (class forgetting) or on the
    forgotten training samples outside the attack set (sample forgetting, whose NCC means then
    come from retain training samples only); retain accuracy on the other test samples.

    Args:
      net, state, ds: the model and its dataset; forget: the forget set's masks on ``ds``.

    Returns:
      ``{"steps": [...], "full": [...], "ncc": [...], "retain": [...], "num_forget": int,
      "num_retain": int}``: forget accuracies of the output head and NCC and retain accuracy of
      the output head (fractions), and the attack set's composition.
    """
    from jaxunlearn import evaluate, heads, train
    from jaxunlearn.models import HEAD
    from jaxunlearn.state import TrainState
    from jaxunlearn.unlearn.core import make_cmf_refresh, retain_ce, with_cmf

    forget.check(len(ds.train_labels), len(ds.test_labels))
    rng = np.random.default_rng(seed)
    fc = np.asarray(forget.classes, np.int64)
    pool = np.flatnonzero(forget.train)
    forget_chosen = rng.choice(pool, size=min(samples, len(pool)), replace=False)
    per_class = samples if retain_per_class is None else retain_per_class
    if per_class < 0:
        raise ValueError(f"retain_per_class must be >= 0, got {per_class}")
    chosen = [forget_chosen]
    for c in range(ds.num_classes):
        if c not in fc:
            idx = np.flatnonzero((ds.train_labels == c) & ~forget.train)
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
        aux["update_mask"] = (net.head_mask(state.params, trainable_head=False) if hasattr(net, "head_mask") else
                              {k: jax.tree.map(lambda _: k != HEAD, v) for k, v in state.params.items()})
    step = train.make_step(net, loss, cfg)
    run_steps = train.make_run_steps(step, {"relearn": bs}, "relearn")
    spe = train.steps_per_epoch(len(chosen), bs)
    if forget.held_out:  # NCC from retain samples; forget accuracy on the forgotten samples not attacked
        keep = np.flatnonzero(~forget.train)
        sub = np.sort(rng.choice(keep, size=min(ncc_subsample, len(keep)), replace=False))
        probe_idx = np.setdiff1d(pool, forget_chosen)
        queries = np.concatenate([ds.test_images, ds.train_images[probe_idx]])
        q_labels = np.concatenate([ds.test_labels, ds.train_labels[probe_idx]])
        q_forget = np.arange(len(q_labels)) >= len(ds.test_labels)
        q_retain = ~q_forget
    else:
        sub = rng.choice(len(ds.train_labels), size=min(ncc_subsample, len(ds.train_labels)), replace=False)
        queries, q_labels = ds.test_images, ds.test_labels
        q_forget = forget.test
        q_retain = ~q_forget
    sub_ds = ds._replace(train_images=ds.train_images[sub], train_labels=ds.train_labels[sub], test_images=queries,
                         test_labels=q_labels)
    curve = {"steps": [], "full": [], "ncc": [], "retain": [], "num_forget": int(len(forget_chosen)),
             "num_retain": int(len(chosen) - len(forget_chosen))}
    mean = lambda x: float(np.mean(x)) if x.size else None

    def record(s, n):
        f = evaluate.extract(net, s, sub_ds, head)
        curve["steps"].append(n)
        correct = f.test_logits.argmax(-1) == q_labels
        curve["full"].append(mean(correct[q_forget]))
        curve["retain"].append(mean(correct[q_retain]))
        means = heads.ncc_fit(jnp.asarray(f.train_feats["features"]), jnp.asarray(sub_ds.train_labels), ds.num_classes)
        pred = np.asarray(heads.ncc_predict(means, jnp.asarray(f.test_feats["features"])))
        curve["ncc"].append(mean(pred[q_forget] == q_labels[q_forget]))

    s = train.fresh_optimizer(TrainState(state.params, state.batch_stats, None, state.step), cfg)
    record(s, 0)
    # exactly `steps` steps, evaluated at every multiple of eval_every (and the last step), so
    # every curve of a study lies on one step grid
    key, streams, hp, n = jax.random.key(seed), {"relearn": jnp.asarray(chosen, jnp.int32)}, {"lr": jnp.float32(lr)}, 0
    while n < steps:
        epoch, offset = divmod(n, spe)
        num = min(eval_every - n % eval_every, spe - offset, steps - n)
        s, _ = run_steps(s, key, data, streams, hp, aux, epoch, offset, num)
        n += num
        if n % eval_every == 0 or n == steps:
            record(s, n)
    return curve


def evaluate(inputs: Inputs, forget: ForgetSet, samples=(10, 100), steps: int = 30, **config) -> dict:
    """``{str(k): relearn_curve(..., samples=k, steps=steps, **config)}`` for every ``k`` in
    ``samples``, on ``inputs.model``."""
    m = inputs.model
    return {str(k): relearn_curve(m.net, m.state, m.dataset, forget, head=m.head, samples=int(k), steps=steps,
                                  **config) for k in samples}


def columns(value):
    """The last point of each curve, ``relearn_k<k>_end`` on (full, forget), (ncc, forget) and
    (full, retain)."""
    for k, cv in value.items():
        if not isinstance(cv, Mapping):
            continue
        for head, split, key in (("full", "forget", "full"), ("ncc", "forget", "ncc"), ("full", "retain", "retain")):
            if cv.get(key) and cv[key][-1] is not None:
                yield head, split, f"relearn_k{k}_end", cv[key][-1]
