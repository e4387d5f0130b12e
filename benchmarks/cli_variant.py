"""``jaxunlearn`` CLI with one library change undone, to measure a kept change against the old code
in the same interleaved run (train_command.py's attempts):

    .venv/bin/python benchmarks/cli_variant.py --eager-init train --dataset fashion_mnist ...

``--eager-init``: ``train.init_state`` runs Flax's init op by op (the library before issue 14)
instead of as one compiled program.
"""

import sys

if __name__ == "__main__":
    argv = sys.argv[1:]
    from jaxunlearn import cli, train
    if "--eager-init" in argv:
        argv.remove("--eager-init")
        train.init_state = lambda net, key, image_shape, cfg: train._init_state(net, key, tuple(image_shape), cfg)
    sys.exit(cli.main(argv))
