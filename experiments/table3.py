"""Table 3: the CMF model and CMF variants of the unlearning methods (Algorithm 2)."""

from experiments.configs import MethodRun
from experiments.table1 import finish


def run(study) -> str:
    c = study.config
    entries = [MethodRun("cmf_original", "cmf", label="CMF model"), *c.table3]
    return finish(study, "table3", study.rows(entries), f"Table 3 ({c.dataset}, {c.model}): CMF unlearning",
                  f"{c.dataset}: CMF unlearning, forget-class accuracy per head", entries)
