"""``--seeds`` on ``train``, ``unlearn`` and ``evaluate``: one command, one run per seed.

A multi-seed workdir holds one complete run directory per seed, ``seed-<s>/`` (its own
``run.json``, ``model/``, ``summary.json``, as a single-seed command would write), and
``seeds.json`` (the seeds, the strategy that ran them and why, and each seed's summary),
written last. ``unlearn --from`` a multi-seed train workdir unlearns seed ``s``'s original with
seed ``s``; from a single run, every seed starts from that one model. ``evaluate`` of a
multi-seed workdir evaluates every seed and writes the per-seed results, their mean ± std and
95 % confidence interval over seeds, and a long-format CSV (``<json stem>.csv``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time

import jax

from jaxunlearn import runs, seeds as seeds_lib, strategy as strategy_lib

SEEDS_FILE = "seeds.json"


def is_multiseed(workdir) -> bool:
    return (pathlib.Path(workdir) / SEEDS_FILE).is_file()


def run_dir(workdir, seed: int) -> pathlib.Path:
    return pathlib.Path(workdir) / seeds_lib.seed_dir_name(seed)


def source_dir(workdir, seeds: list[int] | None) -> pathlib.Path:
    """The run directory to read settings from: ``workdir`` itself, or its first seed's."""
    workdir = pathlib.Path(workdir)
    if not is_multiseed(workdir):
        return workdir
    have = runs.read_json(workdir / SEEDS_FILE)["seeds"]
    wanted = seeds if seeds is not None else have
    missing = [s for s in wanted if s not in have]
    if missing:
        raise runs.RunError(f"{workdir} has seeds {have}, not {missing}; pick --seeds among them")
    return run_dir(workdir, wanted[0])


def _prepare_root(workdir, overwrite: bool, info: dict) -> None:
    """The multi-seed workdir: refused if finished (``seeds.json``) unless ``overwrite``."""
    root = pathlib.Path(workdir)
    if root.exists() and not root.is_dir():
        raise runs.RunError(f"workdir {root} exists and is not a directory")
    if (root / SEEDS_FILE).exists() or (root / "summary.json").exists():
        if not overwrite:
            raise runs.RunError(f"{root} already holds a finished run; pass --overwrite to replace it, "
                                "or choose another --workdir")
        runs._move_aside(root)
    root.mkdir(parents=True, exist_ok=True)
    runs.write_json_atomic(root / "multiseed.json", info)


def train(args, ds, model, recipe, mesh, info: dict) -> int:
    """``train --seeds``: one run per seed, batched when measured faster (else looped, resumable)."""
    seeds = seeds_lib.parse_seeds(args.seeds)
    t_start = time.time()
    _prepare_root(args.workdir, args.overwrite, {**info, "seeds": seeds})
    dirs = {s: run_dir(args.workdir, s) for s in seeds}
    todo = [s for s in seeds if not (dirs[s] / "summary.json").is_file()]  # a re-run keeps finished seeds
    for s in todo:
        runs.prepare_workdir(dirs[s], False, {**info, "seed": s})
    summaries = {s: runs.read_json(dirs[s] / "summary.json") for s in seeds if s not in todo}
    tinfo = {"strategy": "loop", "strategy_reason": "every seed was already trained", "measured": None}
    if todo:
        stop = runs.StopFlag()
        with stop.installed():
            net, states, tinfo = seeds_lib.train_seeds(ds, model, recipe, todo, strategy=args.strategy, mesh=mesh,
                                                       progress=False if args.no_progress else f"train {model}",
                                                       workdirs=[dirs[s] for s in todo], stop=stop)
    for j, (s, state) in enumerate(zip(todo, states if todo else [])):
        d = dirs[s]
        runs.save_model(d, model, ds.name, state)
        acc = runs.accuracy_of(net, state, ds.test_images, ds.test_labels)
        summaries[s] = {"test_accuracy": acc, "dataset": ds.name, "model": model, "seed": s,
                        "strategy": tinfo["strategy"], **tinfo["runs"][j]}
        runs.write_json_atomic(d / "summary.json", summaries[s])
    _finish(args.workdir, seeds, tinfo, summaries, time.time() - t_start)
    accs = ", ".join(f"{100 * summaries[s]['test_accuracy']:.2f}" for s in seeds)
    print(f"test accuracy per seed {accs} % ({tinfo['strategy']}: {tinfo['strategy_reason']}); "
          f"runs in {args.workdir}/seed-*")
    return 0


def _finish(workdir, seeds, plan: dict, summaries: dict, wall: float) -> None:
    runs.write_json_atomic(pathlib.Path(workdir) / SEEDS_FILE, {
        "seeds": seeds, "runs": {str(s): seeds_lib.seed_dir_name(s) for s in seeds},
        "strategy": plan["strategy"], "strategy_reason": plan.get("strategy_reason", plan.get("reason")),
        "measured": plan.get("measured"), "wall_time_s": wall, "summaries": {str(k): v for k, v in summaries.items()}})


def unlearn(args, method, ds, spec, problem, hp_over, settings, mode: str, info: dict, mesh) -> int:
    """``unlearn --seeds``: one unlearning run per seed (key ``jax.random.key(seed)``)."""
    from jaxunlearn import evaluate
    from jaxunlearn.unlearn import sweep

    seeds = seeds_lib.parse_seeds(args.seeds)
    t_start = time.time()
    if mesh is not None:
        raise ValueError("--seeds and --devices together are not supported: the seed axis itself is batched "
                         "(use --strategy devices to shard seeds over devices)")
    sources = [runs.load_run(run_dir(args.source, s) if is_multiseed(args.source) else args.source,
                             args.data_dir, dataset=ds) for s in seeds]
    _prepare_root(args.workdir, args.overwrite, {**info, "seeds": seeds})
    dirs = [run_dir(args.workdir, s) for s in seeds]
    for s, d, src in zip(seeds, dirs, sources):
        runs.prepare_workdir(d, True, {**info, "seed": s, "from": str(src.workdir)})
    states = [src.state for src in sources] if is_multiseed(args.source) else sources[0].state
    net = sources[0].net
    out = sweep.unlearn_seeds(method, seeds, net, states, problem, hp_over, settings, args.strategy,
                              progress=False if args.no_progress else method.name)
    summaries = {}
    for s, d, state, rt in zip(seeds, dirs, out["states"], out["runtime_s"]):
        runs.save_model(d, info["model"], ds.name, state)
        f = evaluate.extract(net, state, ds, info["head"])
        acc = evaluate.output_accuracy(f, ds, spec)  # sample forgetting: the forgotten training samples
        summaries[s] = {"retain_accuracy": acc["retain"],
                        "forget_accuracy": acc["forget"] if spec.classes else acc["train_forget"],
                        "test_accuracy": acc["all"], "runtime_s": rt, "method": method.name, "mode": mode,
                        "forget_classes": list(spec.classes), "seed": s, "strategy": out["strategy"]}
        runs.write_json_atomic(d / "summary.json", summaries[s])
    _finish(args.workdir, seeds, out, summaries, time.time() - t_start)
    fa = lambda v: "n/a" if v is None else f"{100 * v:.2f}"
    print(f"{method.name} ({mode}) per seed: retain " + ", ".join(fa(summaries[s]["retain_accuracy"]) for s in seeds)
          + " %, forget " + ", ".join(fa(summaries[s]["forget_accuracy"]) for s in seeds)
          + f" % ({out['strategy']}: {out['strategy_reason']}); runs in {args.workdir}/seed-*")
    return 0


def evaluate_cmd(args, evaluate_one) -> int:
    """``evaluate --seeds``: ``evaluate_one(workdir, original, retrained) -> dict`` per seed, then
    the statistics over seeds and the long-format CSV."""
    from jaxunlearn import report, stats

    if not is_multiseed(args.workdir):
        raise runs.RunError(f"{args.workdir} is not a multi-seed workdir (no {SEEDS_FILE}); run "
                            "train/unlearn with --seeds, or evaluate one run without --seeds")
    have = runs.read_json(pathlib.Path(args.workdir) / SEEDS_FILE)["seeds"]
    seeds = seeds_lib.parse_seeds(args.seeds) if args.seeds != "all" else have
    missing = [s for s in seeds if s not in have]
    if missing:
        raise runs.RunError(f"{args.workdir} has seeds {have}, not {missing}")
    csv_path = pathlib.Path(args.json).with_suffix(".csv")
    if csv_path.exists() and not args.overwrite:
        raise runs.RunError(f"{csv_path} exists; pass --overwrite to replace it")
    ref = lambda path, s: None if not path else (run_dir(path, s) if is_multiseed(path) else pathlib.Path(path))
    per_seed, records = {}, []
    for s in seeds:
        ev = evaluate_one(run_dir(args.workdir, s), ref(args.original, s), ref(args.retrained, s))
        per_seed[str(s)] = ev
        fs = "f" + "_".join(map(str, ev["run"]["forget_classes"] or ["samples"]))
        records += report.long_records(ev, s, fs, ev["run"].get("method") or "original", ev["run"].get("mode") or "full")
    summary = {}
    for head in ("full", "lp", "ncc", "knn"):
        for split in ("retain", "forget", "all", "train_retain", "train_forget"):
            vals = [per_seed[str(s)].get(head, {}).get(split) for s in seeds]
            if any(v is not None for v in vals):
                summary.setdefault(head, {})[split] = stats.summarize(vals)
    out = {"seeds": seeds, "summary": summary, "per_seed": per_seed, "csv": str(csv_path)}
    report.write_long_csv(csv_path, records)
    runs.write_json_atomic(args.json, out)
    splits = ("retain", "forget") if ev["run"]["forget_classes"] else ("retain", "train_forget")
    cell = lambda h: " / ".join("n/a" if summary.get(h, {}).get(k) is None or summary[h][k]["mean"] is None else
                                f"{100 * summary[h][k]['mean']:.1f} ± {100 * summary[h][k]['std']:.1f}"
                                for k in splits)
    print(f"over {len(seeds)} seeds: full {cell('full')} | LP {cell('lp')} | NCC {cell('ncc')} "
          f"({' / '.join(splits)}, mean ± std); wrote {args.json} and {csv_path}")
    return 0
