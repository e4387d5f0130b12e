"""Study rows that differ in their settings get their own models and records (issue 16, P8): the
paper configs' Table 2 runs the paper's classifier edit and the centred one side by side."""

import types

import pytest

from experiments import configs
from experiments.configs import MethodRun
from experiments.study import Study


def test_keys_without_settings_are_unchanged():
    assert MethodRun("random_label").key == "random_label-full"
    assert MethodRun("random_label", "cmf", (("lr", 0.2),)).key == "random_label-cmf"  # hparams do not enter
    assert MethodRun("classifier_edit").name == "classifier_edit"


def test_settings_enter_the_key_and_the_records_name():
    run = MethodRun("classifier_edit", settings=(("variant", "centred"),), label="classifier_edit (centred)")
    assert run.name == "classifier_edit.variant_centred" and run.key == "classifier_edit.variant_centred-full"
    assert run.title == "classifier_edit (centred)"
    assert MethodRun("salun", settings=(("clip_norm", 1.0), ("schedule", "step/3"))).name == \
        "salun.clip_norm_1.0.schedule_step_3"  # file-name safe
    # the key keeps `name-mode` (consumers split the mode off the right)
    assert run.key.rsplit("-", 1) == [run.name, run.mode]
    # the study files and records use key and name, and the variant reaches the method's options
    for cfg in ("cifar10", "cifar100", "tiny_imagenet"):
        stub = types.SimpleNamespace(ds=types.SimpleNamespace(name=cfg))
        files, _, name, mode = Study._models_of(stub, run)
        assert (files, name, mode) == (run.key, run.name, "full")
        _, _, settings = Study._method_setup(stub, run)
        assert settings.option("variant") == "centred"
        _, _, settings = Study._method_setup(stub, MethodRun("classifier_edit"))
        assert settings.option("variant", "paper") == "paper"


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tiny_imagenet"])
def test_paper_configs_table2_has_both_edits(name):
    c = configs.get_config(name)
    edits = [r for r in c.table2 if r.method == "classifier_edit"]
    assert [dict(r.settings).get("variant", "paper") for r in edits] == ["paper", "centred"]
    assert len({r.key for r in edits}) == 2 and len({r.title for r in edits}) == 2
    keys = [r.key for r in (*c.table1, *c.table2, *c.table3)]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("name", ["fashion_mnist", "digits"])
def test_default_study_keeps_one_edit(name):
    assert [r.key for r in configs.get_config(name).table2 if r.method == "classifier_edit"] == ["classifier_edit-full"]


def test_rows_sharing_a_key_are_refused():
    with pytest.raises(ValueError, match="share the model key 'classifier_edit-full'"):
        configs.dataclasses.replace(configs.DIGITS, table2=(MethodRun("classifier_edit"),
                                                            MethodRun("classifier_edit", label="again")))
