"""PyTorch side of the benchmarks (benchmarks/.torch-venv). Same interface as jax_side.py:

    benchmarks/.torch-venv/bin/python benchmarks/torch_side.py train_step --model cnn --steps 5 --repeats 5

Configurations: on CPU every benchmark is timed with ``torch.set_num_threads(1)`` (``t1``)
and with PyTorch's default thread count (``tN``, N = cores), interleaved in one process;
run.py compares JAX with the faster of the two. ``--device cuda``: one configuration.
"""

from __future__ import annotations

import copy
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402


def parse():
    p = common.base_parser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", default=None, help="comma list of thread counts to time (CPU)")
    return p.parse_args()


ARGS = parse()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_models  # noqa: E402

DEV = torch.device(ARGS.device)
DEFAULT_THREADS = torch.get_num_threads()


def thread_configs():
    if DEV.type != "cpu":
        return ["default"]
    counts = [int(t) for t in ARGS.threads.split(",")] if ARGS.threads else sorted({1, DEFAULT_THREADS})
    return [f"t{n}" for n in counts]


def use_config(cfg):
    if cfg.startswith("t"):
        torch.set_num_threads(int(cfg[1:]))


def sync(x=None):
    if DEV.type == "cuda":
        torch.cuda.synchronize()
    return x


def header(a) -> dict:
    return {"framework": "torch", "version": torch.__version__, "backend": DEV.type,
            "default_threads": DEFAULT_THREADS,
            "device_kind": torch.cuda.get_device_name() if DEV.type == "cuda" else "cpu",
            "bench": a.bench, "channels_last": a.channels_last}


def make_sgd(params, lr):
    return torch.optim.SGD(params, lr=lr, momentum=common.OPTIM["momentum"],
                           nesterov=common.OPTIM["nesterov"], weight_decay=common.OPTIM["weight_decay"])


def normalize(images_u8, mean, std):
    """uint8 ``[B, C, H, W]`` -> float32, the formula of ``jaxunlearn.data.normalize``."""
    x = images_u8.float() / 255.0
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


# ----------------------------------------------------------------------------- train step

class TrainStep:
    """``--steps`` SGD steps; each gathers its batch from one uint8 dataset tensor (NCHW)."""

    def __init__(self, a):
        self.a = a
        spec = self.spec = common.TRAIN[a.model]
        torch.manual_seed(0)
        self.fmt = torch.channels_last if a.channels_last else torch.contiguous_format
        self.model = torch_models.get_model(a.model, 10, spec["image_shape"]).to(DEV).to(memory_format=self.fmt)
        self.opt = make_sgd(self.model.parameters(), common.OPTIM["lr"])
        rng = np.random.default_rng(0)
        n = self.n = common.num_train(a.model, a.steps)
        h, w, c = spec["image_shape"]
        images = torch.from_numpy(rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)).permute(0, 3, 1, 2)
        self.images = images.contiguous().to(DEV)
        self.labels = torch.from_numpy(rng.integers(0, 10, n, dtype=np.int32)).long().to(DEV)
        self.gen = torch.Generator().manual_seed(1)
        self.perm = torch.randperm(n, generator=self.gen).to(DEV)
        self.pos = 0
        self.model.train()
        self.configs = thread_configs()

    def run(self, cfg):
        use_config(cfg)
        b = common.BATCH
        for _ in range(self.a.steps):
            if self.pos + b > self.n:
                self.perm = torch.randperm(self.n, generator=self.gen).to(DEV)
                self.pos = 0
            idx = self.perm[self.pos:self.pos + b]
            self.pos += b
            x = normalize(self.images[idx], self.spec["mean"], self.spec["std"]).contiguous(memory_format=self.fmt)
            loss = F.cross_entropy(self.model(x), self.labels[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        sync()

    def finish(self):
        return {"model": self.a.model, "batch": common.BATCH, "steps_per_run": self.a.steps,
                "images_per_run": self.a.steps * common.BATCH,
                "num_params": sum(p.numel() for p in self.model.parameters())}


# ----------------------------------------------------------------------------- peak matmul

class PeakFlops:
    def __init__(self, a):
        g = torch.Generator().manual_seed(0)
        self.n = a.matmul_n
        self.x = torch.randn(self.n, self.n, generator=g).to(DEV)
        self.y = torch.randn(self.n, self.n, generator=g).to(DEV)
        if DEV.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False  # float32, as JAX's HIGHEST
        self.configs = thread_configs()

    def run(self, cfg):
        use_config(cfg)
        for _ in range(3):
            torch.mm(self.x, self.y)
        sync()

    def finish(self):
        return {"matmul_n": self.n, "flops_per_run": 3 * 2.0 * self.n ** 3}


# ----------------------------------------------------------------------------- evaluation suite

class EvalSuite:
    """The paper's protocol: standardised features, SGD linear probe (lr 0.01, momentum 0.9,
    20 epochs, batch 128, best epoch on a 10 % hold-out), NCC, NC1 = tr(S_W pinv(S_B)) / K."""

    def __init__(self, a):
        tx, ty, vx, vy = common.make_features()
        self.tx, self.ty = torch.from_numpy(tx).to(DEV), torch.from_numpy(ty).long().to(DEV)
        self.vx, self.vy = torch.from_numpy(vx).to(DEV), torch.from_numpy(vy).long().to(DEV)
        self.parts = {"probe_s": [], "ncc_s": [], "nc1_s": []}
        self.configs = thread_configs()
        self.out = {}

    def probe(self):
        e = common.EVAL
        k = e["num_classes"]
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        mean, std = self.tx.mean(0), self.tx.std(0, unbiased=False).clamp_min(1e-6)
        x, v = (self.tx - mean) / std, (self.vx - mean) / std
        n = x.shape[0]
        perm = torch.randperm(n, generator=g).to(DEV)
        n_hold = round(e["holdout"] * n)
        hx, hy = x[perm[:n_hold]], self.ty[perm[:n_hold]]
        trx, try_ = x[perm[n_hold:]], self.ty[perm[n_hold:]]
        lin = torch.nn.Linear(x.shape[1], k).to(DEV)
        opt = torch.optim.SGD(lin.parameters(), lr=e["lr"], momentum=e["momentum"])
        best, best_state = -1.0, None
        for _ in range(e["epochs"]):
            order = torch.randperm(trx.shape[0], generator=g).to(DEV)
            for i in range(0, trx.shape[0], e["batch"]):
                idx = order[i:i + e["batch"]]
                loss = F.cross_entropy(lin(trx[idx]), try_[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                acc = (lin(hx).argmax(1) == hy).float().mean().item()
            if acc > best:
                best, best_state = acc, copy.deepcopy(lin.state_dict())
        lin.load_state_dict(best_state)
        with torch.no_grad():
            return (lin(v).argmax(1) == self.vy).float().mean().item()

    def ncc(self):
        k = common.EVAL["num_classes"]
        onehot = F.one_hot(self.ty, k).float()
        means = onehot.T @ self.tx / onehot.sum(0)[:, None]
        pred = torch.cdist(self.vx, means).argmin(1)
        return (pred == self.vy).float().mean().item()

    def nc1(self):
        k = common.EVAL["num_classes"]
        h, y = self.tx.double(), self.ty
        onehot = F.one_hot(y, k).double()
        means = onehot.T @ h / onehot.sum(0)[:, None]
        mu_g = h.mean(0)
        within = h - means[y]
        s_w = within.T @ within / h.shape[0]
        m = means - mu_g
        s_b = m.T @ m / k
        return (torch.trace(s_w @ torch.linalg.pinv(s_b, hermitian=True)) / k).item()

    def run(self, cfg):
        use_config(cfg)
        t0 = time.perf_counter()
        acc = self.probe()
        t1 = time.perf_counter()
        ncc = self.ncc()
        t2 = time.perf_counter()
        nc1 = self.nc1()
        sync()
        t3 = time.perf_counter()
        for k, v in zip(self.parts, (t1 - t0, t2 - t1, t3 - t2)):
            self.parts[k].append(v)
        self.out = {"probe_acc": acc, "ncc_acc": ncc, "nc1": nc1}

    def finish(self):
        return {**self.out, "parts_median_s": {k: float(np.median(v)) for k, v in self.parts.items() if v},
                "what": "standardise + SGD probe with early stopping + NCC (cdist) + NC1 "
                        "(float64, torch.linalg.pinv)", **common.EVAL}


# ----------------------------------------------------------------------------- sweeps

def digits_tensors(a):
    d = common.load_digits_npz(a.digits)
    from_u8 = lambda im: torch.from_numpy(im).permute(0, 3, 1, 2).contiguous().to(DEV)  # noqa: E731
    return (from_u8(d["train_images"]), torch.from_numpy(d["train_labels"]).long().to(DEV),
            from_u8(d["test_images"]), torch.from_numpy(d["test_labels"]).long().to(DEV))


DIGITS_MEAN, DIGITS_STD = (0.30,), (0.38,)  # jaxunlearn.data.NORMALISATION["digits"]


def train_mlp(model, images, labels, indices, epochs, lr, seed, opt=None):
    """``epochs`` epochs of SGD over ``indices`` (last partial batch dropped, like the library)."""
    g = torch.Generator().manual_seed(seed)
    opt = opt or make_sgd(model.parameters(), lr)
    b = common.SWEEP["batch"]
    n = len(indices)
    for _ in range(epochs):
        order = indices[torch.randperm(n, generator=g).to(DEV)]
        for i in range(n // b):
            idx = order[i * b:(i + 1) * b]
            x = normalize(images[idx], DIGITS_MEAN, DIGITS_STD)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model


def test_pred(model, images):
    with torch.no_grad():
        return model(normalize(images, DIGITS_MEAN, DIGITS_STD)).argmax(1)


class SweepSeeds:
    """8 sequential seeds of digits-MLP training."""

    def __init__(self, a):
        self.tx, self.ty, self.vx, self.vy = digits_tensors(a)
        self.configs = thread_configs()
        self.acc = {}

    def run(self, cfg):
        use_config(cfg)
        s = common.SWEEP
        accs = []
        for seed in range(s["seeds"]):
            torch.manual_seed(seed)
            m = torch_models.MLP(64, 10, common.MLP_WIDTHS).to(DEV)
            train_mlp(m, self.tx, self.ty, torch.arange(len(self.ty), device=DEV), s["seed_epochs"], s["lr"], seed)
            accs.append((test_pred(m, self.vx) == self.vy).float().mean().item())
        sync()
        self.acc[cfg] = float(np.mean(accs))

    def finish(self):
        s = common.SWEEP
        return {"seeds": s["seeds"], "epochs": s["seed_epochs"], "num_train": len(self.ty),
                "mean_test_acc": self.acc, "what": "8 sequential runs"}


class SweepUnlearn:
    """Retain-set fine-tuning for each of the 10 classes, 10 sequential runs."""

    def __init__(self, a):
        s = common.SWEEP
        self.tx, self.ty, self.vx, self.vy = digits_tensors(a)
        torch.manual_seed(0)
        self.original = train_mlp(torch_models.MLP(64, 10, common.MLP_WIDTHS).to(DEV), self.tx, self.ty,
                                  torch.arange(len(self.ty), device=DEV), s["original_epochs"], s["lr"], 0)
        self.retain = [torch.nonzero(self.ty != c).flatten() for c in range(10)]
        self.configs = thread_configs()
        self.results = {}

    def run(self, cfg):
        use_config(cfg)
        s = common.SWEEP
        models = []
        for c in range(10):
            m = copy.deepcopy(self.original)
            models.append(train_mlp(m, self.tx, self.ty, self.retain[c], s["unlearn_epochs"],
                                    s["unlearn_lr"], 100 + c))
        sync()
        self.results[cfg] = models

    def finish(self):
        s = common.SWEEP
        summary = {}
        for cfg, models in self.results.items():
            fa, ra = [], []
            for c, m in enumerate(models):
                ok = test_pred(m, self.vx) == self.vy
                fa.append(ok[self.vy == c].float().mean().item())
                ra.append(ok[self.vy != c].float().mean().item())
            summary[cfg] = {"forget_acc": float(np.mean(fa)), "retain_acc": float(np.mean(ra))}
        orig = (test_pred(self.original, self.vx) == self.vy).float().mean().item()
        return {"classes": 10, "epochs": s["unlearn_epochs"], "lr": s["unlearn_lr"],
                "original_test_acc": orig, "after_unlearning": summary,
                "what": "retain-set fine-tuning, 10 sequential runs"}


BENCHES = {"train_step": TrainStep, "peak_flops": PeakFlops, "eval": EvalSuite,
           "sweep_seeds": SweepSeeds, "sweep_unlearn": SweepUnlearn}


def main():
    bench = BENCHES[ARGS.bench](ARGS)
    common.serve(bench, ARGS, header(ARGS))


if __name__ == "__main__":
    main()
