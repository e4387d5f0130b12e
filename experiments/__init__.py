"""The paper's experiments, one module per table or figure.

``jaxunlearn reproduce NAME`` runs one; ``jaxunlearn study`` runs all of them on one config.
All share a :class:`experiments.study.Study` workdir, so models and evaluations are computed
once and an interrupted run resumes.
"""

from __future__ import annotations

import contextlib
import importlib
import pathlib
import time

EXPERIMENTS = ("table1", "table2", "table3", "learning_curve", "features", "layerwise", "relearn", "theory")
MAIN_TABLES = ("table1", "table2", "table3")


def _study(config_name, workdir, data_dir, progress, stop=None, overrides=None):
    import dataclasses

    from experiments.configs import get_config
    from experiments.study import Study
    config = get_config(config_name)
    if overrides:
        config = dataclasses.replace(config, **overrides)
    workdir = pathlib.Path(workdir or f"runs/study-{config.name}")
    return Study(config, workdir, data_dir, progress, stop)


@contextlib.contextmanager
def _stoppable(what: str):
    """SIGINT/SIGTERM stop the study cleanly (see :mod:`experiments.study`); a re-run resumes."""
    from jaxunlearn.runs import Interrupted, StopFlag
    stop = StopFlag(only_while_polled=True)
    try:
        with stop.installed():
            yield stop
    except KeyboardInterrupt:
        raise Interrupted(f"{what} stopped by a signal; finished models and evaluations are cached: "
                          "run the same command again to resume") from None


def run_experiment(name: str, config: str = "fashion_mnist", workdir=None, data_dir=None, progress=True,
                   overrides: dict | None = None) -> int:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    with _stoppable(f"experiment {name}") as stop:
        study = _study(config, workdir, data_dir, progress, stop, overrides)
        md = importlib.import_module(f"experiments.{name}").run(study)
    print(md)
    print(f"results in {study.out_dir(name)}")
    return 0


def run_study(config: str = "fashion_mnist", workdir=None, data_dir=None, progress=True,
              overrides: dict | None = None) -> int:
    """Every experiment in order; prints the main tables and where the plots are."""
    with _stoppable(f"study {config}") as stop:
        return _run_all(_study(config, workdir, data_dir, progress, stop, overrides))


def _run_all(study) -> int:
    t0 = time.time()
    study.log(f"study {study.config.name}: {study.ds.name} / {study.config.model}, forget sets "
              f"{list(study.config.forget_sets)}, seeds {list(study.seeds)}, workdir {study.workdir}")
    outputs = {}
    for name in EXPERIMENTS:
        t = time.time()
        outputs[name] = importlib.import_module(f"experiments.{name}").run(study)
        study.log(f"{name} done in {time.time() - t:.0f} s")
    from jaxunlearn.runs import write_text_atomic
    csv_path = study.write_records()
    summary = "\n".join(outputs[n] for n in EXPERIMENTS)
    plots = sorted(p.relative_to(study.workdir).as_posix() for p in study.workdir.glob("*/*.png"))
    summary += "\nPlots: " + ", ".join(f"[{p}]({p})" for p in plots) + "\n"
    summary += (f"\nEvery per-seed number: [{csv_path.name}]({csv_path.name}) (one row per seed, forget set, "
                "method, mode, head and split); how each model's seeds ran: [strategies.json](strategies.json).\n")
    write_text_atomic(study.workdir / "RESULTS.md", f"# Study {study.config.name}\n\n{summary}")
    print()
    for n in MAIN_TABLES:
        print(outputs[n])
    print(f"study finished in {(time.time() - t0) / 60:.1f} min; all tables in {study.workdir / 'RESULTS.md'}; "
          f"plots: " + ", ".join(str(p) for p in sorted(study.workdir.glob('*/*.png'))))
    return 0
