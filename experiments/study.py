"""The study workdir: models and evaluations computed once, cached on disk, resumable.

Layout under the study's workdir::

  models/original-s<seed>/             the original model of one seed (a ``jaxunlearn train`` run dir)
  models/retrain-f0-s<seed>/           retrained without class 0 (forget set tags name their classes)
  models/cmf_original-s<seed>/         the CMF model prepared from that seed's original
  models/<method>-<mode>-f<c>-s<seed>/ an unlearned model
  evals/<model name>-f<c>-s<seed>.json evaluate_model() of a model on forget set f<c>
  <experiment>/                        each experiment's JSON, markdown, LaTeX and PNG files
  results_long.csv                     every metric of every evaluated model, one row per
                                       (seed, forget set, method, mode, head, split)
  strategies.json                      how each batch of seeds ran (vmap / devices / loop) and why

Every model exists once per seed of the config: seed ``s`` trains the original with
``jax.random.key(s)``, retrains for forget set ``i`` with seed ``s + 1000 * (i + 1)``, and
unlearns with ``jax.random.key(1000 * s + i)`` from *its own* original, so the spread over
seeds covers training and unlearning randomness. The seeds of one model are built together:
batched (vmap, or sharded over devices) when :func:`jaxunlearn.strategy.choose` measures that
faster on the backend, else one after another. Tables report mean ± std over seeds with a 95 %
confidence interval (per forget set and pooled); the figures (learning curve, features,
layer-wise probes, relearning) use the first seed.

A model or evaluation that exists on disk is loaded, not recomputed, so an interrupted study
re-run with the same command continues where it stopped. With a ``stop`` flag (installed by
``jaxunlearn study`` / ``reproduce``), a SIGINT/SIGTERM during training checkpoints and stops
(the re-run resumes the training from that step); during an unlearning run it stops and keeps
nothing of that run (they are short; the re-run repeats it); anywhere else it stops at once.
Every file is written atomically, so nothing cached is ever half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import time

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import MethodRun, StudyConfig
from jaxunlearn import data as data_lib, evaluate, parallel, report, runs, seeds as seeds_lib, strategy as strategy_lib
from jaxunlearn.state import TrainState
from jaxunlearn.unlearn import get_method, make_problem, options, presets, sweep, unlearn


def unlearn_key(seed: int, i: int):
    """The PRNG key of an unlearning run of ``seed`` on forget set ``i``."""
    return jax.random.key(1000 * seed + i)


def retrain_seed(seed: int, i: int) -> int:
    return seed + 1000 * (i + 1)


class Study:
    """Lazily trains, unlearns and evaluates what the experiments ask for, for every seed."""

    def __init__(self, config: StudyConfig, workdir, data_dir=None, progress: bool = True,
                 stop: runs.StopFlag | None = None):
        self.config = config
        self.stop = stop
        self.workdir = pathlib.Path(workdir)
        self.data_dir = data_dir
        self.progress = progress
        # ds: the training split with 10 % held out, for the models that select their best epoch
        # on it (original, retrained, the CMF model); ds_all: the whole training split, which
        # every unlearning run and evaluation uses, as in the authors' code (docs/parity.md row 10)
        self.ds = data_lib.load_dataset(config.dataset, data_dir, max_train=config.max_train)
        self.ds_all = data_lib.whole_training_set(self.ds)
        self.seeds = tuple(int(x) for x in config.seeds)
        self._models: dict = {}
        self._evals: dict = {}
        self._features: dict = {}   # (model name, seed) -> Features of models read by several evaluations
        self.records: dict = {}     # (seed, forget set, method, mode, head, split) -> long record
        self.strategies: dict = {}  # model name -> how its seeds ran
        (self.workdir / "models").mkdir(parents=True, exist_ok=True)
        (self.workdir / "evals").mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "study.log"
        path = self.workdir / "strategies.json"
        if path.is_file():
            self.strategies = json.loads(path.read_text())

    def log(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    # ------------------------------------------------------------------ models

    def tag(self, i: int) -> str:
        """File-name tag of forget set ``i``: its classes (``f0``, ``f2_4_6``), so cached models
        and evaluations stay correct when the list of forget sets changes."""
        return "f" + "_".join(map(str, self.config.forget_sets[i]))

    def first_model_label(self) -> str:
        """What the one-model figures show: ``"first forget set f3, seed 0"`` (the tables' tag)."""
        return f"first forget set {self.tag(0)}, seed {self.seeds[0]}"

    def forget_spec(self, i: int) -> data_lib.ForgetSpec:
        return data_lib.parse_forget(list(self.config.forget_sets[i]), self.ds.num_classes)

    def _seed(self, seed):
        return self.seeds[0] if seed is None else int(seed)

    def _load_or(self, base: str, seed, build_batch):
        """(net, state, head, summary) of model ``base`` for ``seed``: from memory, disk, or built.

        ``build_batch(seeds) -> [(net, state, head, info, summary)]`` builds every seed of the
        config that is missing (so batched strategies see all of them at once).
        """
        seed = self._seed(seed)
        name = f"{base}-s{seed}"
        if name in self._models:
            return self._models[name]
        missing = []
        for s in self.seeds if seed in self.seeds else (seed,):
            n = f"{base}-s{s}"
            d = self.workdir / "models" / n
            if n in self._models:
                continue
            if (d / "summary.json").is_file():
                r = runs.load_run(d, dataset=self.ds)
                self._models[n] = (r.net, r.state, r.info.get("head", "linear"), r.summary)
            else:
                missing.append(s)
        if missing:
            t = time.perf_counter()
            built = build_batch(missing)
            elapsed = time.perf_counter() - t
            for s, (net, state, head, info, summary) in zip(missing, built):
                n = f"{base}-s{s}"
                d = self.workdir / "models" / n
                runs.prepare_workdir(d, overwrite=True, run_info={**info, "seed": s})
                runs.save_model(d, self.config.model, self.ds.name, state)
                summary = {**summary, "build_time_s": elapsed / len(missing), "seed": s}
                runs.write_json_atomic(d / "summary.json", summary)
                self._models[n] = (net, state, head, summary)
            how = self.strategies.get(base, {}).get("strategy", "loop")
            self.log(f"built {base} for seeds {missing} in {elapsed:.0f} s ({how})")
        return self._models[name]

    def _record_strategy(self, base: str, plan: dict) -> None:
        self.strategies[base] = {k: plan.get(k) for k in ("strategy", "reason", "backend", "devices", "measured")}
        runs.write_json_atomic(self.workdir / "strategies.json", self.strategies)

    def _polled(self):
        """Context of a loop that polls ``self.stop``; raises Interrupted after it if stopped."""
        if self.stop is None:
            return contextlib.nullcontext()
        return self.stop.polled()

    def _check_stop(self, what: str) -> None:
        if self.stop is not None and self.stop():
            raise runs.Interrupted(f"{what} was stopped by a signal; finished models and evaluations are "
                                   f"cached in {self.workdir}: run the same command again to resume")

    def _train(self, base: str, seeds: list, seed_of, train_index=None, epochs=None):
        """Trains one model per seed (batched if measured faster); checkpointed when looped."""
        c = self.config
        recipe = runs.recipe_for(c.dataset, c.model, epochs=epochs or c.train_epochs)
        net = runs.make_net(self.ds, c.model)
        params, _ = net.init_shapes(self.ds.image_shape)
        plan = strategy_lib.choose(net, params, self.ds.image_shape, recipe.batch_size, len(seeds),
                                   c.strategy)
        self._record_strategy(base, plan)
        info = self._info("train", recipe=dataclasses.asdict(recipe))
        if plan["strategy"] != "loop":
            _, states, tinfo = seeds_lib.train_seeds(self.ds, c.model, recipe, [seed_of(s) for s in seeds],
                                                     train_index=train_index, strategy=plan["strategy"])
            self._check_stop(f"training {base}")
            return [(net, st, "linear", info, {"test_accuracy": runs.accuracy_of(net, st, self.ds.test_images,
                                                                                 self.ds.test_labels),
                                               **tinfo["runs"][j]})
                    for j, st in enumerate(states)]
        out = []
        for s in seeds:
            with self._polled():
                net, state, tinfo = runs.train_model(self.ds, c.model, recipe, seed=seed_of(s), train_index=train_index,
                                                     workdir=self.workdir / "models" / f"{base}-s{s}-ckpt",
                                                     progress=f"{base} seed {s}" if self.progress else False,
                                                     stop=self.stop)
            acc = runs.accuracy_of(net, state, self.ds.test_images, self.ds.test_labels)
            out.append((net, state, "linear", info, {"test_accuracy": acc, **tinfo}))
        return out

    def original(self, seed=None):
        return self._load_or("original", seed, lambda seeds: self._train("original", seeds, lambda s: s))

    def retrained(self, i: int, seed=None):
        c = self.config
        split = data_lib.forget_split(self.ds, self.forget_spec(i))

        def build(seeds):
            built = self._train(f"retrain-{self.tag(i)}", seeds, lambda s: retrain_seed(s, i),
                                train_index=split.train_retain, epochs=c.retrain_epochs or c.train_epochs)
            return [(n, st, h, self._info("unlearn", method="retrain", forget_set=i), sm) for n, st, h, _, sm in built]

        return self._load_or(f"retrain-{self.tag(i)}", seed, build)

    def cmf_original(self, seed=None):
        """The CMF model: the original encoder fine-tuned through a CMF head (forget set 0's
        problem is only a carrier: the loss uses every training sample with its true label)."""
        return self._load_or("cmf_original", seed, lambda seeds: self._unlearn_batch(
            self.config.cmf_finetune, 0, seeds, "cmf_original", self.original))

    def unlearned(self, run: MethodRun, i: int, seed=None):
        """The model after ``run`` on forget set ``i`` (CMF runs start from the CMF model)."""
        if run.method == "retrain":
            return self.retrained(i, seed)
        source = self.cmf_original if run.mode == "cmf" else self.original
        base = f"{run.key}-{self.tag(i)}"
        return self._load_or(base, seed, lambda seeds: self._unlearn_batch(run, i, seeds, base, source))

    def _unlearn_batch(self, run: MethodRun, i: int, seeds: list, base: str, source):
        """Unlearns ``run`` on forget set ``i`` for ``seeds``, each from its own source model."""
        method, hparams, settings = self._method_setup(run)
        sources = [source(s) for s in seeds]
        net = sources[0][0]
        plan = strategy_lib.choose(net, sources[0][1].params, self.ds.image_shape, settings.batch_size,
                                   len(seeds), self.config.strategy, traceable=method.traceable)
        self._record_strategy(base, plan)
        problem = make_problem(self._unlearn_ds(run), self.forget_spec(i))
        if plan["strategy"] == "loop":
            return [self._unlearn(run, i, src, seed=s) for s, src in zip(seeds, sources)]
        t0 = time.perf_counter()
        keys = jnp.stack([unlearn_key(s, i) for s in seeds])
        states = strategy_lib.tree_stack([TrainState(x[1].params, x[1].batch_stats, None, x[1].step) for x in sources])
        mesh = parallel.make_mesh() if plan["strategy"] == "devices" else None
        stacked, _ = sweep.batched_unlearn(method, net, settings, keys, states, problem, hparams,
                                           state_axis=0, problem_axis=None, mesh=mesh)
        stacked = jax.block_until_ready(stacked)
        per = (time.perf_counter() - t0) / len(seeds)
        self._check_stop(f"unlearning {run.title} on {self.tag(i)}")
        info = self._run_info(run, i, method, hparams, settings)
        return [(net, strategy_lib.tree_index(stacked, j), info["head"], info,
                 {"runtime_s": per, "history": [], "strategy": plan["strategy"]}) for j in range(len(seeds))]

    def _unlearn_ds(self, run: MethodRun) -> data_lib.Dataset:
        """The data of an unlearning run: the whole training split, except for the CMF
        fine-tuning that makes the CMF model (the authors hold 10 % out there too)."""
        return self.ds if run.method == "cmf_finetune" else self.ds_all

    def _method_setup(self, run: MethodRun):
        """``(method, hparams, settings)`` of ``run``: the dataset's preset, then the run's overrides."""
        method = get_method(run.method)
        p_hp, p_st = presets.lookup(self.ds.name, run.method, run.mode)
        settings = method.settings.replace(mode=run.mode, **{**p_st, **dict(run.settings)})
        hparams = {**p_hp, **dict(run.hparams)}
        options.validate(method, hparams, settings)
        return method, hparams, settings

    def _run_info(self, run, i, method, hparams, settings):
        head = "cmf" if run.mode == "cmf" else "linear"
        return self._info("unlearn", method=run.method, mode=run.mode, head=head, forget_set=i,
                          hparams={**method.hparams, **hparams}, settings=dataclasses.asdict(settings),
                          preset=presets.preset_name(self.ds.name))

    def _unlearn(self, run: MethodRun, i: int, source, on_chunk=None, chunk=None, seed=None):
        """One host-driver unlearning run of ``seed`` (progress, stop flag, learning-curve hooks)."""
        seed = self._seed(seed)
        method, hparams, settings = self._method_setup(run)
        net, state, _, _ = source
        problem = make_problem(self._unlearn_ds(run), self.forget_spec(i))
        with self._polled():
            result = unlearn(method, unlearn_key(seed, i), net, state, problem,
                             hparams, settings, on_chunk=on_chunk, chunk=chunk, should_stop=self.stop,
                             progress=f"{run.title} {self.tag(i)} seed {seed}" if self.progress else False)
        self._check_stop(f"unlearning {run.title} on {self.tag(i)}")
        info = self._run_info(run, i, method, hparams, settings)
        return net, result.state, info["head"], info, {"runtime_s": result.runtime_s, "history": result.history}

    def _info(self, kind, **kw):
        return {"kind": kind, "dataset": self.ds.name, "model": self.config.model, "max_train": self.config.max_train,
                "data_dir": self.data_dir, "study": self.config.name, **kw}

    # ------------------------------------------------------------------ evaluations

    def evaluation(self, name: str, model, i: int | None, seed=None, **kw) -> dict:
        """``evaluate_model`` of ``model`` on forget set ``i`` (cached as ``evals/NAME-fI-sS.json``)."""
        seed = self._seed(seed)
        key = f"{name}-{self.tag(i)}-s{seed}"
        path = self.workdir / "evals" / f"{key}.json"
        if key in self._evals:
            return self._evals[key]
        if path.is_file():
            out = json.loads(path.read_text())
        else:
            net, state, head, _ = model
            fc = list(self.config.forget_sets[i])
            kw = {"relearn": (), "probe": self.config.probe, "privacy_attacks": True,
                  "mia_max_samples": self.config.mia_max_samples, **kw}
            t = time.perf_counter()
            own = f"retrain-{self.tag(i)}" if name == "retrain" else name
            feats = self.features(own, seed, model, shared=name in ("original", "cmf_original", "retrain"))
            refs = {"original": self.features("original", seed, self.original(seed), shared=True),
                    "retrained": self.features(f"retrain-{self.tag(i)}", seed, self.retrained(i, seed), shared=True)}
            out = evaluate.evaluate_model(net, state, self.ds_all, fc, head=head, features=feats, **refs, **kw)
            runs.write_json_atomic(path, out)
            self.log(f"evaluated {key} in {time.perf_counter() - t:.0f} s: full {_pct(out['full'])}, "
                     f"LP {_pct(out['lp'])}, NCC {_pct(out['ncc'])} (retain / forget %)")
        self._evals[key] = out
        return out

    def features(self, name: str, seed: int, model, shared: bool = False) -> evaluate.Features:
        """:func:`jaxunlearn.evaluate.extract` of a model, once: the features of models that
        several evaluations read (an original, evaluated on every forget set and the reference
        of every CKA; a retrained model, the reference of its forget set) stay in memory. A
        model that kept its original's encoder bit for bit (classifier-only, classifier_edit)
        gets the original's features with its own head's logits, without a forward pass."""
        key = (name, seed)
        if key in self._features:
            return self._features[key]
        net, state, head, _ = model
        f = None
        if head == "linear" and name != "original":  # a new head on the original's encoder
            # (classifier-only, classifier_edit): the original's features with this head's logits
            orig = self.original(seed)
            if evaluate.shares_encoder(net, state, orig[1]):
                f = evaluate.with_linear_head(self.features("original", seed, orig, shared=True), net, state.params)
        if f is None:
            f = evaluate.extract(net, state, self.ds_all, head)
        if shared:
            self._features[key] = f
        return f

    def _models_of(self, run: MethodRun):
        """``(eval name, model getter(i, seed), method, mode)`` of a table entry."""
        if run.method == "original":
            return "original", lambda i, s: self.original(s), "original", "full"
        if run.method == "cmf_original":
            return "cmf_original", lambda i, s: self.cmf_original(s), "cmf_original", "cmf"
        if run.method == "retrain":
            return "retrain", lambda i, s: self.retrained(i, s), "retrain", "full"
        return run.key, lambda i, s: self.unlearned(run, i, s), run.name, run.mode

    def method_evals(self, run: MethodRun) -> list[dict]:
        """Evaluations of ``run`` over every (seed, forget set), seed-major."""
        name, get, _, _ = self._models_of(run)
        return [self.evaluation(name, get(i, s), i, s) for s in self.seeds
                for i in range(len(self.config.forget_sets))]

    def method_records(self, run: MethodRun) -> list[dict]:
        """Long-format records (:func:`jaxunlearn.report.long_records`) of ``run`` for every
        (seed, forget set), with the unlearning run time on the ``(model, all)`` record."""
        name, get, method, mode = self._models_of(run)
        out = []
        for s in self.seeds:
            for i in range(len(self.config.forget_sets)):
                model = get(i, s)
                recs = report.long_records(self.evaluation(name, model, i, s), s, self.config.forget_sets[i],
                                           method, mode)
                rt = model[3].get("runtime_s")
                for r in recs:
                    if r["head"] == "model" and r["split"] == "all" and rt is not None:
                        r["runtime_s"] = rt
                    self.records[(r["seed"], r["forget_set"], r["method"], r["mode"], r["head"], r["split"])] = r
                out += recs
        return out

    def rows(self, entries: Sequence[MethodRun], columns=report.COLUMNS, *, gap: bool = False) -> list[dict]:
        """Table rows over seeds (mean ± std, 95 % CI; pooled and per forget set) of ``entries``.

        ``gap``: add SalUn's average gap to Retrain (``("model", "all", "avg_gap")``, on the
        same seed and forget set) to the records first.
        """
        recs = [r for e in entries for r in self.method_records(e)]
        if gap:
            has_ref = any((r["method"], r["mode"]) == ("retrain", "full") for r in recs)
            recs = report.with_gap(recs if has_ref else recs + self.method_records(MethodRun("retrain")))
        specs = []
        for e in entries:
            _, _, method, mode = self._models_of(e)
            specs.append((method, mode, e.title))
        return report.rows_over_seeds(recs, specs, columns)

    def write_records(self) -> pathlib.Path:
        path = self.workdir / "results_long.csv"
        report.write_long_csv(path, list(self.records.values()))
        return path

    def runtime(self, run: MethodRun) -> float | None:
        vals = [self.unlearned(run, i, s)[3].get("runtime_s") for s in self.seeds
                for i in range(len(self.config.forget_sets))]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    def out_dir(self, experiment: str) -> pathlib.Path:
        d = self.workdir / experiment
        d.mkdir(parents=True, exist_ok=True)
        return d


def _pct(d):
    f = "–" if d.get("forget") is None else f"{100 * d['forget']:.1f}"
    return f"{100 * d['retain']:.1f}/{f}"
