"""jaxunlearn: machine unlearning in JAX that looks inside the model.

``import jaxunlearn as ju`` is cheap: the names below load their modules on first use
(``ju.unlearn`` imports JAX, Flax and the methods then), so the XLA flag set at the top of
this file still precedes JAX's initialisation. What research code composes:

* data: ``ju.dataset_from_arrays``, ``ju.load_dataset``, ``ju.Dataset``, ``ju.ForgetSpec``,
  ``ju.parse_forget``;
* models: ``ju.as_net`` (a Flax module or a built-in name -> ``ju.Net``), ``ju.get_model``,
  ``ju.MODELS``, ``ju.train_model``, ``ju.TrainState``;
* unlearning: ``ju.unlearn(method, net, state, ds, forget)``, ``ju.METHODS``,
  ``ju.get_method``, ``ju.Settings``, ``ju.method_setup``, ``ju.make_problem``;
* evaluation: ``ju.evaluate`` (every head, collapse, privacy; the relearning attack only with
  ``relearn=``), ``ju.features``, ``ju.analyze`` (metrics of any features);
* CMF: ``ju.cmf_head``, ``ju.cmf_logits``, ``ju.cmf_features``, ``ju.CMFHead``;
* pure runs and sweeps: ``ju.make_unlearn``, ``ju.make_train``, ``ju.make_problems``,
  ``ju.problem_axes``, ``ju.unlearn_seeds``, ``ju.sweep_forget_sets``, ``ju.sweep_hparams``,
  ``ju.train_seeds``;
* metrics: ``ju.evaluate_heads``, ``ju.collapse_metrics``, ``ju.linear_cka``,
  ``ju.mia_efficacy``, ``ju.split_accuracy``.

``ju.unlearn``, ``ju.evaluate`` and ``ju.analyze`` are also the submodules of those names
(``ju.evaluate.extract``, ``from jaxunlearn import evaluate``): calling the module calls
the function of :mod:`jaxunlearn.api`.
"""

import os as _os

# XLA:CPU in jaxlib 0.12 runs convolutions through YNNPACK; its weight-gradient convolutions
# made a ResNet-18 CPU train step more than twice as expensive as with XLA's own (Eigen)
# convolutions (benchmarks/README.md, attempts). The flag must be set before JAX creates its
# CPU backend, so it is added here, at import; it does not affect GPU/TPU. XLA aborts on flags
# it does not know, so only for the jaxlib version it was measured with. Set
# JAXUNLEARN_KEEP_XLA_FLAGS=1 to leave XLA_FLAGS alone.
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-INDIVIDUAL_CONVOLUTION"


def _jaxlib_minor() -> tuple:
    try:
        from importlib.metadata import version
        return tuple(int(p) for p in version("jaxlib").split(".")[:2])
    except Exception:  # noqa: BLE001 - no jaxlib metadata: leave the flags alone
        return (0, 0)


if (_os.environ.get("JAXUNLEARN_KEEP_XLA_FLAGS") != "1" and _jaxlib_minor() == (0, 12)
        and "xla_cpu_experimental_ynn_fusion_type" not in _os.environ.get("XLA_FLAGS", "")):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + " " + _YNN_FLAG).strip()

__version__ = "0.1.0"


# ----------------------------------------------------------------------------- lazy API

import importlib as _importlib
import sys as _sys
import types as _types

_API = "jaxunlearn.api"
#: public name -> the module that defines it (imported on first access)
_LAZY = {
    **dict.fromkeys(("dataset_from_arrays", "as_net", "check_net", "train_model", "method_setup",
                     "features"), _API),
    **dict.fromkeys(("Dataset", "ForgetSpec", "ForgetSplit", "load_dataset", "parse_forget", "forget_split",
                     "DATASETS", "DataNotFoundError"), "jaxunlearn.data"),
    **dict.fromkeys(("Net", "TrainState"), "jaxunlearn.state"),
    **dict.fromkeys(("get_model", "MODELS"), "jaxunlearn.models"),
    **dict.fromkeys(("METHODS", "MODES", "Method", "Phase", "Problem", "Settings", "UnlearnResult", "get_method",
                     "make_problem", "make_problems", "make_unlearn", "problem_axes"), "jaxunlearn.unlearn"),
    **dict.fromkeys(("unlearn_seeds", "sweep_forget_sets", "sweep_hparams"), "jaxunlearn.unlearn.sweep"),
    **dict.fromkeys(("make_train", "make_step", "make_predict", "OptimConfig", "AugmentConfig"), "jaxunlearn.train"),
    **dict.fromkeys(("train_seeds",), "jaxunlearn.seeds"),
    **dict.fromkeys(("Recipe", "recipe_for", "RunError"), "jaxunlearn.runs"),
    **dict.fromkeys(("CMFHead", "cmf_head", "cmf_logits", "cmf_features"), "jaxunlearn.cmf"),
    **dict.fromkeys(("evaluate_heads", "split_accuracy", "linear_probe_fit", "linear_probe_sgd", "ncc_fit",
                     "ncc_predict", "knn_predict"), "jaxunlearn.heads"),
    **dict.fromkeys(("collapse_metrics",), "jaxunlearn.collapse"),
    **dict.fromkeys(("mia_efficacy",), "jaxunlearn.privacy"),
    **dict.fromkeys(("linear_cka", "cka_retain_forget"), "jaxunlearn.similarity"),
}
#: submodules that are also the API's functions of the same name
_CALLABLE_MODULES = ("unlearn", "evaluate", "analyze")


class _CallableModule(_types.ModuleType):
    """A submodule that, called, runs :mod:`jaxunlearn.api`'s function of its name."""

    def __call__(self, *args, **kwargs):
        return getattr(_importlib.import_module(_API), self.__name__.rpartition(".")[2])(*args, **kwargs)


def _make_callable(module):
    if type(module) is _types.ModuleType:
        module.__class__ = _CallableModule
    return module


class _Package(_types.ModuleType):
    """This package: a submodule in ``_CALLABLE_MODULES`` becomes callable when it is imported
    (the import system sets it as an attribute of the package, whoever imports it first)."""

    def __setattr__(self, name, value):
        if name in _CALLABLE_MODULES and isinstance(value, _types.ModuleType):
            _make_callable(value)
        super().__setattr__(name, value)


def __getattr__(name: str):
    if name in _CALLABLE_MODULES:
        return _make_callable(_importlib.import_module(f"{__name__}.{name}"))
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY, *_CALLABLE_MODULES})


__all__ = sorted({*_LAZY, *_CALLABLE_MODULES})

_sys.modules[__name__].__class__ = _Package
for _name in _CALLABLE_MODULES:  # already imported (e.g. while this file was re-executed)
    if f"{__name__}.{_name}" in _sys.modules:
        _make_callable(_sys.modules[f"{__name__}.{_name}"])
