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


def register(sub, add_common) -> None:
    """Adds every sub-command parser to ``sub``; each sets ``handler`` via ``set_defaults``."""
    p = sub.add_parser("unlearn", help="unlearn a forget set from a trained model")
    p.add_argument("--from", dest="source", required=True, help="workdir of a finished train (or unlearn) run")
    p.add_argument("--method", required=True)
    p.add_argument("--forget", required=True, help="a class (3), a list (0,5,9) or a fraction of samples (0.1)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--classifier-only", action="store_true", help="zero and train only the last layer")
    mode.add_argument("--cmf", action="store_true", help="class-mean-feature head (Algorithm 2)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="method hyper-parameter or option, e.g. --set forget_weight=0.5")
    add_common(p)
    p.set_defaults(handler=cmd_unlearn)

    p = sub.add_parser("evaluate", help="every metric of a trained or unlearned model")
    p.add_argument("workdir")
    p.add_argument("--original", default=None, help="workdir of the original model (CKA)")
    p.add_argument("--retrained", default=None, help="workdir of the retrained model (CKA)")
    p.add_argument("--json", required=True, help="output JSON file")
    p.add_argument("--forget", default=None, help="forget classes (default: those of the run)")
    p.add_argument("--probe", choices=["fast", "sgd"], default="fast")
    p.add_argument("--layerwise", action="store_true")
    p.add_argument("--no-relearn", action="store_true")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("analyze", help="metrics of features from any framework (.npz)")
    p.add_argument("features")
    p.add_argument("--json", required=True)
    p.add_argument("--probe", choices=["fast", "sgd"], default="fast")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=cmd_analyze)

    from experiments import EXPERIMENTS
    p = sub.add_parser("reproduce", help="one experiment of the paper (table or figure)")
    p.add_argument("name", help=", ".join(EXPERIMENTS))
    p.add_argument("--config", default="fashion_mnist", help="study config: fashion_mnist, digits, cifar10, cifar100")
    p.add_argument("--workdir", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_reproduce)

    p = sub.add_parser("study", help="the main study: every experiment on the default config")
    p.add_argument("--quick", action="store_true", help="digits + MLP, a few minutes")
    p.add_argument("--config", default=None)
    p.add_argument("--workdir", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_study)


def _parse_sets(items):
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


def cmd_unlearn(args) -> int:
    import jax

    from jaxunlearn import data as data_lib, runs
    from jaxunlearn.unlearn import get_method, make_problem, unlearn

    method = get_method(args.method)
    src = runs.load_run(args.source, args.data_dir)
    ds = src.dataset
    spec = data_lib.parse_forget(args.forget, ds.num_classes, seed=args.seed)
    data_lib.forget_split(ds, spec)  # refuses an empty forget set before anything is written
    mode = "classifier_only" if args.classifier_only else "cmf" if (args.cmf or src.info.get("head") == "cmf") else "full"
    extra = _parse_sets(args.set)
    hp_over = {k: v for k, v in extra.items() if k in method.hparams}
    opt_over = {k: v for k, v in extra.items() if k not in method.hparams}
    if args.lr is not None:
        hp_over["lr"] = args.lr
    settings = method.settings.replace(mode=mode, **{k: v for k, v in
                                                     {"epochs": args.epochs, "batch_size": args.batch_size}.items()
                                                     if v is not None}, **opt_over)
    if mode != "full" and not method.classifier_loss:  # unlearn() would refuse it after the workdir exists
        raise ValueError(f"{method.name} has no classifier loss, so mode {mode!r} does not apply")
    if args.devices is not None and args.devices != 1:
        raise ValueError("unlearn runs on one device: --devices is not supported here")
    for k, v in hp_over.items():
        if not isinstance(v, (int, float)):
            raise ValueError(f"hyper-parameter {k} must be a number, got {v!r}")
    if settings.epochs <= 0:
        raise ValueError(f"epochs must be positive, got {settings.epochs}")
    if not 0 < hp_over.get("lr", 1.0) < float("inf"):  # also refuses NaN
        raise ValueError(f"learning rate must be positive and finite, got {hp_over['lr']}")
    if settings.batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {settings.batch_size}")
    problem = make_problem(ds, spec)
    if settings.batch_size > int(problem.retain.shape[0]):
        raise ValueError(f"batch size {settings.batch_size} is larger than the retain set ({int(problem.retain.shape[0])})")
    info = {"kind": "unlearn", "dataset": ds.name, "model": src.info["model"], "from": str(args.source),
            "method": method.name, "forget": args.forget, "forget_classes": list(spec.classes),
            "mode": mode, "head": "cmf" if mode == "cmf" else "linear", "seed": args.seed,
            "hparams": {**method.hparams, **hp_over}, "settings": dataclasses.asdict(settings),
            "data_dir": args.data_dir or src.info.get("data_dir"), "max_train": src.info.get("max_train"),
            "command": " ".join(sys.argv), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    if runs.prepare_workdir(args.workdir, args.overwrite, info):  # an earlier try stopped: start over
        (pathlib.Path(args.workdir) / "metrics.jsonl").unlink(missing_ok=True)
    stop = runs.StopFlag()
    with stop.installed():
        result = unlearn(method, jax.random.key(args.seed), src.net, src.state, problem, hp_over, settings,
                         progress=False if args.no_progress else method.name,
                         log=lambda r: runs.append_jsonl(pathlib.Path(args.workdir) / "metrics.jsonl", r),
                         should_stop=stop)
    if stop():
        raise runs.Interrupted("interrupted; nothing was saved (unlearning runs are short: re-run the command)")
    runs.save_model(args.workdir, src.info["model"], ds.name, result.state)
    from jaxunlearn import evaluate
    f = evaluate.extract(src.net, result.state, ds, info["head"])
    acc = evaluate.output_accuracy(f, ds, spec.classes or [])
    summary = {"retain_accuracy": acc["retain"], "forget_accuracy": acc["forget"], "test_accuracy": acc["all"],
               "runtime_s": result.runtime_s, "method": method.name, "mode": mode,
               "forget_classes": list(spec.classes)}
    runs.write_json_atomic(os.path.join(args.workdir, "summary.json"), summary)
    fa = "n/a" if acc["forget"] is None else f"{100 * acc['forget']:.2f} %"
    print(f"{method.name} ({mode}): retain accuracy {100 * acc['retain']:.2f} %, forget accuracy {fa}, "
          f"{result.runtime_s:.1f} s; run in {args.workdir}")
    return 0


def _refuse_existing(path, overwrite):
    from jaxunlearn.runs import RunError
    if os.path.exists(path) and not overwrite:
        raise RunError(f"{path} exists; pass --overwrite to replace it")


def cmd_evaluate(args) -> int:
    from jaxunlearn import data as data_lib, evaluate, runs

    _refuse_existing(args.json, args.overwrite)
    run = runs.load_run(args.workdir, args.data_dir)
    ds = run.dataset
    if args.forget is not None:
        fc = list(data_lib.parse_forget(args.forget, ds.num_classes).classes)
    else:
        fc = run.info.get("forget_classes")
        if not fc:
            raise runs.RunError(f"{args.workdir} is not an unlearning run with forget classes; pass --forget")
    refs = {}
    for name in ("original", "retrained"):
        path = getattr(args, name)
        if path:
            r = runs.load_run(path, args.data_dir, dataset=ds)
            refs[name] = (r.net, r.state, r.info.get("head", "linear"))
    t = time.perf_counter()
    out = evaluate.evaluate_model(run.net, run.state, ds, fc, head=run.info.get("head", "linear"),
                                  probe=args.probe, layerwise=args.layerwise,
                                  relearn=() if args.no_relearn else (10, 100), **refs)
    out["runtime_s"]["total"] = time.perf_counter() - t
    out["run"] = {"workdir": str(args.workdir), "method": run.info.get("method"), "forget_classes": fc}
    runs.write_json_atomic(args.json, out)
    print(f"full {_pct(out['full'])} | LP {_pct(out['lp'])} | NCC {_pct(out['ncc'])} (retain / forget); "
          f"wrote {args.json}")
    return 0


def _pct(d):
    f = "n/a" if d.get("forget") is None else f"{100 * d['forget']:.1f}"
    return f"{100 * d['retain']:.1f} / {f}"


def cmd_analyze(args) -> int:
    from jaxunlearn import analyze, runs

    _refuse_existing(args.json, args.overwrite)
    arrays = analyze.load_features_npz(args.features)
    out = analyze.analyze_features(arrays, probe=args.probe)
    runs.write_json_atomic(args.json, out)
    print(f"NCC {_pct(out['ncc'])} | LP {_pct(out['lp'])} (retain / forget) in {out['runtime_s']:.1f} s; "
          f"wrote {args.json}")
    return 0


def cmd_reproduce(args) -> int:
    from experiments import run_experiment
    return run_experiment(args.name, args.config, args.workdir, args.data_dir, progress=not args.no_progress)


def cmd_study(args) -> int:
    from experiments import run_study
    config = args.config or ("digits" if args.quick else "fashion_mnist")
    return run_study(config, args.workdir, args.data_dir, progress=not args.no_progress)
