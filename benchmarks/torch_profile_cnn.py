"""Share of PyTorch's small-CNN train step spent in BatchNorm (torch.profiler), to set beside
``cnn_ablation.py``'s JAX figure. Runs in the PyTorch environment:

    benchmarks/.torch-venv/bin/python benchmarks/torch_profile_cnn.py [--steps 10]

Same model, batch and optimizer as ``torch_side.py train_step --model cnn`` (random normalised
inputs). Prints the self CPU time of the BatchNorm forward/backward ops over all ops.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import torch_models  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    torch.manual_seed(0)
    model = torch_models.get_model("cnn", 10, common.TRAIN["cnn"]["image_shape"])
    model.train()
    o = common.OPTIM
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"],
                          weight_decay=o["weight_decay"])
    x = torch.randn(common.BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (common.BATCH,))

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    bn = sum(e.self_cpu_time_total for e in events if "batch_norm" in e.key)
    print(f"BatchNorm forward + backward: {100 * bn / total:.1f} % of the step's self CPU time "
          f"({a.steps} steps, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
