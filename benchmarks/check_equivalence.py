"""Checks that torch_models.py computes the same function as jaxunlearn's Flax models.

    .venv/bin/python benchmarks/check_equivalence.py

The JAX half (project venv) initialises each model, runs a uint8 batch through it in
inference mode (running statistics) and in training mode (batch statistics), and saves
weights, inputs and logits; the PyTorch half (benchmarks/.torch-venv, started from here)
loads the weights into the PyTorch twin and compares logits, then the gradient of the mean
cross-entropy in training mode with respect to every parameter (what one train step of the
benchmark computes), in float64 on both sides: in float32 both frameworks' ResNet-18
gradients at initialisation are ~5e-3 (relative L2) off the exact one, in different
directions, which would hide a real difference. Exit status 1 on a mismatch.
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
GRAD_TOL = 1e-6  # float64: L2 norm of the gradient difference (all parameters) / the gradient's


def jax_half(out_dir):
    import jax
    import numpy as np
    import optax
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
        labels = np.arange(len(images)) % 10

        x64 = ((images / 255.0 - np.asarray(spec["mean"])) / np.asarray(spec["std"])).astype(np.float64)

        def loss(p):
            logits, _, _ = net.forward_normalized(p, bs, x64, True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        with jax.enable_x64(True):
            grads = jax.grad(loss)(jax.tree.map(lambda a: np.asarray(a, np.float64), params))
        arrays = {"images": images, "labels": labels, "eval_logits": np.asarray(eval_logits),
                  "train_logits": np.asarray(train_logits),
                  "mean": np.asarray(spec["mean"]), "std": np.asarray(spec["std"])}
        for k, v in flatten_dict({"params": params, "batch_stats": bs, "grad": grads}, sep="/").items():
            arrays[k] = np.asarray(v)
        np.savez(os.path.join(out_dir, f"{name}.npz"), **arrays)


def torch_half(out_dir):
    import numpy as np
    import torch

    import torch_models

    pairs = []  # (torch parameter, Flax key, torch -> Flax layout) for the gradient check

    def set_conv(conv, z, key):  # HWIO -> OIHW
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(z[key].transpose(3, 2, 0, 1)))
        pairs.append((conv.weight, key, lambda g: g.transpose(2, 3, 1, 0)))

    def set_vec(param, z, key):
        param.data = torch.from_numpy(z[key])
        pairs.append((param, key, lambda g: g))

    def set_bn(bn, z, p, s):
        set_vec(bn.weight, z, f"params/{p}/scale")
        set_vec(bn.bias, z, f"params/{p}/bias")
        bn.running_mean.data = torch.from_numpy(z[f"batch_stats/{s}/mean"])
        bn.running_var.data = torch.from_numpy(z[f"batch_stats/{s}/var"])

    def set_head(lin, z, p="head"):
        lin.weight.data = torch.from_numpy(np.ascontiguousarray(z[f"params/{p}/kernel"].T))
        pairs.append((lin.weight, f"params/{p}/kernel", lambda g: g.T))
        set_vec(lin.bias, z, f"params/{p}/bias")

    ok = True
    for name, shape in MODELS.items():
        z = np.load(os.path.join(out_dir, f"{name}.npz"))
        m = torch_models.get_model(name, 10, shape)
        pairs.clear()
        if name == "cnn":
            for i, (conv, bn) in enumerate(zip(m.convs, m.bns), start=1):
                set_conv(conv.conv, z, f"params/conv{i}/kernel")
                set_bn(bn, z, f"bn{i}", f"bn{i}")
        elif name == "resnet18":
            set_conv(m.stem_conv.conv, z, "params/stem_conv/kernel")
            set_bn(m.stem_bn, z, "stem_bn", "stem_bn")
            blocks = iter(m.blocks)
            for s in range(1, 5):
                for b in range(1, 3):
                    blk, p = next(blocks), f"stage{s}_block{b}"
                    set_conv(blk.conv1.conv, z, f"params/{p}/Conv_0/kernel")
                    set_bn(blk.bn1, z, f"{p}/BatchNorm_0", f"{p}/BatchNorm_0")
                    set_conv(blk.conv2.conv, z, f"params/{p}/Conv_1/kernel")
                    set_bn(blk.bn2, z, f"{p}/BatchNorm_1", f"{p}/BatchNorm_1")
                    if blk.proj is not None:
                        set_conv(blk.proj[0], z, f"params/{p}/Conv_2/kernel")
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
        m.train(True)
        m.double()
        torch.nn.functional.cross_entropy(m(x.double()), torch.from_numpy(z["labels"]).long()).backward()
        diff2, ref2, worst, worst_key = 0.0, 0.0, 0.0, None
        for param, key, to_flax in pairs:
            ref = z[key.replace("params/", "grad/", 1)].astype(np.float64)
            d2 = float(np.sum((to_flax(param.grad.numpy()).astype(np.float64) - ref) ** 2))
            diff2, ref2 = diff2 + d2, ref2 + float(np.sum(ref ** 2))
            if d2 >= worst:
                worst, worst_key = d2, key
        err = (diff2 / ref2) ** 0.5
        good = err < GRAD_TOL and len(pairs) == sum(1 for _ in m.parameters())
        ok &= good
        print(f"{name:9s} grad  {len(pairs)} of {sum(1 for _ in m.parameters())} tensors  |grad diff| / |grad| "
              f"{err:.2e} (largest share: {worst_key})  {'OK' if good else 'MISMATCH'}")
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
