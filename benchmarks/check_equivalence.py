"""Checks that torch_models.py computes the same function as jaxunlearn's Flax models.

    .venv/bin/python benchmarks/check_equivalence.py

The JAX half (project venv) initialises each model, runs a uint8 batch through it in
inference mode (running statistics) and in training mode (batch statistics), and saves
weights, inputs and logits; the PyTorch half (benchmarks/.torch-venv, started from here)
loads the weights into the PyTorch twin and compares logits. Exit status 1 on a mismatch.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

MODELS = {"cnn": (28, 28, 1), "resnet18": (32, 32, 3), "mlp": (8, 8, 1)}
TOL = 2e-4  # max |logit difference| relative to max |logit|


def jax_half(out_dir):
    import jax
    import numpy as np
    from flax.traverse_util import flatten_dict

    import common
    from jaxunlearn.models import get_model
    from jaxunlearn.state import Net

    for name, shape in MODELS.items():
        spec = common.TRAIN.get(name, {"mean": (0.30,), "std": (0.38,)})
        net = Net(get_model(name, 10), spec["mean"], spec["std"])
        params, bs = net.init(jax.random.key(0), shape)
        # non-trivial running statistics
        bs = jax.tree.map(lambda x: x + 0.1 * jax.random.uniform(jax.random.key(1), x.shape), bs)
        images = np.random.default_rng(0).integers(0, 256, (16, *shape), dtype=np.uint8)
        eval_logits, _, _ = net.forward(params, bs, images, False)
        train_logits, _, _ = net.forward(params, bs, images, True)
        arrays = {"images": images, "eval_logits": np.asarray(eval_logits),
                  "train_logits": np.asarray(train_logits),
                  "mean": np.asarray(spec["mean"]), "std": np.asarray(spec["std"])}
        for k, v in flatten_dict({"params": params, "batch_stats": bs}, sep="/").items():
            arrays[k] = np.asarray(v)
        np.savez(os.path.join(out_dir, f"{name}.npz"), **arrays)


def torch_half(out_dir):
    import numpy as np
    import torch

    import torch_models

    def conv_w(k):  # HWIO -> OIHW
        return torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))

    def set_bn(bn, z, p, s):
        bn.weight.data = torch.from_numpy(z[f"params/{p}/scale"])
        bn.bias.data = torch.from_numpy(z[f"params/{p}/bias"])
        bn.running_mean.data = torch.from_numpy(z[f"batch_stats/{s}/mean"])
        bn.running_var.data = torch.from_numpy(z[f"batch_stats/{s}/var"])

    def set_head(lin, z, p="head"):
        lin.weight.data = torch.from_numpy(np.ascontiguousarray(z[f"params/{p}/kernel"].T))
        lin.bias.data = torch.from_numpy(z[f"params/{p}/bias"])

    ok = True
    for name, shape in MODELS.items():
        z = np.load(os.path.join(out_dir, f"{name}.npz"))
        m = torch_models.get_model(name, 10, shape)
        if name == "cnn":
            for i, (conv, bn) in enumerate(zip(m.convs, m.bns), start=1):
                conv.conv.weight.data = conv_w(z[f"params/conv{i}/kernel"])
                set_bn(bn, z, f"bn{i}", f"bn{i}")
        elif name == "resnet18":
            m.stem_conv.conv.weight.data = conv_w(z["params/stem_conv/kernel"])
            set_bn(m.stem_bn, z, "stem_bn", "stem_bn")
            blocks = iter(m.blocks)
            for s in range(1, 5):
                for b in range(1, 3):
                    blk, p = next(blocks), f"stage{s}_block{b}"
                    blk.conv1.conv.weight.data = conv_w(z[f"params/{p}/Conv_0/kernel"])
                    set_bn(blk.bn1, z, f"{p}/BatchNorm_0", f"{p}/BatchNorm_0")
                    blk.conv2.conv.weight.data = conv_w(z[f"params/{p}/Conv_1/kernel"])
                    set_bn(blk.bn2, z, f"{p}/BatchNorm_1", f"{p}/BatchNorm_1")
                    if blk.proj is not None:
                        blk.proj[0].weight.data = conv_w(z[f"params/{p}/Conv_2/kernel"])
                        set_bn(blk.proj[1], z, f"{p}/BatchNorm_2", f"{p}/BatchNorm_2")
        else:
            for i, layer in enumerate([l for l in m.body if isinstance(l, torch.nn.Linear)], start=1):
                set_head(layer, z, f"dense{i}")
        set_head(m.head, z)
        x = torch.from_numpy(z["images"]).permute(0, 3, 1, 2).float() / 255.0
        x = (x - torch.tensor(z["mean"]).float().view(1, -1, 1, 1)) / torch.tensor(z["std"]).float().view(1, -1, 1, 1)
        for mode, ref in (("eval", z["eval_logits"]), ("train", z["train_logits"])):
            m.train(mode == "train")
            with torch.no_grad():
                got = m(x).numpy()
            err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-6))
            good = err < TOL
            ok &= good
            n_params = sum(p.numel() for p in m.parameters())
            print(f"{name:9s} {mode:5s} params {n_params:9d}  max rel logit diff {err:.2e}  "
                  f"{'OK' if good else 'MISMATCH'}")
    return ok


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--torch":
        sys.exit(0 if torch_half(sys.argv[2]) else 1)
    with tempfile.TemporaryDirectory() as tmp:
        jax_half(tmp)
        torch_py = HERE / ".torch-venv" / "bin" / "python"
        sys.exit(subprocess.run([str(torch_py), __file__, "--torch", tmp]).returncode)


if __name__ == "__main__":
    main()
