"""The ``jaxunlearn`` command line: train, unlearn, evaluate, analyze, reproduce, study.

User errors (unknown names, bad values, missing data, a finished workdir, a bad checkpoint)
print one ``error: ...`` line and exit with status 2; nothing in the workdir changes.
An interrupted run exits with status 130 after saving its state.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


DESCRIPTION = "Machine unlearning in JAX that looks inside the model: train, unlearn, evaluate, analyze."
EPILOG = """\
a first run (digits, a few seconds each):
  jaxunlearn train --dataset digits --workdir runs/orig
  jaxunlearn unlearn --from runs/orig --method random_label --forget 3 --workdir runs/rl
  jaxunlearn evaluate runs/rl --original runs/orig --json runs/rl.json

`jaxunlearn methods --dataset D` lists the methods with their options and defaults;
`jaxunlearn COMMAND --help` the options of one command. A user error prints one
`error: ...` line and exits with status 2; an interrupted run exits with 130."""


def _version() -> str:
    from importlib import metadata
    try:
        return metadata.version("jaxunlearn")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks and appends ``(default: X)`` where a help text lacks it."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default is argparse.SUPPRESS \
            or action.default == []
        if "default" not in text and not unset and action.option_strings and action.nargs != 0:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # exit 2 with a one-line message, like every other user error
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _add_common(p, workdir_required=True):
    p.add_argument("--workdir", required=workdir_required, help="output directory of this run")
    p.add_argument("--data-dir", default=None, help="where the dataset lives (IDX files, TFDS data_dir, image folder; "
                                                    "default: its usual place, or the source run's)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --workdir (the old one is moved aside)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")
    p.add_argument("--devices", type=int, default=None,
                   help="data-parallel over this many devices, over all processes (default: 1; every "
                        "device of a multi-process run)")
    add_distributed_flags(p)


def add_distributed_flags(p) -> None:
    """``--coordinator``, ``--num-processes``, ``--process-id``, ``--peer-timeout`` (read by :func:`main`)."""
    g = p.add_argument_group("several processes (TPU pods; see the README)")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="address of process 0, where the processes meet (default: $JAX_COORDINATOR_ADDRESS; "
                        "without it one process, or JAX's auto-detection on a Cloud TPU pod)")
    g.add_argument("--num-processes", metavar="N", type=int, default=None,
                   help="processes of the run (default: $JAXUNLEARN_NUM_PROCESSES)")
    g.add_argument("--process-id", metavar="I", type=int, default=None,
                   help="this process, 0..N-1; process 0 writes the files (default: $JAXUNLEARN_PROCESS_ID)")
    g.add_argument("--peer-timeout", metavar="SECONDS", type=float, default=None,
                   help="give up when the other processes have not all joined, or one has been silent, for "
                        "this long (default: $JAXUNLEARN_PEER_TIMEOUT, else 120)")


def build_parser() -> argparse.ArgumentParser:
    from jaxunlearn.data import DATASETS
    parser = _Parser(prog="jaxunlearn", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("train", help="train an original model")
    p.add_argument("--dataset", default="fashion_mnist", help=f"one of {', '.join(DATASETS)}")
    from jaxunlearn.models import MODELS
    p.add_argument("--model", default=None, help=f"one of {', '.join(MODELS)} (default: per dataset)")
    recipe = "default: the recipe of the dataset and model"
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs ({recipe})")
    p.add_argument("--batch-size", type=int, default=None, help=f"batch size ({recipe})")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate ({recipe})")
    p.add_argument("--weight-decay", type=float, default=None, help=f"weight decay ({recipe})")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of initialisation and batches")
    p.add_argument("--seeds", default=None, metavar="SEEDS",
                   help="train one run per seed, e.g. 0-4 or 0,3,7, into WORKDIR/seed-<s>/ (default: --seed only)")
    p.add_argument("--strategy", choices=["auto", "vmap", "devices", "loop"], default="auto",
                   help="how --seeds run: measured on the backend (auto), batched (vmap, devices) or one by one")
    p.add_argument("--max-train", type=int, default=None, help="use at most this many training samples "
                                                                      "(stratified; default: all)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default: an epoch)")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    _add_common(p)

    from jaxunlearn import commands  # the other sub-commands register themselves
    commands.register(sub, _add_common)
    return parser


def cmd_train(args) -> int:
    from jaxunlearn import data as data_lib, parallel, runs

    t_start = time.time()
    ds = data_lib.load_dataset(args.dataset, args.data_dir, max_train=args.max_train)
    model = args.model or runs.DEFAULT_MODEL[ds.name]
    runs.make_net(ds, model)  # an unknown model is refused before the workdir is touched
    recipe = runs.recipe_for(ds.name, model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay)
    runs.validate_recipe(recipe, len(ds.train_labels))
    mesh = _mesh(args)
    if mesh is not None:
        parallel.check_batch_size(recipe.batch_size, mesh)
    info = {"kind": "train", "dataset": ds.name, "model": model, "seed": args.seed,
            "recipe": runs.dataclasses.asdict(recipe), "data_dir": args.data_dir, "max_train": args.max_train,
            "devices": args.devices, "command": " ".join(sys.argv), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.seeds is not None:
        from jaxunlearn import multiseed
        return multiseed.train(args, ds, model, recipe, mesh, info)
    resuming = runs.prepare_workdir(args.workdir, args.overwrite, info)
    if resuming:
        print(f"resuming the unfinished run in {args.workdir}")
    stop = runs.StopFlag()
    with stop.installed():
        net, state, tinfo = runs.train_model(ds, model, recipe, args.seed, args.workdir,
                                             progress=False if args.no_progress else f"train {model}",
                                             checkpoint_every=args.checkpoint_every, keep=args.keep,
                                             mesh=mesh, stop=stop)
    runs.save_model(args.workdir, model, ds.name, state)
    test_acc = runs.accuracy_of(net, state, ds.test_images, ds.test_labels)
    summary = {"test_accuracy": test_acc, "dataset": ds.name, "model": model, "seed": args.seed,
               "devices_used": 1 if mesh is None else mesh.size, "processes": parallel.process_count(),
               "wall_time_s": time.time() - t_start, **tinfo}
    runs.write_json_atomic(os.path.join(args.workdir, "summary.json"), summary)
    print(f"test accuracy {100 * test_acc:.2f} % after {tinfo['epochs_run']} epochs "
          f"({tinfo['train_time_s']:.0f} s of training); run in {args.workdir}")
    return 0


def _mesh(args):
    """The data-parallel mesh of ``--devices`` (None for one device); a multi-process run
    without ``--devices`` uses every device of every process."""
    import jax

    from jaxunlearn import parallel
    if args.devices is not None and args.devices < 1:
        raise ValueError(f"--devices must be at least 1, got {args.devices}")
    n = args.devices
    if n is None and jax.process_count() > 1:
        n = jax.device_count()
    if not n or n == 1:
        return None
    return parallel.make_mesh(n)


def _request_cpu_devices(n: int) -> None:
    """Asks for ``n`` virtual CPU devices; must run before JAX initialises its backends.

    ``jax_num_cpu_devices`` only shapes the CPU client (on GPU/TPU hosts the accelerators are
    used and this is harmless). Once backends exist (e.g. ``main`` called in-process after JAX
    computations) the setting can no longer change and the devices already there are used;
    :func:`jaxunlearn.parallel.make_mesh` then refuses a mesh larger than what is visible.
    """
    import jax
    flag = "--xla_force_host_platform_device_count="
    forced = [int(f[len(flag):]) for f in os.environ.get("XLA_FLAGS", "").split() if f.startswith(flag)]
    if forced and forced[-1] >= n:
        return
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backends already initialised: keep the devices there are
        pass


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    from jaxunlearn import parallel
    # Before any JAX computation: the CPU device count, then jax.distributed (DESIGN.md).
    try:
        dist = parallel.distributed_config(args.coordinator, args.num_processes, args.process_id,
                                           args.peer_timeout) if hasattr(args, "coordinator") \
            else parallel.DistributedConfig()
        devices = getattr(args, "devices", None)
        if devices and devices > 1:
            _request_cpu_devices(-(-devices // (dist.num_processes or 1)))  # per process
        if dist.mode == "none":  # one process: compiled programs persist across commands
            from jaxunlearn import compiled  # (before anything compiles: JAX fixes its cache then)
            compiled.enable_persistent_cache()
        joined = parallel.initialize_distributed(dist)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if joined and not parallel.is_primary():  # process 0 alone prints and shows progress
        sys.stdout = open(os.devnull, "w")
        if hasattr(args, "no_progress"):
            args.no_progress = True
    import jax

    from jaxunlearn import checkpoint, data as data_lib, runs, train
    handler = {"train": cmd_train}.get(args.command) or args.handler
    try:
        return handler(args) or 0
    except jax.errors.JaxRuntimeError as e:
        if not joined:
            raise
        print(f"error: a computation shared with the other processes failed (did a peer process stop?): "
              f"{str(e).splitlines()[0][:300]}", file=sys.stderr)
        return 2
    except parallel.DistributedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except runs.Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    except train.Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (runs.RunError, data_lib.DataNotFoundError, checkpoint.CheckpointError, ValueError,
            FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console_main() -> None:
    """The ``jaxunlearn`` program: :func:`main`, then a quick exit.

    After a JAX program, Python's interpreter teardown (module dictionaries, the XLA client,
    thread pools) takes 0.3-0.5 s on a 2-core CPU and does nothing a finished command needs:
    the library closes every file it writes (atomic writes) before ``main`` returns. So when
    ``main`` returns with only the main thread left, the exit handlers JAX, Orbax and
    ``logging`` registered run, stdout and stderr are flushed, and the process leaves with
    ``os._exit``. Output that cannot be written (a full disk, a closed pipe) turns a 0 into
    120, as Python's own exit does. With any other thread alive (a background save, a user's
    thread), or with ``JAXUNLEARN_FULL_EXIT=1``, it exits normally; an exception or
    ``SystemExit`` from ``main`` (``--help``, argparse errors) also leaves the normal way.
    """
    import atexit
    import threading
    code = main()
    if threading.active_count() > 1 or os.environ.get("JAXUNLEARN_FULL_EXIT") == "1":
        sys.exit(code)
    atexit._run_exitfuncs()
    lost = False
    for stream in dict.fromkeys((sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a full disk, a closed or broken pipe
            lost = True
    code = code if isinstance(code, int) else 1
    os._exit(120 if lost and code == 0 else code)


if __name__ == "__main__":
    console_main()
