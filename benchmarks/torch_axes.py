"""PyTorch side of ``axes.py`` (a): the multi-seed stage as a plain loop over the seeds.

    benchmarks/.torch-venv/bin/python benchmarks/torch_axes.py --data stage.npz --seeds 3 --repeats 1

The work of the JAX side, transcribed (``jaxunlearn/runs.py``, ``train.py``,
``unlearn/random_label.py``), on the same npz arrays:

* **original** (seed ``s``): ``torch_models.SmallCNN``; SGD, Nesterov momentum 0.9, coupled
  weight decay 5e-4 (``torch.optim.SGD``: the same update as optax ``add_decayed_weights`` then
  ``trace(nesterov=True)``); base rate 0.05, linear warm-up over ``int(0.5 * steps_per_epoch)``
  steps (``lr * (t + 1) / warmup``) then cosine to 1e-5 at ``epochs * steps_per_epoch``
  (``train.learning_rate``); batch 128, a fresh random order of the training rows every epoch,
  ``len(rows) // 128`` full batches per epoch (the partial one dropped), no augmentation;
  after every epoch the validation accuracy (BatchNorm in eval mode), and the final model is
  the first epoch of best validation accuracy (``train.fit`` with early stopping metric,
  patience None);
* **retrain** (seed ``s + 1000``): the same on the retain rows (every class but 0);
* **random_label** (seed ``s``, from seed ``s``'s original): 1 epoch, batch 128 over all
  training rows (retain and forget mixed), every forget sample's label redrawn per batch
  uniformly over the retain classes, cross-entropy mean over the batch, SGD lr 0.01 Nesterov
  momentum 0.9, weight decay 5e-4, constant rate, fresh optimiser state, BatchNorm in train mode.

Weight initialisation is PyTorch's (the seeds cannot give the same models as JAX's anyway),
so accuracies agree statistically, not bit for bit. Serves ``common.serve``'s protocol (one
timed run per ``run STAGE``).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_models  # noqa: E402

STAGES = ("original", "retrain", "random_label")
FORGET_CLASS = 0
RETRAIN_SEED_OFFSET = 1000
RECIPE = {"epochs": 6, "batch_size": 128, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
          "warmup_epochs": 0.5, "final_lr": 1e-5}
RL = {"epochs": 1, "batch_size": 128, "lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}


def lr_at(step: int, base: float, warmup: int, total: int, final: float) -> float:
    """``jaxunlearn.train.learning_rate`` for the cosine schedule (Python floats)."""
    if warmup and step < warmup:
        return base * min(1.0, (step + 1) / warmup)
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    final = min(final, base)
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


class TorchStage:
    def __init__(self, a):
        if a.threads:
            torch.set_num_threads(a.threads)
        self.threads = torch.get_num_threads()
        with np.load(a.data) as z:
            d = {k: z[k] for k in z.files}
        to_nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        self.x = to_nchw(d["train_images"])
        self.y = torch.from_numpy(d["train_labels"].astype(np.int64))
        self.val = (to_nchw(d["val_images"]), torch.from_numpy(d["val_labels"].astype(np.int64)))
        self.test = (to_nchw(d["test_images"]), d["test_labels"])
        self.mean = torch.tensor(d["mean"]).view(1, -1, 1, 1)
        self.std = torch.tensor(d["std"]).view(1, -1, 1, 1)
        self.num_classes = 10
        self.forget_rows = torch.nonzero(self.y == FORGET_CLASS).flatten()
        self.retain_rows = torch.nonzero(self.y != FORGET_CLASS).flatten()
        self.is_forget = self.y == FORGET_CLASS
        self.retain_classes = torch.unique(self.y[self.retain_rows])
        self.seeds = list(range(a.seeds))
        self.models = {}
        self.configs = list(STAGES)
        self.best_epochs = {}

    def norm(self, x_u8):
        return (x_u8.float() / 255.0 - self.mean) / self.std

    @torch.no_grad()
    def predict(self, model, x, batch=1000):
        model.eval()
        out = torch.cat([model(self.norm(x[i:i + batch])).argmax(-1) for i in range(0, len(x), batch)])
        model.train()
        return out.numpy()

    def train(self, seed, rows):
        r = RECIPE
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = torch_models.SmallCNN(self.num_classes, in_ch=1)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=r["lr"], momentum=r["momentum"], nesterov=r["nesterov"],
                              weight_decay=r["weight_decay"])
        b = r["batch_size"]
        spe = max(1, len(rows) // b)
        warmup, total = int(r["warmup_epochs"] * spe), r["epochs"] * spe
        best, best_state, best_epoch, step = -1.0, None, None, 0
        for epoch in range(r["epochs"]):
            order = rows[torch.randperm(len(rows), generator=gen)]
            for t in range(spe):
                idx = order[t * b:(t + 1) * b]
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, r["lr"], warmup, total, r["final_lr"])
                loss = F.cross_entropy(model(self.norm(self.x[idx])), self.y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
            acc = float(np.mean(self.predict(model, self.val[0]) == self.val[1].numpy()))
            if acc > best:
                best, best_state, best_epoch = acc, copy.deepcopy(model.state_dict()), epoch + 1
        model.load_state_dict(best_state)
        return model, best_epoch

    def random_label(self, seed, original):
        r = RL
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = copy.deepcopy(original)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=r["lr"], momentum=r["momentum"], nesterov=r["nesterov"],
                              weight_decay=r["weight_decay"])
        rows = torch.cat([self.retain_rows, self.forget_rows])
        b = r["batch_size"]
        spe = max(1, len(rows) // b)
        pool = self.retain_classes
        for _ in range(r["epochs"]):
            order = rows[torch.randperm(len(rows), generator=gen)]
            for t in range(spe):
                idx = order[t * b:(t + 1) * b]
                labels = self.y[idx].clone()
                f = self.is_forget[idx]
                labels[f] = pool[torch.randint(len(pool), (int(f.sum()),), generator=gen)]
                loss = F.cross_entropy(model(self.norm(self.x[idx])), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return model

    def run(self, stage):
        if stage == "original":
            out = [self.train(s, torch.arange(len(self.y))) for s in self.seeds]
        elif stage == "retrain":
            out = [self.train(s + RETRAIN_SEED_OFFSET, self.retain_rows) for s in self.seeds]
        else:
            out = [(self.random_label(s, m), None) for s, m in zip(self.seeds, self.models["original"])]
        self.models[stage] = [m for m, _ in out]
        self.best_epochs[stage] = [e for _, e in out]

    def finish(self):
        x, y = self.test
        forget = np.isin(y, [FORGET_CLASS])
        acc = {}
        for stage, models in self.models.items():
            rows = []
            for m in models:
                pred = self.predict(m, x)
                rows.append({"test": float(np.mean(pred == y)), "test_retain": float(np.mean(pred[~forget] == y[~forget])),
                             "test_forget": float(np.mean(pred[forget] == y[forget]))})
            acc[stage] = rows
        return {"framework": "torch", "version": torch.__version__, "threads": self.threads, "seeds": self.seeds,
                "accuracy": acc, "best_epochs": self.best_epochs, "recipe": RECIPE, "rl_settings": RL,
                "what": "a Python loop over the seeds per stage (torch_axes.py)"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--epochs", type=int, default=0, help="smoke tests only: override the 6 epochs")
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--repeats", type=int, default=0)
    a = p.parse_args()
    if a.epochs:
        RECIPE["epochs"] = a.epochs
    bench = TorchStage(a)
    common.serve(bench, a, {"framework": "torch", "version": torch.__version__})


if __name__ == "__main__":
    main()
