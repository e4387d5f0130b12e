"""The study workdir: models and evaluations computed once, cached on disk, resumable.

Layout under the study's workdir::

  models/original/             the trained original model (a ``jaxunlearn train`` run dir)
  models/retrain-f0/           retrained without class 0 (forget set tags name their classes)
  models/cmf_original/         the CMF model prepared from the original
  models/<method>-<mode>-f<c>/ an unlearned model
  evals/<model name>-f<c>.json evaluate_model() of a model on forget set f<c>
  <experiment>/                each experiment's JSON, markdown, LaTeX and PNG files

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

import jax
import numpy as np

from experiments.configs import MethodRun, StudyConfig
from jaxunlearn import data as data_lib, evaluate, runs
from jaxunlearn.unlearn import get_method, make_problem, unlearn


class Study:
    """Lazily trains, unlearns and evaluates what the experiments ask for."""

    def __init__(self, config: StudyConfig, workdir, data_dir=None, progress: bool = True,
                 stop: runs.StopFlag | None = None):
        self.config = config
        self.stop = stop
        self.workdir = pathlib.Path(workdir)
        self.data_dir = data_dir
        self.progress = progress
        self.ds = data_lib.load_dataset(config.dataset, data_dir, max_train=config.max_train)
        self._models: dict = {}
        self._evals: dict = {}
        (self.workdir / "models").mkdir(parents=True, exist_ok=True)
        (self.workdir / "evals").mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "study.log"

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

    def forget_spec(self, i: int) -> data_lib.ForgetSpec:
        return data_lib.parse_forget(list(self.config.forget_sets[i]), self.ds.num_classes)

    def _load_or(self, name: str, build):
        """(net, state, head, info) of model ``name``: from memory, from disk, or built."""
        if name in self._models:
            return self._models[name]
        d = self.workdir / "models" / name
        if (d / "summary.json").is_file():
            r = runs.load_run(d, dataset=self.ds)
            out = (r.net, r.state, r.info.get("head", "linear"), r.summary)
        else:
            t = time.perf_counter()
            net, state, head, info, summary = build()
            runs.prepare_workdir(d, overwrite=True, run_info=info)
            runs.save_model(d, self.config.model, self.ds.name, state)
            summary = {**summary, "build_time_s": time.perf_counter() - t}
            runs.write_json_atomic(d / "summary.json", summary)
            self.log(f"built {name} in {summary['build_time_s']:.0f} s")
            out = (net, state, head, summary)
        self._models[name] = out
        return out

    def _polled(self):
        """Context of a loop that polls ``self.stop``; raises Interrupted after it if stopped."""
        if self.stop is None:
            return contextlib.nullcontext()
        return self.stop.polled()

    def _check_stop(self, what: str) -> None:
        if self.stop is not None and self.stop():
            raise runs.Interrupted(f"{what} was stopped by a signal; finished models and evaluations are "
                                   f"cached in {self.workdir}: run the same command again to resume")

    def original(self):
        c = self.config

        def build():
            recipe = runs.recipe_for(c.dataset, c.model, epochs=c.train_epochs)
            with self._polled():
                net, state, info = runs.train_model(self.ds, c.model, recipe, seed=c.seeds[0],
                                                    workdir=self.workdir / "models" / "original-ckpt",
                                                    progress="train original" if self.progress else False,
                                                    stop=self.stop)
            acc = runs.accuracy_of(net, state, self.ds.test_images, self.ds.test_labels)
            return net, state, "linear", self._info("train", recipe=dataclasses.asdict(recipe)), \
                {"test_accuracy": acc, **info}

        return self._load_or("original", build)

    def retrained(self, i: int):
        c = self.config

        def build():
            split = data_lib.forget_split(self.ds, self.forget_spec(i))
            recipe = runs.recipe_for(c.dataset, c.model, epochs=c.retrain_epochs or c.train_epochs)
            with self._polled():
                net, state, info = runs.train_model(self.ds, c.model, recipe, seed=c.seeds[0] + 1000 + i,
                                                    workdir=self.workdir / "models" / f"retrain-{self.tag(i)}-ckpt",
                                                    train_index=split.train_retain, stop=self.stop,
                                                    progress=f"retrain {self.tag(i)}" if self.progress else False)
            return net, state, "linear", self._info("unlearn", method="retrain", forget_set=i), info

        return self._load_or(f"retrain-{self.tag(i)}", build)

    def cmf_original(self):
        """The CMF model: the original encoder fine-tuned through a CMF head (forget set 0's
        problem is only a carrier: the loss uses every training sample with its true label)."""
        return self._load_or("cmf_original", lambda: self._unlearn(self.config.cmf_finetune, 0, self.original()))

    def unlearned(self, run: MethodRun, i: int):
        """The model after ``run`` on forget set ``i`` (CMF runs start from the CMF model)."""
        if run.method == "retrain":
            return self.retrained(i)
        source = self.cmf_original() if run.mode == "cmf" else self.original()
        return self._load_or(f"{run.key}-{self.tag(i)}", lambda: self._unlearn(run, i, source))

    def _unlearn(self, run: MethodRun, i: int, source, on_chunk=None, chunk=None):
        method = get_method(run.method)
        net, state, _, _ = source
        settings = method.settings.replace(mode=run.mode, **dict(run.settings))
        problem = make_problem(self.ds, self.forget_spec(i))
        with self._polled():
            result = unlearn(method, jax.random.key(self.config.seeds[0] + i), net, state, problem,
                             dict(run.hparams), settings, on_chunk=on_chunk, chunk=chunk, should_stop=self.stop,
                             progress=f"{run.title} {self.tag(i)}" if self.progress else False)
        self._check_stop(f"unlearning {run.title} on {self.tag(i)}")
        head = "cmf" if run.mode == "cmf" else "linear"
        info = self._info("unlearn", method=run.method, mode=run.mode, head=head, forget_set=i,
                          hparams={**method.hparams, **dict(run.hparams)}, settings=dataclasses.asdict(settings))
        return net, result.state, head, info, {"runtime_s": result.runtime_s, "history": result.history}

    def _info(self, kind, **kw):
        return {"kind": kind, "dataset": self.ds.name, "model": self.config.model, "max_train": self.config.max_train,
                "data_dir": self.data_dir, "study": self.config.name, **kw}

    # ------------------------------------------------------------------ evaluations

    def evaluation(self, name: str, model, i: int | None, **kw) -> dict:
        """``evaluate_model`` of ``model`` on forget set ``i`` (cached as ``evals/NAME-fI.json``)."""
        key = f"{name}-{self.tag(i)}"
        path = self.workdir / "evals" / f"{key}.json"
        if key in self._evals:
            return self._evals[key]
        if path.is_file():
            out = json.loads(path.read_text())
        else:
            net, state, head, _ = model
            fc = list(self.config.forget_sets[i])
            kw = {"relearn": (), "probe": self.config.probe, "privacy_attacks": True, **kw}
            t = time.perf_counter()
            out = evaluate.evaluate_model(net, state, self.ds, fc, head=head, **kw)
            runs.write_json_atomic(path, out)
            self.log(f"evaluated {key} in {time.perf_counter() - t:.0f} s: full {_pct(out['full'])}, "
                     f"LP {_pct(out['lp'])}, NCC {_pct(out['ncc'])} (retain / forget %)")
        self._evals[key] = out
        return out

    def method_evals(self, run: MethodRun) -> list[dict]:
        return [self.evaluation(run.key if run.method != "retrain" else "retrain", self.unlearned(run, i), i)
                for i in range(len(self.config.forget_sets))]

    def runtime(self, run: MethodRun) -> float | None:
        vals = [self.unlearned(run, i)[3].get("runtime_s") for i in range(len(self.config.forget_sets))]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    def out_dir(self, experiment: str) -> pathlib.Path:
        d = self.workdir / experiment
        d.mkdir(parents=True, exist_ok=True)
        return d


def _pct(d):
    f = "–" if d.get("forget") is None else f"{100 * d['forget']:.1f}"
    return f"{100 * d['retain']:.1f}/{f}"
