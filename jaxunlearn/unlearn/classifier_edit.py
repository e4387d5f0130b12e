"""Classifier edit: the closed-form, head-only unlearning of the paper's theory (Gao et al.,
"An Illusion of Unlearning?", Sec. on neural collapse). Training-free; the encoder and the
BatchNorm statistics stay bit-identical. Two variants (option ``variant``):

``"paper"`` (default) -- the paper's formula: with ``mu_f`` the (uncentred) mean of the
penultimate features ``h`` of forget class ``f`` over the training split, the row of each
forget class becomes

    w_f = -(1 - gamma) * mu_f,      b_f = 0

and the other rows and biases are unchanged. Under exact neural collapse with a self-dual,
bias-free head (``h = mu_y``, the ``mu_c`` a simplex ETF with ``mu_c . mu_f = -||mu||^2 / (K - 1)``,
``w_c = mu_c``), a retained sample scores ``(1 - gamma) ||mu||^2 / (K - 1)`` for ``f`` against
``||mu||^2`` for its own class (retain predictions unchanged), and a forget sample scores
``-(1 - gamma) ||mu||^2`` for ``f`` against ``-||mu||^2 / (K - 1)`` for every other class, so for
``gamma < 1 - 1/(K - 1)`` it is never predicted as ``f`` (0 % forget accuracy). With several
forget classes a sample of ``f1`` scores ``+(1 - gamma) ||mu||^2 / (K - 1)`` on the flipped row
of ``f2``, above every retained class, so it is predicted as another forget class (forget
accuracy still 0 %). (The authors' code has no classifier edit; the formula is the paper's.)

``"centred"`` -- this library's earlier edit, which also holds for a head with biases, a
global mean ``mu_G != 0`` and a head scale ``s``: with centred means ``m_c = mu_c - mu_G``,

    w_f = -(1 - gamma) * s * m_f,      s = mean_{c retained} ||w_c|| / mean_{c retained} ||m_c||
    b_f = -w_f . mu_G + mean_{c retained} (w_c . mu_G + b_c)

so ``logit_f(h) = -(1 - gamma) s m_f . (h - mu_G) + (the retained classes' mean effective bias)``;
then ``b_f`` is lowered, if needed, until no training sample scores ``f`` above its best
retained class (margin ``1e-3``), so no *training* sample is predicted as a forget class -- the
0 % train forget accuracy of this variant is partly by construction. Under exact collapse with
one forget class the closed-form ``b_f`` already satisfies the bound; with several, a sample of
forget class ``f1`` scores ``+(1 - gamma) s ||m||^2 / (K - 1)`` on the flipped row of ``f2`` and
the bound sends it to a retained class instead. On a trained model (imperfect collapse) the
flipped row alone would steal retain samples whose features point away from ``m_f`` (on the
digits MLP: 85 % retain accuracy without the bound, unchanged with it). Centring matters for a
head with a large common component: the uncentred row folds ``-mu_f . mu_G`` into every score
(for ReLU features that pushes every logit of ``f`` down, which is why the paper's variant gives
0 % forget accuracy on trained models too).

``gamma`` (default 0) interpolates towards a zero row. Only whole-class forgetting is
meaningful (a class row is edited); a forget set that is not every sample of its classes is
refused.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import train
from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Settings, forget_classes

HIGHEST = jax.lax.Precision.HIGHEST


VARIANTS = ("paper", "centred")


def edit_head(head, features, labels, forget, num_classes: int, gamma, margin: float = 1e-3,
              variant: str = "paper"):
    """New ``{"kernel" [D, K], "bias" [K]}`` with the rows of classes ``forget`` replaced.

    Args:
      head: ``{"kernel" [D, K], "bias" [K]}`` (the bias may be absent for ``"paper"``).
      features: ``[N, D]`` penultimate features of the training split (every class).
      labels: ``[N]`` int labels.
      forget: ``[F]`` int forget classes.
      num_classes: K.
      gamma: 0 flips the class mean fully, 1 gives a zero row.
      margin: the ``"centred"`` bias bound's margin.
      variant: ``"paper"`` (``w_f = -(1 - gamma) mu_f``, ``b_f = 0``) or ``"centred"`` (the
        scaled, centred edit with its fitted and bounded bias); see the module docstring.

    Returns:
      The edited head (same dtypes).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown classifier_edit variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    features = features.astype(jnp.float32)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    means = jnp.matmul(onehot.T, features, precision=HIGHEST) / jnp.maximum(onehot.sum(0), 1.0)[:, None]
    is_forget = jnp.zeros(num_classes, bool).at[jnp.asarray(forget)].set(True)
    w = head["kernel"].T.astype(jnp.float32)            # [K, D] head rows
    if variant == "paper":
        w = jnp.where(is_forget[:, None], -(1.0 - gamma) * means, w)
        out = {**head, "kernel": w.T.astype(head["kernel"].dtype)}
        if "bias" in head:
            out["bias"] = jnp.where(is_forget, 0.0, head["bias"]).astype(head["bias"].dtype)
        return out
    mu_g = features.mean(0)
    m = means - mu_g                                    # [K, D] centred class means
    b = head["bias"].astype(jnp.float32)
    keep = ~is_forget
    mean_over_kept = lambda v: jnp.sum(jnp.where(keep, v, 0.0)) / keep.sum()
    scale = mean_over_kept(jnp.linalg.norm(w, axis=1)) / mean_over_kept(jnp.linalg.norm(m, axis=1))
    new_rows = -(1.0 - gamma) * scale * m
    eff_bias = mean_over_kept(jnp.matmul(w, mu_g, precision=HIGHEST) + b)
    new_bias = -jnp.matmul(new_rows, mu_g, precision=HIGHEST) + eff_bias
    # never above any sample's best retained logit: b_f <= min_i (max_{c kept} logit_c(h_i) - w_f . h_i)
    logits = jnp.matmul(features, w.T, precision=HIGHEST) + b                      # [N, K]
    best_kept = jnp.max(jnp.where(keep, logits, -jnp.inf), axis=1)                 # [N]
    room = best_kept[:, None] - jnp.matmul(features, new_rows.T, precision=HIGHEST)  # [N, K]
    bound = jnp.min(room, axis=0) - margin
    new_bias = jnp.minimum(new_bias, bound)
    w = jnp.where(is_forget[:, None], new_rows, w)
    b = jnp.where(is_forget, new_bias, b)
    return {**head, "kernel": w.T.astype(head["kernel"].dtype), "bias": b.astype(head["bias"].dtype)}


def apply(key, net, state, problem, hparams, settings):
    classes = forget_classes(problem)
    labels = np.asarray(problem.data["labels"])
    if np.isin(labels[np.asarray(problem.retain)], classes).any():
        raise ValueError("classifier_edit forgets whole classes: the forget set must hold every sample of "
                         "its classes")
    variant = settings.option("variant", "paper")
    if variant not in VARIANTS:
        raise ValueError(f"unknown classifier_edit variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if variant == "centred" and "bias" not in net.head_params(state.params):
        raise ValueError("classifier_edit variant 'centred' needs a head with a bias; use variant=paper")
    predict = train.make_predict(net, settings.option("batch", 1000))
    _, feats = predict(state.params, state.batch_stats, problem.data["images"])
    head = edit_head(net.head_params(state.params), feats["features"], problem.data["labels"], classes, problem.num_classes,
                     hparams["gamma"], variant=variant)
    return state._replace(params=net.replace_head(state.params, head))


METHOD = Method(
    name="classifier_edit",
    summary="training-free: replace the forget rows of the head by flipped class means",
    hparams={"gamma": 0.0},
    options=(opt.HParam("gamma", "0: the flipped class mean; 1: a zero row", 0.0, 1.0),
             opt.Choice("variant", "paper", VARIANTS,
                        "paper: w_f = -(1-gamma) mu_f, no bias; centred: centred, scaled, fitted bias"),
             opt.Int("batch", 1000, "samples per feature-extraction batch", 1)),
    settings=Settings(options=(("batch", 1000), ("variant", "paper"))),
    apply=apply,
    classifier_loss=False,
    host_side="reads the forget classes on the host to choose the head rows it edits",
)
