"""Sub-commands beyond ``train``: unlearn, evaluate, analyze, reproduce, study.

Each ``cmd_*`` function takes parsed arguments and returns an exit status; user errors are
raised as ``RunError`` / ``ValueError`` and printed by :func:`jaxunlearn.cli.main`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import time


def _add_distributed_flags(p) -> None:
    from jaxunlearn.cli import add_distributed_flags
    add_distributed_flags(p)


def register(sub, add_common) -> None:
    """Adds every sub-command parser to ``sub``; each sets ``handler`` via ``set_defaults``."""
    p = sub.add_parser("unlearn", help="unlearn a forget set from a trained model")
    p.add_argument("--from", dest="source", required=True, help="workdir of a finished train (or unlearn) run")
    p.add_argument("--method", required=True, help=f"one of {', '.join(_method_names())} (see `jaxunlearn methods`)")
    p.add_argument("--forget", required=True, help="a class (3), a list (0,5,9) or a fraction of samples (0.1)")
    p.add_argument("--epochs", type=int, default=None, help=f"unlearning epochs ({_PRESET_DEFAULT})")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate ({_PRESET_DEFAULT})")
    p.add_argument("--batch-size", type=int, default=None, help=f"batch size ({_PRESET_DEFAULT})")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of the run (and of a random forget set)")
    p.add_argument("--seeds", default=None, metavar="SEEDS",
                   help="one run per seed (e.g. 0-4 or 0,3,7) into WORKDIR/seed-<s>/; from a multi-seed train "
                        "workdir seed s unlearns seed s's model (default: --seed only; the forget set stays the "
                        "one drawn with --seed)")
    p.add_argument("--strategy", choices=["auto", "vmap", "devices", "loop"], default="auto",
                   help="how --seeds run: measured on the backend (auto), batched (vmap, devices) or one by one")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--classifier-only", action="store_true",
                      help="zero and train only the last layer (default: the full model)")
    mode.add_argument("--cmf", action="store_true",
                      help="class-mean-feature head (Algorithm 2; default: only if the source run is a CMF model)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a typed hyper-parameter or option of the method, e.g. --set forget_weight=0.5 or "
                        "--set until_wrong=false; repeatable; `jaxunlearn methods` lists names, types and defaults")
    add_common(p)
    p.set_defaults(handler=cmd_unlearn)

    p = sub.add_parser("evaluate", help="every metric of a trained or unlearned model")
    p.add_argument("workdir", help="workdir of a finished train or unlearn run")
    p.add_argument("--original", default=None, help="workdir of the original model (CKA; default: none)")
    p.add_argument("--retrained", default=None, help="workdir of the retrained model (CKA; default: none)")
    p.add_argument("--json", required=True, help="output JSON file")
    p.add_argument("--forget", default=None,
                   help="forget set: a class (3), a list (0,5,9) or a fraction of training samples (0.1, drawn "
                        "with --forget-seed) (default: the one stored in the run)")
    p.add_argument("--forget-seed", type=int, default=0, help="seed of a --forget fraction (default: 0)")
    p.add_argument("--probe", choices=_probe_names(), default="fast", help=_PROBE_HELP)
    p.add_argument("--layerwise", action="store_true", help="also probe every stage of the encoder")
    p.add_argument("--seeds", default=None, metavar="SEEDS",
                   help="evaluate these seeds of a multi-seed workdir (e.g. 0-4, or all) and report mean, std and "
                        "95 %% CI over them, plus a long-format CSV beside --json (default: a single run)")
    p.add_argument("--no-relearn", action="store_true", help="skip the relearning attack")
    p.add_argument("--relearn-samples", default="10,100", metavar="K[,K...]",
                   help="forgotten samples in each relearning attack (default: 10,100)")
    p.add_argument("--data-dir", default=None, help="where the dataset lives (default: the run's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--devices", type=int, default=None,
                   help="extract features with batches split over this many devices (default: 1; every "
                        "device of a multi-process run)")
    _add_distributed_flags(p)
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("analyze", help="metrics of features from any framework (.npz)")
    p.add_argument("features", help=".npz with train_features, train_labels, test_features, test_labels, "
                                    "and forget_classes or forget_indices (optional: weights, bias)")
    p.add_argument("--json", required=True, help="output JSON file")
    p.add_argument("--probe", choices=_probe_names(), default="fast", help=_PROBE_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(handler=cmd_analyze)

    from experiments import EXPERIMENTS
    from experiments.configs import CONFIGS
    p = sub.add_parser("reproduce", help="one experiment of the paper (table or figure)")
    p.add_argument("name", help="one of " + ", ".join(EXPERIMENTS + ("forgetting_quality",)))
    p.add_argument("--config", default="fashion_mnist", choices=CONFIGS,
                   help="study config: " + ", ".join(CONFIGS) + " (default: fashion_mnist)")
    p.add_argument("--workdir", default=None, help="output directory (default: runs/study-<config>)")
    p.add_argument("--data-dir", default=None, help="where the dataset lives (default: the dataset's usual place)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_study_axes(p)
    p.set_defaults(handler=cmd_reproduce)

    p = sub.add_parser("study", help="the main study: every experiment on the default config")
    p.add_argument("--quick", action="store_true", help="digits + MLP, a few minutes (the config digits)")
    p.add_argument("--config", default=None,
                   choices=CONFIGS, help=", ".join(CONFIGS) + " (default: fashion_mnist; digits with --quick)")
    p.add_argument("--workdir", default=None, help="output directory (default: runs/study-<config>)")
    p.add_argument("--data-dir", default=None, help="where the dataset lives (default: the dataset's usual place)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_study_axes(p)
    p.add_argument("--full", action="store_true",
                   help="every class of the dataset as a forget set, 3 seeds (wall time recorded, not bounded)")
    _add_distributed_flags(p)
    p.set_defaults(handler=cmd_study)

    from jaxunlearn.data import DATASETS
    p = sub.add_parser("methods", help="list the unlearning methods: hyper-parameters, options, types, defaults")
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="show the defaults of this dataset's preset (default: the methods' own defaults)")
    p.set_defaults(handler=cmd_methods)

    p = sub.add_parser("pool", help="N retrained + N unlearned models of one forget set, stored as logits "
                                    "(forgetting quality, U-LiRA)")
    p.add_argument("--dataset", default="digits", choices=DATASETS, help="the dataset (default: digits)")
    p.add_argument("--model", default=None, help=f"one of {', '.join(_model_names())} (default: per dataset)")
    p.add_argument("--method", default=None, help=f"one of {', '.join(_method_names())} (default: only the "
                                                  "retrained side; see `jaxunlearn methods`)")
    p.add_argument("--mode", choices=["full", "classifier_only", "cmf"], default="full", help="head mode of the method")
    p.add_argument("--forget", default="3", help="a class (3), a list (0,5,9) or a fraction of samples (0.1)")
    p.add_argument("--models", type=int, default=64, help="models per side (N)")
    p.add_argument("--batch", type=int, default=16, help="models per batched program and per stored file")
    p.add_argument("--floor", action="store_true", help="train 2N retrained models (the retrain-vs-retrain floor)")
    p.add_argument("--from", dest="source", default=None,
                   help="a finished `jaxunlearn train` run to use as the original (default: train one, seed 0)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of the original and retrained models "
                                                            "(default: the recipe's)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a typed hyper-parameter or option of the method, repeatable (default: the dataset's "
                        "preset; `jaxunlearn methods --dataset D` lists names, types and defaults)")
    p.add_argument("--strategy", choices=["auto", "vmap", "devices", "loop"], default="auto",
                   help="how each batch of models runs: measured on the backend (auto), batched, or one by one")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="stored logits")
    p.add_argument("--retain-sample", type=int, default=500, help="retain rows whose logits are stored")
    p.add_argument("--test-sample", type=int, default=None, help="test rows stored (default: all)")
    p.add_argument("--max-train", type=int, default=None, help="at most this many training samples (stratified; default: all)")
    p.add_argument("--part", default="0/1", metavar="I/N",
                   help="build only batches b with b %% N == I (N processes or hosts on one shared workdir; a part other than 0 needs the original first, and a cmf mode its CMF original: let part 0 save them, or give --from)")
    p.add_argument("--workdir", required=True, help="the pool directory (resumable; several methods can share it)")
    p.add_argument("--data-dir", default=None, help="where the dataset lives (default: its usual place)")
    p.set_defaults(handler=cmd_pool)


_PRESET_DEFAULT = "default: the method's, with the source run's dataset preset (see `jaxunlearn methods --dataset D`)"


_PROBE_HELP = ("linear probe: fast (L2 logistic regression on standardised features, L-BFGS), sgd (SGD, 20 "
               "epochs) or the authors' SGD protocol of a dataset, paper-cifar10 (20 epochs), paper-cifar100 / "
               "paper-tiny_imagenet (150)")


def _probe_names():
    from jaxunlearn.heads import PROBE_PROTOCOLS
    return ["fast", *PROBE_PROTOCOLS]


def _model_names():
    from jaxunlearn.models import MODELS
    return list(MODELS)


def _method_names():
    from jaxunlearn.unlearn import METHODS
    return list(METHODS)


def _parse_sets(method, items):
    """``(hparams, options)`` of ``--set NAME=VALUE`` items, typed by ``method``'s declaration."""
    from jaxunlearn.unlearn import options
    return options.parse_sets(method, items)


def cmd_unlearn(args) -> int:
    import jax

    from jaxunlearn import data as data_lib, runs
    from jaxunlearn.unlearn import get_method, make_problem, options, presets, unlearn

    method = get_method(args.method)
    hp_over, opt_over = _parse_sets(method, args.set)  # typed; an unknown name is refused here
    for name, value in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr)):
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "lr" and name not in method.hparams:
            raise ValueError(f"{method.name} does not use {flag}; it has {options.names_text(method)}")
        options.refuse_unused_setting(method, name, flag)
        (hp_over if name == "lr" else opt_over).setdefault(name, value)  # --set NAME=... wins
    from jaxunlearn import multiseed, seeds as seeds_lib
    seed_list = None if args.seeds is None else seeds_lib.parse_seeds(args.seeds)
    src = runs.load_run(multiseed.source_dir(args.source, seed_list), args.data_dir)
    ds = data_lib.whole_training_set(src.dataset)  # unlearning uses every training row (parity row 10)
    spec = data_lib.parse_forget(args.forget, ds.num_classes, seed=args.seed)
    data_lib.forget_split(ds, spec)  # refuses an empty forget set before anything is written
    mode = "classifier_only" if args.classifier_only else "cmf" if (args.cmf or src.info.get("head") == "cmf") else "full"
    preset_hp, preset_settings = presets.lookup(ds.name, method.name, mode)  # explicit values win
    hp_over = {**preset_hp, **hp_over}
    settings = method.settings.replace(mode=mode, **{**preset_settings, **opt_over})
    if mode != "full" and not method.classifier_loss:  # unlearn() would refuse it after the workdir exists
        raise ValueError(f"{method.name} has no classifier loss, so mode {mode!r} does not apply")
    try:  # types, ranges, names and the method's phase plan, before anything is written
        options.validate(method, hp_over, settings)
    except ValueError as e:
        raise ValueError(f"{e} (see `jaxunlearn methods --dataset {ds.name}`)") from None
    mesh = _unlearn_mesh(args, method, settings)  # --devices: batches split over "data", the rest replicated
    problem = make_problem(ds, spec)
    if settings.batch_size > int(problem.retain.shape[0]):
        raise ValueError(f"batch size {settings.batch_size} is larger than the retain set ({int(problem.retain.shape[0])})")
    info = {"kind": "unlearn", "dataset": ds.name, "model": src.info["model"], "from": str(args.source),
            "method": method.name, "forget": args.forget, "forget_classes": list(spec.classes),
            "forget_spec": _forget_record(ds, spec),
            "mode": mode, "head": "cmf" if mode == "cmf" else "linear", "seed": args.seed,
            "hparams": {**method.hparams, **hp_over}, "settings": dataclasses.asdict(settings),
            "preset": presets.preset_name(ds.name),
            "preset_overrides": {"hparams": preset_hp, "settings": preset_settings},
            "data_dir": args.data_dir or src.info.get("data_dir"), "max_train": src.info.get("max_train"),
            "command": " ".join(sys.argv), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    if seed_list is not None:
        return multiseed.unlearn(args, method, ds, spec, problem, hp_over, settings, mode, info, mesh)
    if runs.prepare_workdir(args.workdir, args.overwrite, info):  # an earlier try stopped: start over
        (pathlib.Path(args.workdir) / "metrics.jsonl").unlink(missing_ok=True)
    state, sharding = src.state, None
    if mesh is not None:
        from jaxunlearn import parallel
        problem, state = parallel.replicate((problem, state), mesh)
        sharding = parallel.batch_sharding(mesh)
    stop = runs.StopFlag()
    with stop.installed():
        result = unlearn(method, jax.random.key(args.seed), src.net, state, problem, hp_over, settings,
                         progress=False if args.no_progress else method.name,
                         log=lambda r: runs.append_jsonl(pathlib.Path(args.workdir) / "metrics.jsonl", r),
                         should_stop=stop, batch_sharding=sharding)
    if stop():
        raise runs.Interrupted("interrupted; nothing was saved (unlearning runs are short: re-run the command)")
    runs.save_model(args.workdir, src.info["model"], ds.name, result.state)
    from jaxunlearn import evaluate
    f = evaluate.extract(src.net, result.state, ds, info["head"], mesh=mesh)
    acc = evaluate.output_accuracy(f, ds, spec)  # sample forgetting: the forgotten training samples
    summary = {"retain_accuracy": acc["retain"], "test_accuracy": acc["all"],
               "forget_accuracy": acc["forget"] if spec.classes else acc["train_forget"],
               "runtime_s": result.runtime_s, "method": method.name, "mode": mode,
               "forget_classes": list(spec.classes), "devices_used": 1 if mesh is None else mesh.size}
    runs.write_json_atomic(os.path.join(args.workdir, "summary.json"), summary)
    fa = "n/a" if summary["forget_accuracy"] is None else f"{100 * summary['forget_accuracy']:.2f} %"
    print(f"{method.name} ({mode}): retain accuracy {100 * acc['retain']:.2f} %, forget accuracy {fa}, "
          f"{result.runtime_s:.1f} s; run in {args.workdir}")
    return 0


def _unlearn_mesh(args, method, settings):
    """The mesh of ``--devices`` (None: one device); refuses a phase batch that does not split evenly."""
    from jaxunlearn import cli, parallel
    mesh = cli._mesh(args)
    if mesh is not None and method.phases is not None:
        for phase in method.phases(settings):
            for stream, size in sorted(phase.batch_sizes.items()):
                parallel.check_batch_size(size, mesh, f"batch size ({phase.name} phase, {stream} stream)")
    return mesh


def _refuse_existing(path, overwrite):
    from jaxunlearn.runs import RunError
    if os.path.exists(path) and not overwrite:
        raise RunError(f"{path} exists; pass --overwrite to replace it")


def cmd_evaluate(args) -> int:
    from jaxunlearn import runs

    _refuse_existing(args.json, args.overwrite)
    if args.seeds is not None:
        from jaxunlearn import multiseed
        loaded = {}  # the dataset is loaded once for every seed and reference

        def one(w, o, r):
            out = _evaluate_one(args, w, o, r, loaded.get("ds"))
            loaded.setdefault("ds", out.pop("_dataset"))
            return out

        return multiseed.evaluate_cmd(args, one)
    out = _evaluate_one(args, args.workdir, args.original, args.retrained)
    out.pop("_dataset")
    runs.write_json_atomic(args.json, out)
    if out["run"]["forget_classes"]:
        print(f"full {_pct(out['full'])} | LP {_pct(out['lp'])} | NCC {_pct(out['ncc'])} (retain / forget); "
              f"wrote {args.json}")
    else:
        print(f"full {_pct_samples(out['full'])} | LP {_pct_samples(out['lp'])} | NCC {_pct_samples(out['ncc'])} "
              f"(forget train / retain train / test); wrote {args.json}")
    return 0


def _evaluate_one(args, workdir, original, retrained, dataset=None) -> dict:
    """``evaluate_model`` of one run directory (with CKA references if given); the output's
    ``"_dataset"`` is the loaded dataset, for the caller to reuse (``dataset``) and drop."""
    from jaxunlearn import data as data_lib, evaluate, runs

    run = runs.load_run(workdir, args.data_dir, dataset=dataset)
    ds = data_lib.whole_training_set(run.dataset)  # heads fitted on every training row (parity row 10)
    forget, record = _run_forget_set(args, run, workdir)
    refs = {}
    for name, path in (("original", original), ("retrained", retrained)):
        if path:
            r = runs.load_run(path, args.data_dir, dataset=ds)
            refs[name] = (r.net, r.state, r.info.get("head", "linear"))
    from jaxunlearn import cli
    mesh = cli._mesh(args)  # --devices: feature extraction split over the devices
    t = time.perf_counter()
    out = evaluate.evaluate_model(run.net, run.state, ds, forget, head=run.info.get("head", "linear"),
                                  probe=args.probe, layerwise=args.layerwise,
                                  relearn=() if args.no_relearn else _relearn_samples(args.relearn_samples),
                                  mesh=mesh, **refs)
    out["runtime_s"]["total"] = time.perf_counter() - t
    out["run"] = {"workdir": str(workdir), "method": run.info.get("method"), "mode": run.info.get("mode"),
                  "forget_classes": list(forget.classes), "forget_set": record, "seed": run.info.get("seed")}
    out["_dataset"] = ds
    return out


def _relearn_samples(text) -> tuple:
    try:
        ks = tuple(int(p) for p in str(text).split(","))
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise ValueError(f"--relearn-samples takes positive counts like 10 or 10,100, got {text!r}")
    return ks


def _forget_record(ds, spec) -> dict:
    from jaxunlearn import evaluators
    return evaluators.forget_record(ds, spec)


def _run_forget_set(args, run, workdir):
    """``(ForgetSet, record)`` of ``--forget`` or of the run's stored forget set (run.json's
    ``forget_spec``; older runs: their class list, or their ``forget`` text with their seed)."""
    from jaxunlearn import data as data_lib, evaluators, multiseed, runs

    ds = data_lib.whole_training_set(run.dataset)  # the rows unlearning and evaluation use
    if args.forget is not None:
        record = evaluators.forget_record(ds, data_lib.parse_forget(args.forget, ds.num_classes, seed=args.forget_seed))
    elif run.info.get("forget_spec"):
        record = run.info["forget_spec"]
    elif run.info.get("forget_classes"):
        record = {"kind": "classes", "classes": list(run.info["forget_classes"])}
    elif (run.info.get("kind") == "unlearn" and run.info.get("forget")
          and not multiseed.is_multiseed(pathlib.Path(workdir).parent)):
        # a single sample-forgetting run from before run.json stored the forget set: drawn with its --seed
        # (a seed of a multi-seed run was not: its run.json holds the model's seed)
        record = evaluators.forget_record(ds, data_lib.parse_forget(str(run.info["forget"]), ds.num_classes,
                                                                    seed=int(run.info.get("seed", 0))))
    else:
        raise runs.RunError(f"{workdir} is not an unlearning run with a stored forget set; pass --forget")
    try:
        return evaluators.forget_from_record(ds, record), record
    except ValueError as e:
        raise runs.RunError(f"{workdir}: {e}") from None


def _pct(d):
    f = "n/a" if d.get("forget") is None else f"{100 * d['forget']:.1f}"
    return f"{100 * d['retain']:.1f} / {f}"


def _pct_samples(d):
    return " / ".join("n/a" if d.get(k) is None else f"{100 * d[k]:.1f}" for k in ("train_forget", "train_retain", "all"))


def cmd_analyze(args) -> int:
    from jaxunlearn import analyze, runs

    _refuse_existing(args.json, args.overwrite)
    arrays = analyze.load_features_npz(args.features)
    out = analyze.analyze_features(arrays, probe=args.probe)
    runs.write_json_atomic(args.json, out)
    if "num_forget_samples" in out:  # forget_indices: sample forgetting
        print(f"NCC {_pct_samples(out['ncc'])} | LP {_pct_samples(out['lp'])} (forget train / retain train / test) "
              f"in {out['runtime_s']:.1f} s; wrote {args.json}")
    else:
        print(f"NCC {_pct(out['ncc'])} | LP {_pct(out['lp'])} (retain / forget) in {out['runtime_s']:.1f} s; "
              f"wrote {args.json}")
    return 0


def _add_study_axes(p) -> None:
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="seeds 0..N-1 of every model (default: the config's, 3)")
    p.add_argument("--forget-sets", nargs="+", default=None, metavar="SET",
                   help="forget sets, each a class (0) or classes (2,4,6) (default: the config's)")
    p.add_argument("--strategy", choices=["auto", "vmap", "devices", "loop"], default=None,
                   help="how the seeds of one model run (default: auto, measured on the backend)")


def _study_overrides(args, config_name: str) -> dict:
    """Config overrides from --seeds / --forget-sets / --strategy / --full (validated)."""
    from experiments.configs import get_config
    from jaxunlearn.data import DATASETS, parse_forget
    config = get_config(config_name)
    over = {}
    if getattr(args, "full", False):
        from jaxunlearn.data import load_dataset
        if args.forget_sets:
            raise ValueError("--full runs every class; drop --forget-sets (or drop --full)")
        k = load_dataset(config.dataset, args.data_dir, max_train=config.max_train).num_classes
        over["forget_sets"] = tuple((c,) for c in range(k))
        over["seeds"] = (0, 1, 2)
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
        over["seeds"] = tuple(range(args.seeds))
    if args.forget_sets:
        sets = []
        for text in args.forget_sets:
            spec = parse_forget(text, 10_000)
            if not spec.classes:
                raise ValueError(f"--forget-sets takes classes like 0 or 2,4,6, got {text!r}")
            sets.append(tuple(spec.classes))
        over["forget_sets"] = tuple(sets)
    if args.strategy is not None:
        over["strategy"] = args.strategy
    return over


def cmd_reproduce(args) -> int:
    if args.name == "forgetting_quality":  # builds its own model pools, not the study's models
        from experiments import forgetting_quality
        return forgetting_quality.reproduce(args)
    from experiments import run_experiment
    return run_experiment(args.name, args.config, args.workdir, args.data_dir, progress=not args.no_progress,
                          overrides=_study_overrides(args, args.config))


def cmd_study(args) -> int:
    from experiments import run_study
    config = args.config or ("digits" if args.quick else "fashion_mnist")
    return run_study(config, args.workdir, args.data_dir, progress=not args.no_progress,
                     overrides=_study_overrides(args, config))


def cmd_methods(args) -> int:
    from jaxunlearn.unlearn import METHODS, MODES, options, presets

    dataset = args.dataset
    where = (f"the {dataset} preset" if presets.preset_name(dataset) != presets.DEFAULTS else
             f"the method defaults ({dataset} has no preset)") if dataset else "the method defaults"
    print(f"Unlearning methods, with {where}. Override with --lr, --epochs, --batch-size and "
          "--set NAME=VALUE (booleans true/false).\n")
    for name, method in METHODS.items():
        hp, settings, _ = presets.resolve(method, dataset or presets.DEFAULTS)
        kind = "training-free" if method.training_free else "gradient"
        modes = ", ".join(MODES) if method.classifier_loss else "full"
        print(f"{name}: {method.summary}  [{kind}; modes {modes}]")
        print(options.describe(method, hp, settings))
        for mode in MODES[1:] if dataset and method.classifier_loss else ():
            if f"{name}-{mode}" not in presets.PRESETS.get(dataset, {}):
                continue
            m_hp, m_settings, _ = presets.resolve(method, dataset, mode)
            changed = [f"{s.name}={_fmt(v)}" for s in method.options
                       if (v := options.default_of(method, s, m_settings) if not s.hparam else m_hp[s.name])
                       != (options.default_of(method, s, settings) if not s.hparam else hp[s.name])]
            print(f"    in mode {mode} (--{mode.replace('_', '-')}): {', '.join(changed) or 'the same'}")
        print()
    return 0


def _fmt(v):
    return f"{v:g}" if isinstance(v, float) else str(v).lower() if isinstance(v, bool) else str(v)


def cmd_pool(args) -> int:
    from jaxunlearn import pool, runs
    from jaxunlearn.data import load_dataset
    ds = load_dataset(args.dataset, args.data_dir, max_train=args.max_train)
    model = args.model or runs.DEFAULT_MODEL[ds.name]
    out = pool.build_pool(args.workdir, args.method, args.mode, sets=args.set, strategy=args.strategy, ds=ds,
                          dataset=ds.name, model=model, forget=args.forget, models=args.models, batch=args.batch,
                          floor=args.floor, epochs=args.epochs, original=args.source, dtype=args.dtype,
                          retain_sample=args.retain_sample, test_sample=args.test_sample, max_train=args.max_train,
                          part=_part(args.part))
    if out is None:
        print(f"part {args.part} done; other parts of {args.workdir} are still missing")
        return 0
    for side in ("retrained", "unlearned"):
        s = out[side]
        if s is None:
            continue
        b = out["built"][side]
        acc = s["accuracy"]
        fa = acc["forget"]
        print(f"{side}: {len(s['seeds'])} models ({len(b['built'])} batches built, {len(b['skipped'])} found), "
              f"retain {100 * acc['retain'].mean():.1f} %, forget {100 * fa.mean():.1f} %, "
              f"test {100 * acc['test'].mean():.1f} %, {s['time_per_model_s'].mean():.2f} s/model "
              f"({', '.join(sorted({m['strategy'] for m in s['batches']}))})")
    print(f"pool in {args.workdir}")
    return 0


def _part(text: str) -> tuple:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--part expects I/N like 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--part I/N needs 0 <= I < N, got {text!r}")
    return i, n
