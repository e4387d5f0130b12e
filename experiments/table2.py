"""Table 2: classifier-only unlearning (last layer zeroed and retrained, encoder and
BatchNorm frozen) and the closed-form classifier edit, next to full-model unlearning."""

from experiments.configs import MethodRun
from experiments.table1 import finish


def run(study) -> str:
    c = study.config
    entries = []
    for r in c.table2:
        if r.mode == "classifier_only":
            entries.append(MethodRun(r.method, "full", r.hparams, r.settings))
        entries.append(r)
    return finish(study, "table2", study.rows(entries), f"Table 2 ({c.dataset}, {c.model}): classifier-only unlearning",
                  f"{c.dataset}: classifier-only vs full-model unlearning", entries)
