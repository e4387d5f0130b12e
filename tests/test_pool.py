"""Model pools: a batched pool equals separate runs; resuming rebuilds only what is missing."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxunlearn import cli, data as data_lib, pool as pool_lib, runs, train
from jaxunlearn.runs import RunError
from jaxunlearn.unlearn import get_method, make_problem, make_unlearn, unlearn

EPOCHS = 2  # short trainings: the test checks equality, not accuracy
CONFIG = dict(dataset="digits", model="mlp", forget="3", models=8, batch=4, epochs=EPOCHS, retain_sample=100)


@pytest.fixture(scope="module")
def built(digits, tmp_path_factory):
    """A pool of 8 retrained + 8 random_label models, in batches of 4, vmapped."""
    work = tmp_path_factory.mktemp("pool") / "p"
    out = pool_lib.build_pool(work, "random_label", "full", strategy="vmap", ds=digits, log=None, **CONFIG)
    return work, out


def _logits(net, state, ds, rows):
    tr = np.asarray(net.forward(state.params, state.batch_stats, ds.train_images, False)[0])
    te = np.asarray(net.forward(state.params, state.batch_stats, ds.test_images, False)[0])
    return {"forget": tr[rows["forget"]], "retain": tr[rows["retain"]], "test": te[rows["test"]]}


def test_pool_equals_separate_runs(built, digits):
    work, out = built
    split = data_lib.forget_split(digits, data_lib.parse_forget("3", 10))
    rows = out["rows"]
    np.testing.assert_array_equal(rows["forget"], split.train_forget)
    assert set(rows["retain"]) <= set(split.train_retain) and len(rows["retain"]) == 100
    np.testing.assert_array_equal(out["labels"]["forget"], digits.train_labels[split.train_forget])
    for side in ("retrained", "unlearned"):
        for s in pool_lib.SPLITS:
            assert out[side]["logits"][s].shape == (8, len(rows[s]), 10)
    recipe = runs.recipe_for("digits", "mlp", epochs=EPOCHS)
    # the original: seed 0 on the whole training split, as `jaxunlearn train --seed 0`
    net, original, _ = runs.train_model(digits, "mlp", recipe, 0, progress=False)
    stored = runs.load_run(work / "original", dataset=digits).state
    np.testing.assert_allclose(_logits(net, stored, digits, rows)["test"],
                               _logits(net, original, digits, rows)["test"], atol=1e-5)
    method = get_method("random_label")
    problem = make_problem(digits, data_lib.parse_forget("3", 10))
    # model i as a run of its own: the pure whole run jitted for one seed (no vmap), and for
    # model 0 also the host drivers (what `jaxunlearn train --seed 1000` / `unlearn --seed 0` run)
    spe = train.steps_per_epoch(len(split.train_retain), recipe.batch_size)
    one_train = jax.jit(train.make_train(net, digits.image_shape, recipe.optim(spe), epochs=recipe.epochs,
                                         batch_size=recipe.batch_size))
    data = {"images": digits.train_images, "labels": digits.train_labels,
            "train_rows": train.as_stream(split.train_retain), "val_images": digits.val_images,
            "val_labels": digits.val_labels}
    one_unlearn = jax.jit(lambda k: make_unlearn(method, net)(k, original, problem, None)[0])
    for i in range(8):
        retrained = one_train(jax.random.key(pool_lib.RETRAIN_SEED0 + i), data, {"lr": np.float32(recipe.lr)})
        unlearned = one_unlearn(jax.random.key(i))
        refs = [("retrained", retrained), ("unlearned", unlearned)]
        if i == 0:
            refs += [("retrained", runs.train_model(digits, "mlp", recipe, pool_lib.RETRAIN_SEED0,
                                                    train_index=split.train_retain, progress=False)[1]),
                     ("unlearned", unlearn(method, jax.random.key(0), net, original, problem).state)]
        for side, state in refs:
            ref = _logits(net, state, digits, rows)
            for s in pool_lib.SPLITS:
                np.testing.assert_allclose(out[side]["logits"][s][i], ref[s], atol=2e-4, rtol=1e-4,
                                           err_msg=f"{side} model {i}, {s} logits")
            pred = np.asarray(net.forward(state.params, state.batch_stats, digits.train_images, False)[0]).argmax(-1)
            ra = np.mean(pred[split.train_retain] == digits.train_labels[split.train_retain])
            assert abs(out[side]["accuracy"]["retain"][i] - ra) <= 1.5 / len(split.train_retain)
    assert list(out["retrained"]["seeds"]) == [1000 + i for i in range(8)]
    assert list(out["unlearned"]["seeds"]) == list(range(8))
    assert {b["strategy"] for b in out["unlearned"]["batches"]} == {"vmap"}
    assert np.all(out["unlearned"]["time_per_model_s"] > 0)
    # classes without a retain sample: the retrained models never predict the forget class
    assert out["retrained"]["accuracy"]["forget"].max() == 0.0


def test_resume_rebuilds_only_the_missing_batch(built, digits):
    work, out = built
    kept = work / "retrained" / "batch-0000.npz"
    stamp = os.stat(kept).st_mtime_ns
    (work / "retrained" / "batch-0001.npz").unlink()
    (work / "retrained" / ".batch-0001.npz.x.partial").write_bytes(b"half a file")  # a run stopped mid-write
    again = pool_lib.build_pool(work, "random_label", "full", strategy="vmap", ds=digits, log=None, **CONFIG)
    assert again["built"]["retrained"] == {"built": [1], "skipped": [0]}
    assert again["built"]["unlearned"] == {"built": [], "skipped": [0, 1]}
    assert os.stat(kept).st_mtime_ns == stamp  # a finished batch is never rewritten
    assert not list((work / "retrained").glob("*.partial"))
    for side in ("retrained", "unlearned"):
        for s in pool_lib.SPLITS:
            np.testing.assert_allclose(again[side]["logits"][s], out[side]["logits"][s], atol=1e-6)
    loaded = pool_lib.load_pool(work, "random_label", "full")
    np.testing.assert_array_equal(loaded["unlearned"]["logits"]["forget"], again["unlearned"]["logits"]["forget"])


def test_refusals(built, digits, tmp_path, capsys):
    work, _ = built
    with pytest.raises(RunError, match="other settings .*models"):
        pool_lib.build_pool(work, "random_label", "full", ds=digits, log=None, **{**CONFIG, "models": 6})
    with pytest.raises(RunError, match="random_label .full. with other settings .*hparams"):
        pool_lib.build_pool(work, "random_label", "full", sets=["lr=0.5"], ds=digits, log=None, **CONFIG)
    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError, match="no hyper-parameter or option 'nope'"):
        pool_lib.build_pool(fresh, "random_label", "full", sets=["nope=1"], ds=digits, log=None, **CONFIG)
    assert not fresh.exists()  # nothing written for a refused request
    argv = ["pool", "--dataset", "digits", "--method", "random_label", "--forget", "3", "--models", "6",
            "--batch", "4", "--epochs", str(EPOCHS), "--retain-sample", "100", "--workdir", str(work)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "other settings" in err[0]
    with pytest.raises(RunError, match="no pool of salun"):
        pool_lib.load_pool(work, "salun", "full")


def test_two_processes_build_the_parts_of_one_pool_and_equal_one_process(built, digits, tmp_path):
    """``--part 0/2`` and ``--part 1/2`` as two concurrent ``jaxunlearn pool`` processes (as on two
    hosts sharing a file system) into one workdir: together the pool one process built."""
    work, out = built
    shared = tmp_path / "shared"
    argv = [os.path.join(os.path.dirname(sys.executable), "jaxunlearn"), "pool", "--dataset", "digits",
            "--model", "mlp", "--method", "random_label", "--forget", "3", "--models", "8", "--batch", "4",
            "--epochs", str(EPOCHS), "--retain-sample", "100", "--strategy", "vmap", "--workdir", str(shared)]
    # without an original, a part other than 0 is refused (two parts must not both train it)
    r = subprocess.run([*argv, "--part", "1/2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "needs the pool's original model first" in r.stderr
    assert not (shared / "retrained").exists()
    procs = [subprocess.Popen([*argv, "--from", str(work / "original"), "--part", f"{i}/2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in results]
    assert sorted(f.name for f in (shared / "retrained").glob("batch-*.npz")) == ["batch-0000.npz", "batch-0001.npz"]
    both = pool_lib.load_pool(shared, "random_label", "full")
    for side in ("retrained", "unlearned"):
        assert list(both[side]["seeds"]) == list(out[side]["seeds"])
        for s in pool_lib.SPLITS:
            np.testing.assert_allclose(both[side]["logits"][s], out[side]["logits"][s], atol=1e-6)


def test_a_part_leaves_other_writers_files_alone(built, digits, tmp_path):
    """What two parts on one workdir may both write: the same ``examples.npz`` (kept, no error;
    different arrays are refused), and a partial batch file another part is writing (not
    deleted by a multi-part run; a single-part run clears it)."""
    ex = tmp_path / "examples.npz"
    arrays = {"rows.forget": np.arange(5), "labels.forget": np.ones(5, np.int32)}
    pool_lib._write_npz_atomic(ex, arrays)
    pool_lib._write_npz_atomic(ex, arrays, same_is_fine=True)  # the other part got there first: fine
    with pytest.raises(RunError, match="appeared, with other contents, while this run made it"):
        pool_lib._write_npz_atomic(ex, {**arrays, "rows.forget": np.arange(1, 6)}, same_is_fine=True)
    work, _ = built
    shared = tmp_path / "shared"
    other = shared / "retrained" / ".batch-0000.npz.abc.partial"  # part 0 writing its batch right now
    other.parent.mkdir(parents=True)
    other.write_bytes(b"being written")
    out = pool_lib.build_pool(shared, None, strategy="vmap", ds=digits, log=None, part=(1, 2),
                              **{**CONFIG, "original": str(work / "original")})
    assert out is None  # part 0's batch is still missing
    assert other.read_bytes() == b"being written" and (shared / "retrained" / "batch-0001.npz").is_file()
    pool_lib.build_pool(shared, None, strategy="vmap", ds=digits, log=None, **{**CONFIG, "original": str(work / "original")})
    assert not other.exists()  # a single-part run clears what a stopped run left
    with pytest.raises(RunError, match="cmf-mode pool needs the pool's CMF original first"):
        pool_lib.build_pool(shared, "random_label", "cmf", strategy="vmap", ds=digits, log=None, part=(1, 2),
                            **{**CONFIG, "original": str(work / "original")})
    assert not (shared / "original_cmf").exists()


def test_two_pools_starting_together_on_one_workdir(digits, tmp_path, monkeypatch):
    """Two processes that both found no ``pool.json`` (or ``examples.npz``) and then write it:
    replayed deterministically by letting another ``Pool`` finish its files just before this
    one creates that file. The same settings: both go on, the first file kept, no temporary
    files left; other settings: refused, the other's files unchanged."""
    config = pool_lib.PoolConfig(dataset="digits", model="mlp", forget="3", models=8, batch=4,
                                 retain_sample=100)
    real = runs.write_file_atomic

    def race(name, other_config):
        def write(path, *args, **kwargs):
            if path.name == name and kwargs.get("exclusive") and not path.exists():
                monkeypatch.setattr(runs, "write_file_atomic", real)  # the other process runs now
                pool_lib.Pool(path.parent, other_config, ds=digits, log=None)
                monkeypatch.setattr(runs, "write_file_atomic", write)
                assert path.exists()
            return real(path, *args, **kwargs)
        monkeypatch.setattr(runs, "write_file_atomic", write)

    for name in ("pool.json", "examples.npz"):
        work = tmp_path / name
        race(name, config)
        pool = pool_lib.Pool(work, config, ds=digits, log=None)
        monkeypatch.setattr(runs, "write_file_atomic", real)
        assert sorted(p.name for p in work.iterdir()) == ["examples.npz", "pool.json"]
        with np.load(work / "examples.npz") as z:
            np.testing.assert_array_equal(z["rows.retain"], pool.rows["retain"])
    other = tmp_path / "other"
    race("pool.json", pool_lib.PoolConfig(**{**vars(config), "retain_sample": 50}))
    with pytest.raises(RunError, match="holds a pool with other settings \\(examples, retain_sample, rows_digest\\)"):
        pool_lib.Pool(other, config, ds=digits, log=None)
    monkeypatch.setattr(runs, "write_file_atomic", real)
    assert runs.read_json(other / "pool.json")["retain_sample"] == 50
    with np.load(other / "examples.npz") as z:
        assert len(z["rows.retain"]) == 50


def test_devices_strategy_shards_the_models_and_matches(built, digits, tmp_path):
    """strategy="devices": each batch's models split over the 4 CPU devices (conftest), the
    same models as the vmapped pool's first batch (same seeds)."""
    assert jax.device_count() == 4
    _, out = built
    dev = pool_lib.build_pool(tmp_path / "dev", "random_label", "full", strategy="devices", ds=digits, log=None,
                              **{**CONFIG, "models": 4})
    assert {b["strategy"] for s in ("retrained", "unlearned") for b in dev[s]["batches"]} == {"devices"}
    for side in ("retrained", "unlearned"):
        for s in pool_lib.SPLITS:
            np.testing.assert_allclose(dev[side]["logits"][s], out[side]["logits"][s][:4], atol=2e-4, rtol=1e-4)


def test_ulira_inputs_choose_the_out_side():
    """OUT = the stand-in shadows (spec) or the retrained shadows; unscorable examples dropped."""
    rng = np.random.default_rng(0)
    k, e, t = 4, 6, 2
    in_mask = np.array([[1, 0, 1, 0, 1, 1]] * 2 + [[0, 1, 0, 1, 0, 1]] * 2, bool)  # example 5: no OUT shadow
    arrays = {"phi_shadow": rng.normal(size=(k, e)), "in_mask": in_mask, "out_mask": ~in_mask,
              "phi_target": rng.normal(size=(t, e)), "target_unlearned": np.array([True, False]),
              "target_mask": np.ones((t, e), bool), "phi_retrained_shadow": rng.normal(size=(3, e))}
    sh, im, om, pt, y, tm = pool_lib.ulira_inputs(arrays, "shadows")
    np.testing.assert_array_equal(sh, arrays["phi_shadow"])
    np.testing.assert_array_equal(tm, np.array([[1, 1, 1, 1, 1, 0]] * 2, bool))
    sh, im, om, pt, y, tm = pool_lib.ulira_inputs(arrays, "retrained")
    assert sh.shape == (7, e) and np.array_equal(sh[4:], arrays["phi_retrained_shadow"])
    np.testing.assert_array_equal(im, np.concatenate([in_mask, np.zeros((3, e), bool)]))
    np.testing.assert_array_equal(om, np.concatenate([np.zeros((k, e), bool), np.ones((3, e), bool)]))
    assert tm.all()  # every example has IN and retrained OUT shadows
    with pytest.raises(ValueError, match="out must be"):
        pool_lib.ulira_inputs(arrays, "targets")
