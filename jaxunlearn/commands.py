"""Sub-commands beyond ``train``: each module adds its parser here (see :func:`register`)."""

from __future__ import annotations


def register(sub, add_common) -> None:
    """Adds every sub-command parser to ``sub``; each sets ``handler`` via ``set_defaults``."""
    p = sub.add_parser("study", help="the main study (currently: train the default model)")
    p.add_argument("--quick", action="store_true", help="digits + MLP, finishes in minutes")
    p.add_argument("--workdir", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_study)


def _study(args) -> int:
    from jaxunlearn import cli
    dataset = "digits" if args.quick else "fashion_mnist"
    workdir = args.workdir or ("runs/study-quick" if args.quick else "runs/study")
    argv = ["train", "--dataset", dataset, "--workdir", f"{workdir}/original"]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    if args.overwrite:
        argv.append("--overwrite")
    if args.no_progress:
        argv.append("--no-progress")
    return cli.main(argv)
