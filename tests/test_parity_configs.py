"""Paper-parity settings (docs/parity.md items 5, 9, 13): the step schedule of SalUn + CMF, the
CIFAR-100 superclass forget sets, the Tiny-ImageNet / ResNet-50 config, the authors'
log_softmax feature, and the CIFAR retain fine-tuning weight decay."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import cmf, data as data_lib, train
from jaxunlearn.models import resnet
from jaxunlearn.state import Net
from jaxunlearn.unlearn import configs, get_method, make_problem, presets, unlearn


# ----------------------------------------------------------------------------- step schedule (item 5)

@pytest.mark.parametrize("epochs,steps_per_epoch,every,gamma", [(7, 5, 3, 0.2), (4, 1, 1, 0.5), (2, 3, 3, 0.2)])
def test_step_schedule_matches_closed_form(epochs, steps_per_epoch, every, gamma):
    """PyTorch StepLR(step_size=every, gamma) stepped per epoch: lr * gamma ** (epoch // every)."""
    cfg = train.OptimConfig(schedule="step", total_steps=epochs * steps_per_epoch, epochs=epochs,
                            step_epochs=every, step_gamma=gamma)
    steps = np.arange(epochs * steps_per_epoch)
    want = 0.3 * gamma ** ((steps // steps_per_epoch) // every)
    got = [float(train.learning_rate(cfg, jnp.float32(0.3), jnp.int32(s))) for s in steps]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # a traced step count (padded streams inside a pure run) gives the same rates
    traced = jax.jit(lambda s, t: train.learning_rate(cfg, jnp.float32(0.3), s, t))
    np.testing.assert_allclose([float(traced(jnp.int32(s), jnp.int32(epochs * steps_per_epoch))) for s in steps],
                               want, rtol=1e-6)


def test_step_schedule_in_the_runner(trained_digits, digits):
    """Each epoch of a phase runs at lr * 0.2 ** (epoch // 3) (the history's per-epoch mean lr)."""
    net, state = trained_digits
    problem = make_problem(digits, data_lib.parse_forget("3", 10))
    method = get_method("finetune")
    settings = method.settings.replace(epochs=4, schedule="step", step_epochs=3, step_gamma=0.2)
    hist = unlearn(method, jax.random.key(0), net, state, problem, {"lr": 0.01}, settings).history
    np.testing.assert_allclose([r["lr"] for r in hist], [0.01, 0.01, 0.01, 0.002], rtol=1e-6)


def test_salun_cmf_configs_use_the_step_schedule():
    for table in (configs.CIFAR10_CMF, configs.CIFAR10_CMF_SINGLE_CLASS, configs.CIFAR100_CMF,
                  configs.TINY_IMAGENET_CMF):
        s = table["salun"][1]
        assert (s.schedule, s.step_epochs, s.step_gamma, s.epochs, s.clip_norm) == ("step", 3, 0.2, 4, 1.0)
        assert all(st.schedule == "constant" for name, (_, st) in table.items() if name != "salun")
    for dataset in ("cifar10", "cifar100", "tiny_imagenet"):  # the preset gives the config's Settings
        _, s, _ = presets.resolve(get_method("salun"), dataset, "cmf")
        assert (s.schedule, s.step_epochs, s.step_gamma) == ("step", 3, 0.2)
        _, s, _ = presets.resolve(get_method("salun"), dataset)
        assert s.schedule == "constant"


# ----------------------------------------------------------------------------- CIFAR-100 (item 9)

# The fine label names in label order and the superclass table of the CIFAR-100 page (by name),
# a transcription independent of the library's index table.
FINE = ("apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
        "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
        "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
        "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
        "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
        "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table "
        "tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman "
        "worm").split()
BY_NAME = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}
# run_resnet_unlearning.sh lines 38-42, as the authors wrote them
AUTHORS_10_CLASS = ((3, 15, 19, 21, 31, 38, 42, 43, 88, 97), (47, 52, 54, 56, 59, 62, 70, 82, 92, 96),
                    (5, 20, 22, 25, 39, 40, 84, 86, 87, 94), (8, 13, 41, 48, 59, 69, 81, 85, 89, 90),
                    (1, 4, 30, 32, 55, 67, 72, 73, 91, 95))


def test_cifar100_superclasses_are_20_by_5_covering_every_class():
    table = configs.CIFAR100_SUPERCLASSES
    assert len(FINE) == 100 and len(table) == 20
    assert [name for name, _ in table] == sorted(BY_NAME)  # coarse labels 0..19 are alphabetical
    members = [c for _, fine in table for c in fine]
    assert all(len(fine) == 5 for _, fine in table)
    assert sorted(members) == list(range(100))  # a partition of 0..99
    for name, fine in table:
        assert sorted(FINE[c] for c in fine) == sorted(BY_NAME[name].split()), name


def test_cifar100_forget_sets_are_two_superclasses_each():
    sets = configs.CIFAR100_FORGET_SETS
    assert sets[:5] == ((0,), (1,), (2,), (3,), (5,))
    coarse_of = {c: k for k, (_, fine) in enumerate(configs.CIFAR100_SUPERCLASSES) for c in fine}
    for s in sets[5:]:
        assert len(s) == 10 == len(set(s)) and list(s) == sorted(s)
        coarse = {coarse_of[c] for c in s}
        assert len(coarse) == 2 and sorted(s) == sorted(configs.superclass_forget_set(*coarse))
    # the authors' lists, but for their fourth set's 59 (pine tree, already in the second set)
    for ours, theirs in zip(sets[5:], AUTHORS_10_CLASS):
        if ours != theirs:
            assert set(theirs) - set(ours) == {59} and set(ours) - set(theirs) == {58}
    assert sum(ours != theirs for ours, theirs in zip(sets[5:], AUTHORS_10_CLASS)) == 1
    from experiments import configs as study_configs
    assert study_configs.CIFAR100.forget_sets == sets


# ----------------------------------------------------------------------------- Tiny-ImageNet (item 9)

def test_tiny_imagenet_config():
    from experiments import configs as study_configs
    c = study_configs.get_config("tiny_imagenet")
    assert (c.dataset, c.model, c.probe) == ("tiny_imagenet", "resnet50", "paper-tiny_imagenet")
    singles, blocks = c.forget_sets[:5], c.forget_sets[5:]
    assert singles == ((2,), (3,), (5,), (7,), (9,))
    assert [len(b) for b in blocks] == [20] * 5 and sorted(x for b in blocks for x in b) == list(range(100))
    assert blocks[1] == tuple(range(20, 40))
    assert presets.preset_name("tiny_imagenet") == "tiny_imagenet"
    hp, s, _ = presets.resolve(get_method("unsir"), "tiny_imagenet", "cmf")
    assert (hp["lr"], hp["impair_lr"], s.optimizer) == (2e-5, 2e-4, "adam")
    hp, s, _ = presets.resolve(get_method("neggrad_plus"), "tiny_imagenet", "cmf")
    assert hp["lr"] == 3e-5
    for dataset in ("cifar10", "cifar100", "tiny_imagenet"):  # the authors' CMF variant: total clip only
        hp, s, _ = presets.resolve(get_method("neggrad_plus"), dataset, "cmf")
        assert (hp["clip"], s.clip_norm) == (0.0, 1.0)
        assert presets.resolve(get_method("neggrad_plus"), dataset, "full")[0]["clip"] == 1.0
        assert presets.resolve(get_method("boundary_shrink"), dataset, "full")[0]["eps"] == 0.1  # SalUn's bound
    assert presets.resolve(get_method("boundary_shrink"), "digits", "full")[0]["eps"] == 0.2
    hp, s = configs.get_config("tiny_imagenet", "svd")
    assert hp == {"alpha_r": 30.0, "alpha_f": 10.0} and s.option("samples") == 999


def _resnet50_param_count(num_classes: int) -> int:
    """Closed form for the CIFAR-stem ResNet-50 (convs without bias, BatchNorm scale + bias)."""
    total = 3 * 3 * 3 * 64 + 2 * 64  # stem conv and its BatchNorm
    c = 64
    for filters, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for b in range(blocks):
            out = 4 * filters
            total += c * filters + 2 * filters + 9 * filters * filters + 2 * filters + filters * out + 2 * out
            if b == 0:  # the first block of every stage projects (channels or stride change)
                total += c * out + 2 * out
            c = out
    return total + 2048 * num_classes + num_classes


def test_resnet50_shapes_and_parameter_count():
    net = resnet.resnet50(200)
    variables = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((2, 64, 64, 3)), train=False))
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables["params"]))
    assert count == _resnet50_param_count(200)
    # torchvision's ResNet-50 (25,557,032 for 1000 classes) with the 3x3 CIFAR stem and 200 classes
    assert count == 25_557_032 - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64 - (2048 * 1000 + 1000) + (2048 * 200 + 200)
    assert count == 23_910_152
    logits, feats = jax.eval_shape(lambda v: net.apply(v, jnp.zeros((2, 64, 64, 3)), train=False), variables)
    assert logits.shape == (2, 200) and feats["features"].shape == (2, 2048) and feats["stage3"].shape == (2, 1024)


def test_retain_finetuning_weight_decay_on_cifar():
    for dataset in ("cifar10", "cifar100", "tiny_imagenet"):
        _, s, _ = presets.resolve(get_method("finetune"), dataset)
        assert s.weight_decay == 5e-4, dataset
    assert get_method("finetune").settings.weight_decay == 5e-3  # the digits default it no longer inherits


# ----------------------------------------------------------------------------- log_softmax (item 13)

def test_log_softmax_features_option():
    """The authors' quirk: features = f - logsumexp(f); the linear head and parameters unchanged."""
    small = lambda flag: resnet.ResNet(5, (1, 1), width=8, log_softmax_features=flag)
    x = jax.random.uniform(jax.random.key(1), (6, 8, 8, 3))
    v = small(False).init(jax.random.key(0), x, train=False)
    v_on = small(True).init(jax.random.key(0), x, train=False)
    assert jax.tree.structure(v) == jax.tree.structure(v_on)
    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(v_on)):
        np.testing.assert_array_equal(a, b)
    logits, feats = small(False).apply(v, x, train=False)
    logits_on, feats_on = small(True).apply(v, x, train=False)
    np.testing.assert_array_equal(logits, logits_on)
    np.testing.assert_array_equal(feats["stage2"], feats_on["stage2"])
    f = np.asarray(feats["features"], np.float64)
    m = f.max(-1, keepdims=True)
    want = f - m - np.log(np.exp(f - m).sum(-1, keepdims=True))  # NumPy log_softmax
    np.testing.assert_allclose(feats_on["features"], want, rtol=1e-5, atol=1e-6)
    assert get_model_default_is_off()
    # through a Net: the CMF head's logits are those of the log_softmax features
    net = Net(small(True), (0.5,) * 3, (0.25,) * 3)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3)), jnp.uint8)
    _, fe, _ = net.forward(v["params"], v["batch_stats"], images, False)
    head = cmf.cmf_head(fe["features"], jnp.arange(6) % 5, 5)
    cmf_logits, _, _ = net.with_head(head).forward(v["params"], v["batch_stats"], images, False)
    _, plain, _ = Net(small(False), (0.5,) * 3, (0.25,) * 3).forward(v["params"], v["batch_stats"], images, False)
    g = np.asarray(plain["features"], np.float64)
    g = g - g.max(-1, keepdims=True) - np.log(np.exp(g - g.max(-1, keepdims=True)).sum(-1, keepdims=True))
    np.testing.assert_allclose(cmf_logits, cmf.cmf_logits(head, jnp.asarray(g, jnp.float32)), rtol=1e-4, atol=1e-5)


def get_model_default_is_off() -> bool:
    from jaxunlearn.models import get_model
    return not get_model("resnet18", 10).log_softmax_features and not get_model("resnet50", 10).log_softmax_features


def test_classifier_only_tables_of_cifar100_and_tiny():
    """Table 2 rates reach the study through the presets (the classifier-only script's rates)."""
    for dataset, rates in (("cifar100", {"random_label": 3e-3, "salun": 3e-3, "neggrad_plus": 5e-5, "scrub": 1e-3,
                                         "unsir": 3e-5}),
                           ("tiny_imagenet", {"random_label": 5e-4, "salun": 5e-4, "neggrad_plus": 5e-4,
                                              "scrub": 5e-3, "unsir": 2e-5})):
        for name, lr in rates.items():
            hp, s, _ = presets.resolve(get_method(name), dataset, "classifier_only")
            assert hp["lr"] == lr and s.mode == "classifier_only", (dataset, name)


# ----------------------------------------------------------------------------- probe comparison (item 1)

def test_probe_compare_on_separable_features(tmp_path):
    from experiments import probe_compare
    rng = np.random.default_rng(0)
    centres = 20.0 * np.eye(3, 8)
    y = np.repeat(np.arange(3), 60)
    x = (centres[y] + rng.normal(size=(180, 8))).astype(np.float32)
    res = probe_compare.compare_probes(x, y, x, y, [2], 3, ("fast", "paper-cifar10"))
    for probe in ("fast", "paper-cifar10"):
        assert res[probe]["retain"] == 100.0 and res[probe]["forget"] == 100.0
    rows = [{"model": "m", "seed": 0, "forget": [2], **res}]
    text = probe_compare.table(rows, ("fast", "paper-cifar10"))
    assert "| m | 0 | 2 | 100.0 | 100.0 | 0.0 | 100.0 | 100.0 | 0.0 |" in text
    out = tmp_path / "t.md"
    out.write_text("keep")
    assert probe_compare.main(["--digits", "--out", str(out)]) == 2 and out.read_text() == "keep"
