"""PyTorch side of ``benchmarks/pool.py``: the same pool built by a loop of PyTorch models.

Run by ``pool.py`` in ``benchmarks/.torch-venv`` (one process per timed run)::

  benchmarks/.torch-venv/bin/python benchmarks/pool_torch.py --digits DIGITS.npz --spec SPEC.json --out OUT.json

``SPEC.json`` (written by ``pool.py`` from the JAX pool's own recipe and method settings) fixes
everything both sides share: the retain / forget rows, the stored rows, the recipe of the
retrained models (epochs, batch, peak lr, cosine to ``final_lr``, Nesterov SGD, weight decay,
validation-best epoch) and Random Label's settings (epochs, batch over retain + forget, lr,
constant rate, labels of forget rows redrawn uniformly over the retain classes every batch).
The original model is the JAX pool's original, loaded into the PyTorch MLP (same weights).
For each of N retrained and N unlearned models it stores the logits on the forget / retain /
test rows and the retain / forget / test accuracies, as the JAX pool does.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

import common
import torch_models

MEAN, STD = (0.30,), (0.38,)  # jaxunlearn.data.NORMALISATION["digits"]


def normalize(u8):
    x = u8.float() / 255.0
    return ((x - MEAN[0]) / STD[0]).reshape(u8.shape[0], -1)


def sgd(model, lr, momentum, wd, nesterov):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd, nesterov=nesterov)


def cosine(step, total, lr, final):
    p = min(max(step / max(total, 1), 0.0), 1.0)
    final = min(final, lr)
    return final + (lr - final) * 0.5 * (1.0 + math.cos(math.pi * p))


def train_retrained(x, y, rows, val_x, val_y, r, seed):
    """One retrained model: r["epochs"] epochs over ``rows``, cosine, best validation epoch kept."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    m = torch_models.MLP(64, 10, (256, 128))
    opt = sgd(m, r["lr"], r["momentum"], r["weight_decay"], True)
    b, n = r["batch_size"], len(rows)
    spe = max(1, n // b)
    total = spe * r["epochs"]
    best, best_state, step = -1.0, None, 0
    for _ in range(r["epochs"]):
        order = rows[torch.randperm(n, generator=g)]
        for i in range(spe):
            for group in opt.param_groups:
                group["lr"] = cosine(step, total, r["lr"], r["final_lr"])
            idx = order[i * b:(i + 1) * b]
            loss = F.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        with torch.no_grad():
            acc = (m(val_x).argmax(1) == val_y).float().mean().item()
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in m.state_dict().items()}
    m.load_state_dict(best_state)
    return m


def random_label(original, x, y, retain, forget, retain_classes, u, seed):
    """Random Label: u["epochs"] epochs over retain + forget, forget labels redrawn each batch."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    m = torch_models.MLP(64, 10, (256, 128))
    m.load_state_dict(original.state_dict())
    opt = sgd(m, u["lr"], u["momentum"], u["weight_decay"], u["nesterov"])
    rows = torch.cat([retain, forget])
    is_forget = torch.zeros(len(y), dtype=torch.bool)
    is_forget[forget] = True
    b, n = u["batch_size"], len(rows)
    for _ in range(u["epochs"]):
        order = rows[torch.randperm(n, generator=g)]
        for i in range(max(1, n // b)):
            idx = order[i * b:(i + 1) * b]
            labels = y[idx].clone()
            f = is_forget[idx]
            draw = retain_classes[torch.randint(len(retain_classes), (int(f.sum()),), generator=g)]
            labels[f] = draw
            loss = F.cross_entropy(m(x[idx]), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return m


def outputs(m, x_train, y_train, x_test, y_test, spec):
    with torch.no_grad():
        tr, te = m(x_train), m(x_test)
    rows = spec["rows"]
    acc = lambda lg, lab: float((lg.argmax(1) == lab).float().mean())  # noqa: E731
    r, f = torch.as_tensor(spec["retain"]), torch.as_tensor(spec["forget"])
    return {"logits": [tr[rows["forget"]].numpy(), tr[rows["retain"]].numpy(), te[rows["test"]].numpy()],
            "acc": {"retain": acc(tr[r], y_train[r]), "forget": acc(tr[f], y_train[f]), "test": acc(te, y_test)}}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--digits", required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    spec = json.load(open(a.spec))
    d = common.load_digits_npz(a.digits)
    x = normalize(torch.from_numpy(d["train_images"]).permute(0, 3, 1, 2))
    y = torch.from_numpy(d["train_labels"]).long()
    vx = normalize(torch.from_numpy(d["val_images"]).permute(0, 3, 1, 2))
    vy = torch.from_numpy(d["val_labels"]).long()
    tx = normalize(torch.from_numpy(d["test_images"]).permute(0, 3, 1, 2))
    ty = torch.from_numpy(d["test_labels"]).long()
    retain, forget = torch.as_tensor(spec["retain"]), torch.as_tensor(spec["forget"])
    retain_classes = torch.as_tensor(sorted(set(d["train_labels"][spec["retain"]].tolist())))
    original = torch_models.MLP(64, 10, (256, 128))
    w = np.load(spec["original_npz"])
    sd = {"body.0.weight": w["dense1_kernel"].T, "body.0.bias": w["dense1_bias"],
          "body.2.weight": w["dense2_kernel"].T, "body.2.bias": w["dense2_bias"],
          "head.weight": w["head_kernel"].T, "head.bias": w["head_bias"]}
    original.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
                             if set(sd) == set(original.state_dict()) else _map(original, w))
    t_setup = time.perf_counter() - t0
    times, accs = {"retrained": [], "unlearned": []}, {"retrained": [], "unlearned": []}
    t1 = time.perf_counter()
    for i in range(spec["models"]):
        t = time.perf_counter()
        m = train_retrained(x, y, retain, vx, vy, spec["recipe"], 1000 + i)
        o = outputs(m, x, y, tx, ty, spec)
        times["retrained"].append(time.perf_counter() - t)
        accs["retrained"].append(o["acc"])
    for i in range(spec["models"]):
        t = time.perf_counter()
        m = random_label(original, x, y, retain, forget, retain_classes, spec["unlearn"], i)
        o = outputs(m, x, y, tx, ty, spec)
        times["unlearned"].append(time.perf_counter() - t)
        accs["unlearned"].append(o["acc"])
    pool_s = time.perf_counter() - t1
    mean = lambda side, k: float(np.mean([r[k] for r in accs[side]]))  # noqa: E731
    json.dump({"pool_s": pool_s, "setup_s": t_setup, "threads": a.threads, "version": torch.__version__,
               "time_per_model_s": {k: float(np.mean(v)) for k, v in times.items()},
               "accuracy": {s: {k: mean(s, k) for k in ("retain", "forget", "test")} for s in accs}},
              open(a.out, "w"))


def _map(model, w):
    """Flax MLP weights -> the PyTorch MLP's state dict, matched by order and shape."""
    keys = list(model.state_dict())
    flax = [w["dense1_kernel"].T, w["dense1_bias"], w["dense2_kernel"].T, w["dense2_bias"],
            w["head_kernel"].T, w["head_bias"]]
    out = {}
    for k, v in zip(keys, flax):
        if tuple(model.state_dict()[k].shape) != v.shape:
            raise ValueError(f"weight {k}: shape {tuple(model.state_dict()[k].shape)} vs {v.shape}")
        out[k] = torch.from_numpy(np.ascontiguousarray(v))
    return out


if __name__ == "__main__":
    main()
