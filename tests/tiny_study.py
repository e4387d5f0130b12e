"""The tiny digits study config shared by the experiment tests and the kill-and-resume test.

Run as a script (``python tests/tiny_study.py ARGS...``) it registers the config as ``tiny``
and calls the real CLI with ``ARGS`` (e.g. ``reproduce table1 --config tiny``), so a test can
send real signals to a real study process.
"""

import dataclasses
import sys

from experiments import configs
from experiments.configs import MethodRun

TINY = dataclasses.replace(
    configs.DIGITS, name="tiny", train_epochs=8, retrain_epochs=8, forget_sets=((3,),), seeds=(0, 1),
    table1=(MethodRun("random_label"),),
    table2=(MethodRun("random_label", "classifier_only"), MethodRun("classifier_edit")),
    table3=(MethodRun("random_label", "cmf", (("lr", 0.2),)),),
    curve_methods=(MethodRun("random_label"),), curve_every=10,
    relearn_methods=("retrain", "random_label-full"), relearn_samples=(10,), relearn_steps=10)

if __name__ == "__main__":
    from jaxunlearn import cli
    configs.CONFIGS[TINY.name] = TINY
    sys.exit(cli.main(sys.argv[1:]))
