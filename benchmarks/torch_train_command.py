"""PyTorch twin of ``jaxunlearn train --dataset fashion_mnist`` (for train_command.py).

    benchmarks/.torch-venv/bin/python benchmarks/torch_train_command.py --workdir W \
        --max-train 10000 --epochs 2 [--threads 1]

The same work as the JAX command, start to summary: read the four Fashion-MNIST IDX files,
the same stratified subset and 10 % validation split (a NumPy transcription of
``jaxunlearn.data.load_dataset``: same RNG, same rows), the small CNN
(``torch_models.SmallCNN``), the recipe of ``runs.RECIPES[('fashion_mnist', 'cnn')]`` (SGD
Nesterov 0.9, weight decay 5e-4, batch 128, lr 0.05, linear warm-up over half an epoch then
cosine to 1e-5), each epoch: a shuffled pass of full batches, validation accuracy, the best
state kept (early-stopping bookkeeping), a checkpoint of model + optimiser (the last 3 kept)
and one JSON line of metrics; at the end the final model saved, test accuracy on the 10,000
test images, ``summary.json``.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import os
import pathlib
import struct
import sys
import time

T_START = time.time()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_models  # noqa: E402

FILES = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
         "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}
MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def stratified_take(labels, fraction, rng):
    idx = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        idx.append(rng.permutation(members)[: int(round(fraction * len(members)))])
    return np.concatenate(idx)


def load(data_dir, max_train, val_fraction=0.1, seed=0):
    arr = {k: read_idx(os.path.join(data_dir, f)) for k, f in FILES.items()}
    tr_x, tr_y = arr["train_images"], arr["train_labels"].astype(np.int64)
    rng = np.random.default_rng(seed)
    if max_train is not None and max_train < len(tr_y):
        keep = np.sort(stratified_take(tr_y, max_train / len(tr_y), rng))
        tr_x, tr_y = tr_x[keep], tr_y[keep]
    val = np.zeros(len(tr_y), bool)
    val[stratified_take(tr_y, val_fraction, rng)] = True
    return (tr_x[~val], tr_y[~val], tr_x[val], tr_y[val], arr["test_images"],
            arr["test_labels"].astype(np.int64))


def to_input(x_u8):
    """uint8 ``[B, 28, 28]`` tensor -> normalised float ``[B, 1, 28, 28]``."""
    return ((x_u8.float() / 255.0 - MEAN) / STD).unsqueeze(1)


def lr_at(step, base, warmup, total, final=1e-5):
    """jaxunlearn.train.learning_rate (cosine schedule with linear warm-up)."""
    if warmup and step < warmup:
        return base * min(1.0, (step + 1) / warmup)
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    f = min(final, base)
    return f + (base - f) * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def accuracy(model, x_u8, y, batch=1000):
    model.eval()
    correct = 0
    for i in range(0, len(y), batch):
        correct += (model(to_input(x_u8[i:i + batch])).argmax(-1) == y[i:i + batch]).sum().item()
    model.train()
    return correct / len(y)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", required=True)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    work = pathlib.Path(a.workdir)
    (work / "checkpoints").mkdir(parents=True, exist_ok=True)
    dev = torch.device(a.device)
    tr_x, tr_y, va_x, va_y, te_x, te_y = [torch.from_numpy(np.array(v)).to(dev) for v in load(a.data_dir, a.max_train)]
    model = torch_models.SmallCNN(10, in_ch=1).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    n, b = len(tr_y), a.batch_size
    spe = max(1, n // b)
    total, warmup = a.epochs * spe, int(0.5 * spe)
    gen = torch.Generator().manual_seed(a.seed)
    best, best_state, best_epoch, step = -1.0, None, None, 0
    t0 = time.perf_counter()
    model.train()
    for epoch in range(a.epochs):
        te = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(dev)
        losses, accs = [], []
        for t in range(spe):
            lr = lr_at(step, a.lr, warmup, total)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = perm[t * b:(t + 1) * b]
            logits = model(to_input(tr_x[idx]))
            loss = F.cross_entropy(logits, tr_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            accs.append((logits.detach().argmax(-1) == tr_y[idx]).float().mean())
            step += 1
        loss_mean = torch.stack(losses).mean().item()
        if not math.isfinite(loss_mean):
            sys.exit(f"diverged at epoch {epoch + 1}")
        ck = work / "checkpoints" / f"{step}.pt"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ck)
        for old in sorted((work / "checkpoints").glob("*.pt"), key=lambda q: int(q.stem))[:-a.keep]:
            old.unlink()
        rec = {"epoch": epoch + 1, "step": step, "time_s": time.perf_counter() - te, "loss": loss_mean,
               "accuracy": torch.stack(accs).mean().item(), "lr": lr}
        rec["val_accuracy"] = accuracy(model, va_x, va_y)
        if rec["val_accuracy"] > best:
            best, best_state, best_epoch = rec["val_accuracy"], copy.deepcopy(model.state_dict()), epoch + 1
            torch.save({"model": best_state, "score": best, "epoch": best_epoch}, work / "best.pt")
        with open(work / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
    train_time = time.perf_counter() - t0
    model.load_state_dict(best_state)
    torch.save(model.state_dict(), work / "model.pt")
    test_acc = accuracy(model, te_x, te_y)
    summary = {"test_accuracy": test_acc, "best_epoch": best_epoch, "epochs_run": a.epochs, "steps": step,
               "train_time_s": train_time, "wall_time_s": time.time() - T_START,
               "threads": torch.get_num_threads()}
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"test accuracy {100 * test_acc:.2f} % after {a.epochs} epochs ({train_time:.0f} s of training)")


if __name__ == "__main__":
    main()
