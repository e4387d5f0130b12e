"""Typed method options (parsing, checks, declarations), per-dataset presets, `methods`, help texts."""

import ast
import dataclasses
import importlib
import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import cli
from jaxunlearn.data import DATASETS
from jaxunlearn.unlearn import METHODS, Method, Settings, configs, get_method, options, presets


# ----------------------------------------------------------------------------- parsing one value

@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("1", True), ("yes", True), ("on", True),
                                        ("false", False), ("False", False), ("0", False), ("no", False),
                                        ("NO", False), ("off", False)])
def test_bool_words(text, value):
    assert options.parse_value(options.Bool("b", True, ""), text) is value


def test_bool_refuses_other_words():
    with pytest.raises(ValueError, match="boolean"):
        options.parse_value(options.Bool("until_wrong", True, ""), "maybe")


def test_int_parsing_and_refusals():
    spec = options.Int("per_class", 1000, "", 1)
    v = options.parse_value(spec, "500")
    assert v == 500 and type(v) is int
    for bad, msg in [("500.5", "integer"), ("5e2", "integer"), ("abc", "integer"), ("0", ">= 1")]:
        with pytest.raises(ValueError, match=msg):
            options.parse_value(spec, bad)


def test_float_parsing_and_ranges():
    spec = options.HParam("lr", "", 0.0, low_open=True)
    assert options.parse_value(spec, "1e-3") == pytest.approx(1e-3)
    for bad in ("0", "-0.1", "nan", "inf", "fast"):
        with pytest.raises(ValueError, match="lr"):
            options.parse_value(spec, bad)
    closed = options.HParam("gamma", "", 0.0, 1.0)
    assert options.parse_value(closed, "0") == 0.0 and options.parse_value(closed, "1") == 1.0
    with pytest.raises(ValueError, match=re.escape("in [0, 1]")):
        options.parse_value(closed, "1.5")


def test_choice_parsing():
    spec = options.Choice("label_pool", "retain", ("retain", "all"), "")
    assert options.parse_value(spec, "all") == "all"
    with pytest.raises(ValueError, match="retain, all"):
        options.parse_value(spec, "some")


def test_range_text():
    assert options.HParam("x", "", 0.0, low_open=True).range_text == "> 0"
    assert options.Float("m", 0.9, "", 0.0, 1.0, high_open=True).range_text == "in [0, 1)"
    assert options.Int("k", 1, "", 1).range_text == ">= 1"
    assert options.Float("f", 1.0, "").range_text == ""


# ----------------------------------------------------------------------------- --set against a method

def test_until_wrong_false_is_false():
    hp, opts = options.parse_sets(get_method("gradient_ascent"), ["until_wrong=False"])
    assert hp == {} and opts == {"until_wrong": False}
    s = get_method("gradient_ascent").settings.replace(**opts)
    assert s.option("until_wrong") is False


def test_per_class_is_an_int():
    hp, opts = options.parse_sets(get_method("unsir"), ["per_class=500", "noise_lr=0.05"])
    assert opts == {"per_class": 500} and type(opts["per_class"]) is int
    assert hp == {"noise_lr": 0.05}
    with pytest.raises(ValueError, match="per_class"):
        options.parse_sets(get_method("unsir"), ["per_class=500.5"])


def test_misspelt_name_names_the_valid_ones():
    with pytest.raises(ValueError) as e:
        options.parse_sets(get_method("neggrad_plus"), ["forget_wieght=0.5"])
    msg = str(e.value)
    assert "forget_wieght" in msg and "\n" not in msg
    for name in ("lr", "forget_weight", "clip", "epochs", "batch_size"):
        assert name in msg


def test_settings_fields_through_set():
    hp, opts = options.parse_sets(get_method("scrub"), ["epochs=3", "batch_size=32", "schedule=cosine", "msteps=1"])
    s = get_method("scrub").settings.replace(**opts)
    assert (s.epochs, s.batch_size, s.schedule, s.option("msteps")) == (3, 32, "cosine", 1)
    with pytest.raises(ValueError, match="sgd, adam"):
        options.parse_sets(get_method("scrub"), ["optimizer=rmsprop"])


def test_training_free_method_has_no_epochs():
    with pytest.raises(ValueError, match="svd has no hyper-parameter or option 'epochs'"):
        options.parse_sets(get_method("svd"), ["epochs=3"])


def test_set_without_equals():
    with pytest.raises(ValueError, match="NAME=VALUE"):
        options.parse_sets(get_method("svd"), ["samples"])


# ----------------------------------------------------------------------------- validate (the Python API)

def test_validate_accepts_every_default():
    for m in METHODS.values():
        options.validate(m, {}, m.settings)
        options.validate(m, dict(m.hparams), m.settings)


def test_validate_refuses_unknown_hparam():
    with pytest.raises(ValueError, match="random_label has no hyper-parameter 'forget_weight'.*it has hyper-parameters lr"):
        options.validate(get_method("random_label"), {"forget_weight": 0.5})


def test_validate_refuses_bad_values():
    m = get_method("unsir")
    for hp, st, msg in [({"lr": -1.0}, {}, "lr"), ({"lr": float("nan")}, {}, "lr"), ({"lr": "0.1"}, {}, "number"),
                        ({}, {"per_class": 500.0}, "per_class must be an integer"),
                        ({}, {"per_class": True}, "per_class must be an integer"),
                        ({}, {"epochs": 0}, "epochs must be >= 1"),
                        ({}, {"impair_epochs": 2}, "impair_epochs"),  # the method's own phase-plan refusal
                        ({}, {"noise_sise": 3}, "unsir has no option 'noise_sise'")]:
        with pytest.raises(ValueError, match=msg):
            options.validate(m, hp, m.settings.replace(**st))
    ga = get_method("gradient_ascent")
    with pytest.raises(ValueError, match="until_wrong must be true or false"):
        options.validate(ga, {}, ga.settings.replace(until_wrong="False"))
    with pytest.raises(ValueError, match="unknown mode"):
        options.validate(ga, {}, ga.settings.replace(mode="bogus"))


def test_validate_hparam_arrays_elementwise():
    m = get_method("neggrad_plus")
    options.validate(m, {"lr": np.array([1e-3, 1e-2]), "forget_weight": jnp.array([0.0, 0.5])})
    with pytest.raises(ValueError, match="forget_weight must be finite and >= 0, got -0.5"):
        options.validate(m, {"forget_weight": np.array([0.5, -0.5])})
    with pytest.raises(ValueError, match="must be one number"):
        options.validate(m, {}, m.settings.replace(momentum=np.array([0.9, 0.8])))


def test_validate_skips_traced_values():
    m = get_method("neggrad_plus")

    @jax.jit
    def f(lr):
        options.validate(m, {"lr": lr})  # a tracer: names checked, values not
        return lr * 2

    assert float(f(-1.0)) == -2.0


def test_unlearn_refuses_through_validate(trained_digits, digits):
    """The Python API's runner checks hyper-parameter names (as the CLI does)."""
    from jaxunlearn.data import ForgetSpec
    from jaxunlearn.unlearn import make_problem, unlearn
    net, state = trained_digits
    problem = make_problem(digits, ForgetSpec(classes=(3,)))
    if "options.validate" not in inspect.getsource(unlearn):
        pytest.skip("unlearn() does not call options.validate yet")
    with pytest.raises(ValueError, match="no hyper-parameter 'forget_wieght'"):
        unlearn(get_method("neggrad_plus"), jax.random.key(0), net, state, problem, {"forget_wieght": 0.5})


# ----------------------------------------------------------------------------- the declarations

def test_every_method_declares_what_it_reads():
    """Each method's spec defaults equal the defaults its code reads (``option("name", default)``)."""
    from jaxunlearn.unlearn import core
    core_src = inspect.getsource(core)
    for name, m in METHODS.items():
        assert m.options, f"{name} declares no options"
        by_name = options.specs(m)
        assert {s.name for s in m.options if s.hparam} == set(m.hparams)
        src = inspect.getsource(importlib.import_module(f"jaxunlearn.unlearn.{name}"))
        if name == "salun":
            src += inspect.getsource(METHODS["random_label"].phases)
        read = dict(re.findall(r"\.option\(\"(\w+)\", ([^)]+)\)", src))
        for opt_name, literal in read.items():
            assert opt_name in by_name, f"{name} reads option {opt_name} but does not declare it"
            assert by_name[opt_name].default == ast.literal_eval(literal), (name, opt_name)
        for s in m.options:  # every declared method-specific option is read somewhere
            if not s.hparam and s.name not in options.SETTINGS_FIELDS:
                assert s.name in read or f'"{s.name}"' in core_src, (name, s.name)
        for s in m.options:  # every hyper-parameter is read by the code
            if s.hparam and s.name != "lr":
                assert f'"{s.name}"' in src.split("METHOD = Method(")[0], (name, s.name)
        for s in m.options:
            assert s.help, (name, s.name)


def test_declaration_is_checked():
    base = dict(name="toy", summary="", hparams={"lr": 0.1}, phases=lambda s: [])
    Method(**base)  # declaring nothing is allowed (a user's method)
    Method(**base, options=(options.LR(), *options.TRAINING))
    with pytest.raises(ValueError, match="differ"):
        Method(**base, options=(*options.TRAINING,))
    with pytest.raises(ValueError, match="declared twice"):
        Method(**base, options=(options.LR(), options.LR()))
    with pytest.raises(ValueError, match="k defaults to 2"):
        Method(**base, settings=Settings(options=(("k", 2),)), options=(options.LR(), options.Int("k", 3, "")))
    with pytest.raises(ValueError, match="not declared"):
        Method(**base, settings=Settings(options=(("k", 2),)), options=(options.LR(),))
    with pytest.raises(ValueError, match="must be a float"):
        options.Spec("n", "int", "", hparam=True)


def test_undeclared_method_checks_names_only():
    m = Method(name="toy", summary="", hparams={"lr": 0.1}, phases=lambda s: [])
    assert options.parse_sets(m, ["lr=0.5"]) == ({"lr": 0.5}, {})
    with pytest.raises(ValueError, match="toy has no hyper-parameter or option 'k'"):
        options.parse_sets(m, ["k=1"])
    options.validate(m, {"lr": 0.5}, m.settings.replace(anything=3))
    with pytest.raises(ValueError, match="no hyper-parameter 'x'"):
        options.validate(m, {"x": 1.0})


# ----------------------------------------------------------------------------- presets

def test_every_preset_entry_validates():
    for dataset, table in presets.PRESETS.items():
        for key, (hp, st) in table.items():
            method, _, mode = key.partition("-")
            m = get_method(method)
            s = m.settings.replace(mode=mode or "full", **st)
            options.validate(m, hp, s)


def test_fashion_mnist_preset_lookup():
    hp, st = presets.lookup("fashion_mnist", "scrub")
    assert hp == {"lr": 1e-3} and st == {"epochs": 1, "msteps": 1}
    assert presets.lookup("fashion_mnist", "scrub", "cmf") == ({"lr": 0.05}, {"epochs": 1, "msteps": 1})
    # classifier-only falls back to the method's entry; a method without one keeps its defaults
    assert presets.lookup("fashion_mnist", "neggrad_plus", "classifier_only") == ({}, {"epochs": 1})
    assert presets.lookup("fashion_mnist", "gradient_ascent") == ({}, {})
    hp, s, name = presets.resolve(get_method("finetune"), "fashion_mnist")
    assert name == "fashion_mnist" and hp == {"lr": 0.01}
    assert (s.epochs, s.weight_decay, s.mode) == (1, 5e-4, "full")
    assert presets.preset_name("digits") == "digits" and presets.preset_name("mnist") == "defaults"
    assert presets.lookup("digits", "scrub") == ({}, {}) and presets.lookup("mnist", "scrub") == ({}, {})
    a, _ = presets.lookup("fashion_mnist", "scrub")
    a["lr"] = 9.0  # a copy: the table is not changed
    assert presets.lookup("fashion_mnist", "scrub")[0] == {"lr": 1e-3}


def test_fashion_mnist_preset_is_the_study_config():
    """The FASHION_MNIST study config's overrides, method by method (an independent transcription)."""
    from experiments.configs import FASHION_MNIST
    for run in FASHION_MNIST.table1 + FASHION_MNIST.table2 + FASHION_MNIST.table3:
        if not (run.hparams or run.settings):  # the study takes the preset (or the defaults)
            continue
        hp, st = presets.lookup("fashion_mnist", run.method, run.mode)
        assert {**hp, **dict(run.hparams)} == hp and {**st, **dict(run.settings)} == st, run.key


@pytest.mark.parametrize("dataset,table,mode", [("cifar10", "CIFAR10", "full"), ("cifar10", "CIFAR10_CMF", "cmf"),
                                                ("cifar10", "CIFAR10_CLASSIFIER_ONLY", "classifier_only"),
                                                ("cifar100", "CIFAR100", "full"), ("cifar100", "CIFAR100_CMF", "cmf")])
def test_cifar_presets_are_the_paper_configs(dataset, table, mode):
    """Applied to each method's defaults, the preset gives exactly the ``(hparams, Settings)`` of
    :mod:`jaxunlearn.unlearn.configs` (the paper's and the authors' scripts' values)."""
    for method, (hp_ref, s_ref) in getattr(configs, table).items():
        m = get_method(method)
        hp, s, name = presets.resolve(m, dataset, mode)
        assert name == dataset
        assert hp == {**m.hparams, **hp_ref}, method
        assert dataclasses.replace(s, options=()) == dataclasses.replace(s_ref, mode=mode, options=()), method
        ref_opts = dict(s_ref.options)
        for k, v in s.options:  # the config's options, the others at the method's defaults
            assert v == ref_opts.get(k, m.settings.option(k)), (method, k)
        assert set(ref_opts) <= set(dict(s.options)), method
    hp, s, _ = presets.resolve(get_method("cmf_finetune"), dataset, "cmf")  # the paper's CMF model
    assert (hp["lr"], s.epochs, s.weight_decay) == (3e-4, 1, 1e-4)


def test_cifar10_rates_of_the_paper():
    """A few numbers of PAPER.md's table, independently of configs.py."""
    assert presets.lookup("cifar10", "random_label")[0]["lr"] == 1e-4
    assert presets.lookup("cifar10", "scrub")[1]["batch_size"] == 64
    hp, st = presets.lookup("cifar10", "random_label", "cmf")
    assert hp == {"lr": 2e-3} and st["epochs"] == 4
    assert presets.lookup("cifar10", "neggrad_plus", "cmf")[0]["forget_weight"] == 0.5
    assert presets.lookup("cifar10", "gradient_ascent") == ({}, {})  # not tuned by the paper: defaults


# ----------------------------------------------------------------------------- the command line

def test_methods_lists_every_method(capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    for name, m in METHODS.items():
        assert f"{name}: {m.summary}" in out
        for s in m.options:
            assert f"  {s.name} = " in out
    assert "until_wrong = true  (bool)" in out and "label_pool = retain  (choice, retain | all)" in out
    assert "per_class = 1000  (int, >= 1)" in out


def test_methods_shows_a_datasets_defaults(capsys):
    assert cli.main(["methods", "--dataset", "fashion_mnist"]) == 0
    out = capsys.readouterr().out
    scrub = out[out.index("scrub:"):out.index("unsir:")]
    assert "lr = 0.001 " in scrub and "msteps = 1 " in scrub and "epochs = 1 " in scrub
    assert "in mode cmf (--cmf): lr=0.05\n" in scrub
    assert cli.main(["methods", "--dataset", "mnist"]) == 0
    assert "mnist has no preset" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli.main(["methods", "--dataset", "nope"])
    assert e.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_version(capsys):
    from importlib import metadata
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxunlearn {metadata.version('jaxunlearn')}"


def test_help_texts(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and ":func:" not in top
    for command in ("train", "unlearn", "evaluate", "analyze", "methods"):
        assert command in top
    helps = {}
    for command in ("train", "unlearn", "evaluate", "analyze", "reproduce", "study", "methods"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        helps[command] = " ".join(capsys.readouterr().out.split())
    for d in DATASETS:
        assert d in helps["train"]
    for m in METHODS:
        assert m in helps["unlearn"]
    assert "--seed SEED PRNG seed of the run (and of a random forget set) (default: 0)" in helps["unlearn"]
    assert "(default: fast)" in helps["evaluate"]
    for h in (helps["evaluate"], helps["analyze"]):
        assert "{fast,sgd,paper-cifar10,paper-cifar100,paper-tiny_imagenet}" in h
    assert "{fashion_mnist,digits,cifar10,cifar100,tiny_imagenet}" in helps["study"]
    assert "{fashion_mnist,digits,cifar10,cifar100,tiny_imagenet}" in helps["reproduce"]
    assert "--keep KEEP checkpoints kept (default: 3)" in helps["train"]
    parser = cli.build_parser()  # every option of every sub-command says its default or is required/a flag
    for action in parser._subparsers._group_actions[0].choices.values():
        for a in action._actions:
            if a.option_strings and a.help and not a.required and a.nargs != 0 and a.dest != "help":
                assert "default" in a.help or a.default not in (None, []), (action.prog, a.dest)
