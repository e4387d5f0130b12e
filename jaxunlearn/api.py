"""The Python API: what research code composes, behind ``import jaxunlearn as ju``.

Each function here is a thin layer over the library's pure parts, with the defaults the CLI
uses (per-dataset presets, the validation-best original model, no relearning attack unless
asked)::

    import jaxunlearn as ju

    ds = ju.dataset_from_arrays((x_train, y_train), (x_test, y_test), val_fraction=0.1)
    net = ju.as_net(MyFlaxModule(num_classes=10), ds)     # or ju.as_net("mlp", ds)
    state, info = ju.train_model(net, ds, epochs=30, lr=0.05, batch_size=64)
    result = ju.unlearn("random_label", net, state, ds, forget=3)
    metrics = ju.evaluate(net, result, ds, forget=3)
    print(metrics["lp"]["forget"], metrics["ncc"]["forget"])

The user's Flax module follows :class:`jaxunlearn.state.Net`'s contract: ``__call__(x,
train)`` returns ``(logits [B, K], {"features": [B, D], ...})`` where ``features`` is the
input of the linear head (``nn.Dense``, by default named ``"head"``; ``head_path`` names
another). :func:`as_net` checks the contract once, abstractly, and refuses a module that
breaks it with a one-line reason.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import data as data_lib
from jaxunlearn.state import Net, TrainState

_FROM_DATASET = object()  # "use the dataset's normalisation" (the default of as_net)


# ----------------------------------------------------------------------------- data

def _pair(split, name):
    try:
        x, y = split
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (images, labels), got {type(split).__name__}") from None
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:  # [N, H, W] grayscale -> [N, H, W, 1]
        x = x[..., None]
    if x.ndim < 2:
        raise ValueError(f"{name} images must be [N, ...] (e.g. [N, H, W, C]), got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{name} labels must be [N] = [{len(x)}] like its images, got shape {y.shape}")
    if len(y) and not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"{name} labels must be integer class ids, got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise ValueError(f"{name} labels must be class ids >= 0, got {int(y.min())}")
    if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{name} images must be uint8 pixels or floats, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x, y.astype(np.int32)


def dataset_from_arrays(train, test, *, val=None, val_fraction: float = 0.0, num_classes: int | None = None,
                        mean: Sequence[float] | None | str = "auto", std: Sequence[float] | None | str = "auto",
                        name: str = "arrays", seed: int = 0) -> data_lib.Dataset:
    """A :class:`~jaxunlearn.data.Dataset` from NumPy arrays.

    Args:
      train, test: ``(images, labels)`` pairs: images ``[N, H, W, C]`` (``[N, H, W]`` gets a
        channel axis; any ``[N, ...]`` works for models that do not need images) as uint8
        pixels or floats; labels ``[N]`` integer class ids.
      val: an optional ``(images, labels)`` validation pair (early stopping of
        :func:`train_model`); else ``val_fraction`` of ``train`` is held out, stratified.
      val_fraction: in ``[0, 1)``; ignored when ``val`` is given.
      num_classes: K (default: the largest label + 1).
      mean, std: per-channel normalisation ``(x / 255 - mean) / std`` of uint8 images.
        ``"auto"`` (default): for uint8 images, the training images' per-channel mean and
        standard deviation (fractions of 255); for float images, ``None`` (the arrays are
        what the model reads). ``None``: no normalisation.
      name: the dataset's name (a known name, e.g. ``"digits"``, selects its unlearning
        presets in :func:`unlearn`).
      seed: seed of the validation split.

    Returns:
      A :class:`~jaxunlearn.data.Dataset`.

    Raises:
      ValueError: mismatched shapes, non-integer or out-of-range labels, a bad fraction.
    """
    tr_x, tr_y = _pair(train, "train")
    te_x, te_y = _pair(test, "test")
    if tr_x.shape[1:] != te_x.shape[1:]:
        raise ValueError(f"train images {tr_x.shape[1:]} and test images {te_x.shape[1:]} differ in shape")
    if val is not None:
        va_x, va_y = _pair(val, "val")
        if va_x.shape[1:] != tr_x.shape[1:]:
            raise ValueError(f"val images {va_x.shape[1:]} and train images {tr_x.shape[1:]} differ in shape")
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        hold = np.zeros(len(tr_y), bool)
        if val_fraction > 0:
            hold[data_lib._stratified_take(tr_y, val_fraction, np.random.default_rng(seed))] = True
        va_x, va_y, tr_x, tr_y = tr_x[hold], tr_y[hold], tr_x[~hold], tr_y[~hold]
    if len(tr_y) == 0:
        raise ValueError("the training split is empty")
    k = int(max(int(y.max()) for y in (tr_y, va_y, te_y) if len(y)) + 1)
    if num_classes is not None:
        if int(num_classes) < k:
            raise ValueError(f"num_classes={num_classes} but the labels go up to {k - 1}")
        k = int(num_classes)
    if k < 2:
        raise ValueError(f"need at least 2 classes, got {k}")
    if isinstance(mean, str) or isinstance(std, str):
        if (isinstance(mean, str) and mean != "auto") or (isinstance(std, str) and std != "auto"):
            raise ValueError("mean and std are 'auto', None or per-channel sequences")
        if tr_x.dtype == np.uint8:
            axes = tuple(range(tr_x.ndim - 1))
            auto_mean = tuple(float(v) for v in (tr_x / 255.0).mean(axis=axes))
            auto_std = tuple(max(float(v), 1e-3) for v in (tr_x / 255.0).std(axis=axes))
        else:
            auto_mean = auto_std = None
        mean = auto_mean if isinstance(mean, str) else mean
        std = auto_std if isinstance(std, str) else std
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if mean is not None:
        mean, std = tuple(float(v) for v in np.ravel(mean)), tuple(float(v) for v in np.ravel(std))
        if len(mean) != len(std) or len(mean) not in (1, tr_x.shape[-1]):
            raise ValueError(f"mean and std need 1 or {tr_x.shape[-1]} (channels) entries, "
                             f"got {len(mean)} and {len(std)}")
    return data_lib.Dataset(name, tr_x, tr_y, va_x, va_y, te_x, te_y, k, mean, std)


def _spec(forget, ds: data_lib.Dataset, seed: int = 0) -> data_lib.ForgetSpec:
    """A forget spec from ``3``, ``[0, 5]``, ``"0,5"``, ``0.1`` (a fraction) or a ForgetSpec."""
    if isinstance(forget, (bool, np.bool_)):
        raise ValueError(f"forget must name classes or a fraction, got {forget!r}")
    if isinstance(forget, (int, np.integer)):
        forget = [int(forget)]
    elif isinstance(forget, (float, np.floating)):
        forget = data_lib.ForgetSpec((), float(forget), seed)
    spec = data_lib.parse_forget(forget, ds.num_classes, seed=seed)
    data_lib.forget_split(ds, spec)  # refuses an empty forget set
    return spec


# ----------------------------------------------------------------------------- models

def as_net(model, dataset: data_lib.Dataset | None = None, *, num_classes: int | None = None,
           mean=_FROM_DATASET, std=_FROM_DATASET, head_path: str | Sequence[str] = "head",
           check: bool = True) -> Net:
    """A :class:`~jaxunlearn.state.Net` from a Flax module or a built-in model's name.

    Args:
      model: a ``flax.linen.Module`` following the contract above, or a name in
        :data:`jaxunlearn.models.MODELS` (``"mlp"``, ``"cnn"``, ``"resnet18"``, ...).
      dataset: gives the input normalisation, the class count of a named model and the
        input shape of the contract check.
      num_classes: K of a named model without ``dataset``.
      mean, std: override the dataset's normalisation; both None: inputs as they are.
      head_path: the head's keys in ``params`` (``"head"``, ``"classifier/fc"``, a tuple).
      check: with ``dataset``, trace the module once (abstractly, no compute) and refuse it
        if it breaks the contract.

    Raises:
      ValueError: unknown model name, no class count, or a module that breaks the contract.
    """
    if isinstance(model, str):
        from jaxunlearn.models import get_model
        k = num_classes if num_classes is not None else getattr(dataset, "num_classes", None)
        if k is None:
            raise ValueError(f"model {model!r} needs num_classes or a dataset")
        model = get_model(model, int(k))
    if mean is _FROM_DATASET:
        mean = None if dataset is None else dataset.mean
    if std is _FROM_DATASET:
        std = None if dataset is None else dataset.std
    net = Net(model, mean, std, head_path=head_path)
    if check and dataset is not None:
        check_net(net, dataset.image_shape, dataset.num_classes)
    return net


def check_net(net: Net, image_shape: Sequence[int], num_classes: int) -> None:
    """Refuses a network that breaks the model contract (one line naming the problem and fix).

    Traced with ``jax.eval_shape``: no parameters are computed.
    """
    x = jnp.zeros((2, *image_shape), jnp.float32)
    name = type(net.module).__name__
    try:
        out, variables = jax.eval_shape(
            lambda: net.module.init_with_output(jax.random.key(0), x, train=False))
    except TypeError as e:
        if "train" in str(e):
            raise ValueError(f"{name}.__call__ must accept train=: define __call__(self, x, train: bool = False)"
                             ) from None
        raise
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping)):
        raise ValueError(f"{name} must return (logits [B, K], {{'features': [B, D], ...}}); "
                         f"it returned {type(out).__name__}")
    logits, feats = out
    if "features" not in feats:
        raise ValueError(f"{name}'s feature dict has no 'features' entry (the head's input [B, D]); "
                         f"it has {', '.join(map(str, feats)) or 'nothing'}")
    if logits.shape != (2, num_classes):
        raise ValueError(f"{name} gives logits of shape {logits.shape[1:]} per batch of 2; "
                         f"expected [B, {num_classes}] (the dataset's classes)")
    f = feats["features"]
    if f.ndim != 2:
        raise ValueError(f"{name}'s features['features'] must be [B, D], got shape {f.shape}")
    head = net.head_params(variables["params"])
    if head["kernel"].shape != (f.shape[1], num_classes):
        raise ValueError(f"the head at {'/'.join(net.head_path)!r} has kernel {head['kernel'].shape}; "
                         f"expected [D, K] = {(f.shape[1], num_classes)} (features['features'] -> logits)")


# ----------------------------------------------------------------------------- training

def train_model(model, ds: data_lib.Dataset, *, seed: int = 0, epochs: int | None = None,
                batch_size: int | None = None, lr: float | None = None, weight_decay: float | None = None,
                patience: int | None = None, progress: bool | str = False, **recipe) -> tuple[TrainState, dict]:
    """Trains an original model on ``ds``'s training split (validation-best state kept).

    The recipe is :func:`jaxunlearn.runs.recipe_for` of the dataset and (named) model, with
    the keyword overrides (``epochs``, ``batch_size``, ``lr``, ``weight_decay``,
    ``patience``, and any other :class:`~jaxunlearn.runs.Recipe` field such as
    ``warmup_epochs``, ``pad``, ``flip``). SGD with Nesterov momentum and a cosine rate, the
    same loop and keys as ``jaxunlearn train`` (a named model trains to the same bits).

    Args:
      model: a :class:`~jaxunlearn.state.Net` (e.g. from :func:`as_net`), a Flax module or
        a built-in model's name.
      ds: the dataset.
      seed: ``jax.random.key(seed)`` initialises the model and orders the batches.
      progress: show a progress bar (a string labels it).

    Returns:
      ``(state, info)``: the state with the best validation accuracy (the last one without a
      validation split) and ``{"train_time_s", "best_epoch", "epochs_run", "steps",
      "val_accuracy", "test_accuracy", "history"}``.
    """
    from jaxunlearn import runs, train

    name = model if isinstance(model, str) else ""
    net = model if isinstance(model, Net) else as_net(model, ds)
    r = runs.recipe_for(ds.name, name, epochs=epochs, batch_size=batch_size, lr=lr,
                        weight_decay=weight_decay, patience=patience, **recipe)
    n = len(ds.train_labels)
    runs.validate_recipe(r, n)
    spe = train.steps_per_epoch(n, r.batch_size)
    cfg = r.optim(spe)
    k_init, k_data = jax.random.split(jax.random.key(seed))
    state = train.init_state(net, k_init, ds.image_shape, cfg)
    step = train.make_step(net, train.supervised_loss, cfg, augment=r.augment())
    run_steps = train.make_run_steps(step, {"train": r.batch_size}, "train")
    predict = train.make_predict(net)
    val_x, val_y = jnp.asarray(ds.val_images), ds.val_labels

    def evaluate(s):
        return {"val_accuracy": runs.accuracy_of(net, s, val_x, val_y, predict)} if len(val_y) else {}

    t0 = time.perf_counter()
    result = train.fit(run_steps, state, k_data, runs.device_data(ds), {"train": jnp.arange(n, dtype=jnp.int32)},
                       {"lr": jnp.float32(r.lr)}, {}, epochs=r.epochs, steps_per_epoch=spe, evaluate=evaluate,
                       early_stopping_metric="val_accuracy" if len(val_y) else None, patience=r.patience,
                       progress=("train " + (name or type(net.module).__name__)) if progress is True else progress)
    hist = result.history
    best = result.best_epoch
    info = {"train_time_s": time.perf_counter() - t0, "best_epoch": best, "epochs_run": len(hist),
            "steps": int(result.state.step),
            "val_accuracy": hist[best - 1].get("val_accuracy") if best else None,
            "test_accuracy": runs.accuracy_of(net, result.state, ds.test_images, ds.test_labels, predict),
            "history": hist}
    return result.state, info


# ----------------------------------------------------------------------------- unlearning

def method_setup(method, ds: data_lib.Dataset, *, mode: str = "full", hparams: Mapping | None = None,
                 settings=None, **options):
    """``(method, hparams overrides, Settings)`` as ``jaxunlearn unlearn`` resolves them.

    The dataset's preset (:mod:`jaxunlearn.unlearn.presets`; a dataset without one uses the
    method's defaults) under the explicit ``hparams`` and ``settings`` / ``options``
    overrides, then typed validation (unknown names, wrong types, out-of-range values are
    refused with the method's valid options).

    Args:
      method: a registry name (see ``jaxunlearn methods``) or a
        :class:`~jaxunlearn.unlearn.core.Method`.
      mode: ``"full"``, ``"classifier_only"`` or ``"cmf"``.
      hparams: overrides of the swept values (``lr``, method coefficients).
      settings: a :class:`~jaxunlearn.unlearn.core.Settings` (used as is, preset ignored),
        or a dict of overrides.
      **options: more overrides of settings fields and method options (``epochs=2``,
        ``label_pool="all"``).
    """
    from jaxunlearn.unlearn import MODES, Settings, get_method, options as opt_lib, presets

    method = get_method(method) if isinstance(method, str) else method
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if isinstance(settings, Settings):
        hp, st = dict(hparams or {}), settings.replace(mode=mode, **options) if options or \
            settings.mode != mode else settings
    else:
        for name in {**dict(settings or {}), **options}:  # as the CLI refuses ``svd --epochs``
            opt_lib.refuse_unused_setting(method, name)
        preset_hp, preset_st = presets.lookup(ds.name, method.name, mode)
        hp = {**preset_hp, **(hparams or {})}
        st = method.settings.replace(mode=mode, **{**preset_st, **dict(settings or {}), **options})
    if mode != "full" and not method.classifier_loss:
        raise ValueError(f"{method.name} has no classifier loss, so mode {mode!r} does not apply")
    opt_lib.validate(method, hp, st)
    return method, hp, st


def unlearn(method, net: Net, state: TrainState, ds: data_lib.Dataset, forget, *, seed: int = 0,
            mode: str = "full", hparams: Mapping | None = None, settings=None, progress: bool | str = False,
            **options):
    """Unlearns ``forget`` from ``state`` with ``method``: what ``jaxunlearn unlearn`` runs.

    Args:
      method: a registry name (``"random_label"``, ``"salun"``, ``"scrub"``, ...; see
        ``jaxunlearn methods``) or a :class:`~jaxunlearn.unlearn.core.Method`.
      net, state: the original model (not modified).
      ds: its dataset.
      forget: a class (``3``), classes (``[0, 5]`` or ``"0,5"``), a fraction of random
        training samples (``0.1``, drawn with ``seed``) or a
        :class:`~jaxunlearn.data.ForgetSpec`.
      seed: the run's key is ``jax.random.key(seed)`` (as the CLI's ``--seed``).
      mode, hparams, settings, **options: see :func:`method_setup` (per-dataset presets,
        explicit values win).
      progress: show a progress bar (True labels it with the method's name).

    Returns:
      :class:`~jaxunlearn.unlearn.core.UnlearnResult` (``.state``, ``.history``,
      ``.runtime_s``, ``.aux``) with ``.spec`` (the forget set), ``.mode`` and ``.preset``
      (the dataset preset applied, ``"defaults"`` for a dataset without one) added as
      attributes; :func:`evaluate` reads the first two.
    """
    from jaxunlearn.unlearn import core, make_problem

    method, hp, st = method_setup(method, ds, mode=mode, hparams=hparams, settings=settings, **options)
    spec = _spec(forget, ds, seed)
    problem = make_problem(ds, spec)
    if st.batch_size > int(problem.retain.shape[0]):
        raise ValueError(f"batch size {st.batch_size} is larger than the retain set ({int(problem.retain.shape[0])})")
    state = state.state if isinstance(state, core.UnlearnResult) else state
    result = core.unlearn(method, jax.random.key(seed), net, state, problem, hp, st,
                          progress=method.name if progress is True else progress)
    from jaxunlearn.unlearn import Settings, presets
    result.spec, result.mode = spec, st.mode
    result.preset = "explicit settings" if isinstance(settings, Settings) else presets.preset_name(ds.name)
    return result


# ----------------------------------------------------------------------------- evaluation

def _state_and_head(state, head):
    from jaxunlearn.unlearn.core import UnlearnResult
    if isinstance(state, UnlearnResult):
        mode = getattr(state, "mode", "full")
        return state.state, head or ("cmf" if mode == "cmf" else "linear")
    return state, head or "linear"


def _reference(ref, net):
    if ref is None:
        return None
    if isinstance(ref, tuple):
        return ref if len(ref) == 3 else (*ref, "linear")
    st, head = _state_and_head(ref, None)
    return net, st, head


def evaluate(net: Net, state, ds: data_lib.Dataset, forget=None, *, head: str | None = None,
             relearn: bool | Sequence[int] = False, relearn_steps: int = 30, probe: str = "fast",
             knn: bool = True, collapse: bool = True, privacy: bool = True, layerwise: bool = False,
             original=None, retrained=None, mia_max_samples: int | None = None) -> dict:
    """Every metric of one model: the output head, linear probe, NCC, k-NN, collapse, privacy.

    Args:
      net: the network.
      state: a :class:`~jaxunlearn.state.TrainState` or the result of :func:`unlearn` (its
        forget set and head are then the defaults of ``forget`` and ``head``).
      ds: the dataset.
      forget: the forget set (as for :func:`unlearn`); default: the result's.
      head: ``"linear"`` or ``"cmf"`` (default: the result's mode, else linear).
      relearn: the relearning attack (fine-tuning on a few labelled forget samples): False
        (default, not run), True (10 and 100 samples, as ``jaxunlearn evaluate``), or the
        sample counts.
      probe: ``"fast"`` (L-BFGS) or a protocol of :data:`jaxunlearn.heads.PROBE_PROTOCOLS`.
      knn, collapse, privacy, layerwise: include those sections.
      original, retrained: references for CKA similarity: a state, an :func:`unlearn`
        result, or ``(net, state[, head])``.

    Returns:
      ``{"full", "lp", "ncc", "knn", "collapse", "privacy", "similarity", "relearn",
      "layerwise", "runtime_s"}`` (present sections only); each head's accuracies are
      ``{"retain", "forget", "all"}`` fractions on the test split (see
      :func:`jaxunlearn.evaluate.evaluate_model`).
    """
    from jaxunlearn import evaluate as ev

    spec_default = getattr(state, "spec", None)
    state, head = _state_and_head(state, head)
    if forget is None and spec_default is None:
        raise ValueError("evaluate needs forget= (the forget set), or the result of ju.unlearn")
    spec = _spec(forget, ds) if forget is not None else spec_default
    counts = () if relearn is False else (10, 100) if relearn is True else tuple(int(k) for k in relearn)
    return ev.evaluate_model(net, state, ds, spec, head=head, original=_reference(original, net),
                             retrained=_reference(retrained, net), probe=probe, knn=knn,
                             collapse_metrics=collapse, privacy_attacks=privacy, layerwise=layerwise,
                             relearn=counts, relearn_steps=relearn_steps, mia_max_samples=mia_max_samples)


def features(net: Net, state, ds: data_lib.Dataset, forget=None, *, head: str | None = None) -> dict:
    """The model's penultimate features in the layout of ``jaxunlearn analyze``'s ``.npz``.

    Returns:
      ``{"train_features" [N, D], "train_labels" [N], "test_features" [M, D], "test_labels"
      [M], "weights" [K, D], "bias" [K] (absent without one), "forget_classes" [F] (with
      class forgetting)}`` as NumPy arrays: save with ``np.savez`` or pass to :func:`analyze`.
    """
    from jaxunlearn import evaluate as ev

    spec = getattr(state, "spec", None) if forget is None else _spec(forget, ds)
    state, head = _state_and_head(state, head)
    f = ev.extract(net, state, ds, head)
    out = {"train_features": f.train_feats["features"], "train_labels": np.asarray(ds.train_labels),
           "test_features": f.test_feats["features"], "test_labels": np.asarray(ds.test_labels),
           "weights": np.asarray(f.weights)}
    if f.bias is not None:
        out["bias"] = np.asarray(f.bias)
    if spec is not None and spec.classes:
        out["forget_classes"] = np.asarray(spec.classes, np.int64)
    return out


def analyze(arrays: Mapping[str, Any], probe: str = "fast", *, knn: bool = True) -> dict:
    """Every head and collapse metric of a set of features (``jaxunlearn analyze``).

    Args:
      arrays: ``{"train_features" [N, D], "train_labels" [N], "test_features" [M, D],
        "test_labels" [M]}`` and optionally ``"weights" [K, D]``, ``"bias" [K]``,
        ``"forget_classes" [F]`` (e.g. from :func:`features`, or features of any model).
      probe: ``"fast"`` or ``"sgd"``.
      knn: include the cosine 5-NN head.

    Returns:
      See :func:`jaxunlearn.analyze.analyze_features`.
    """
    from jaxunlearn import analyze as an
    return an.analyze_features(arrays, probe, knn=knn)
