"""Training state and the network bundle every step function uses."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.data import normalize


class TrainState(NamedTuple):
    """Everything that changes during training. A pytree; no methods that compute."""

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array  # int32 scalar


@dataclasses.dataclass(frozen=True)
class Net:
    """A Flax module plus its input normalisation. Static: closed over by jitted functions.

    The module contract: ``module.apply(variables, x, train=bool)`` maps float inputs
    ``x [B, H, W, C]`` to ``(logits [B, K], features)`` where ``features`` is a dict whose
    ``"features"`` entry ``[B, D]`` is the input of the classifier head (the last linear
    layer); further entries (``"stage1"``, ...) are optional ``[B, C_s]`` features for
    layer-wise probes. The head is a ``{"kernel" [D, K], "bias" [K]}`` dict (the bias may be
    absent) at ``head_path`` in ``params``. Modules with ``nn.Dropout`` get a ``"dropout"``
    rng in training steps (see :meth:`with_rng`).

    Attributes:
      module: the Flax model, ``x -> (logits, features)``.
      mean, std: per-channel normalisation of uint8 inputs, ``(x / 255 - mean) / std``; both
        ``None``: inputs are used as they are (cast to float32), e.g. already normalised
        float images.
      bn_frozen: BatchNorm always uses running statistics (classifier-only unlearning, teachers).
      encoder_frozen: gradients of :meth:`forward` flow into the head only: every other
        parameter is read through ``lax.stop_gradient`` (classifier-only unlearning steps), so
        no gradient of a loss, nor one a loss takes itself (NegGrad+'s clipped forget
        gradient), reaches the encoder, and XLA does not compute its backward pass.
      head_buffers: if set, a :class:`jaxunlearn.cmf.CMFHead` (arrays) that replaces the linear
        head: logits are the CMF logits of the penultimate features. Set inside traced code
        with :meth:`with_head`; it is data, never a trainable parameter.
      head_path: where the linear head lives in ``params``: a tuple of keys, or a string
        with ``/`` between keys (``"head"``, ``"classifier/fc"``). Default ``("head",)``.
      rng: a PRNG key for the module's ``"dropout"`` rng stream in training-mode forwards;
        set inside traced code with :meth:`with_rng` (the train step does); None: no rngs.
    """

    module: nn.Module
    mean: Sequence[float] | None
    std: Sequence[float] | None
    bn_frozen: bool = False
    encoder_frozen: bool = False
    head_buffers: Any = None
    head_path: Any = ("head",)
    rng: Any = None

    def __post_init__(self):
        path = self.head_path
        path = tuple(p for p in path.split("/") if p) if isinstance(path, str) else tuple(path)
        if not path or not all(isinstance(p, str) for p in path):
            raise ValueError(f"head_path must name the head's keys in params, e.g. 'head' or "
                             f"('encoder', 'fc'); got {self.head_path!r}")
        object.__setattr__(self, "head_path", path)
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std (normalise uint8 inputs) or neither (use inputs as they are)")

    def init(self, key: jax.Array, image_shape: Sequence[int]):
        """Returns ``(params, batch_stats)`` for inputs of shape ``[1, *image_shape]``."""
        variables = self.module.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
        return variables["params"], variables.get("batch_stats", {})

    def init_shapes(self, image_shape: Sequence[int]):
        """``(params, batch_stats)`` as ``jax.ShapeDtypeStruct`` leaves: their shapes and dtypes
        from tracing :meth:`init`, with nothing computed or compiled (a strategy's signature, a
        tree structure to unflatten stored leaves into)."""
        return jax.eval_shape(lambda: self.init(jax.random.key(0), image_shape))

    def with_head(self, head_buffers) -> "Net":
        return dataclasses.replace(self, head_buffers=head_buffers)

    def with_rng(self, key) -> "Net":
        """The same network with ``key`` as the ``"dropout"`` rng of training-mode forwards."""
        return dataclasses.replace(self, rng=key)

    def frozen_bn(self) -> "Net":
        return dataclasses.replace(self, bn_frozen=True)

    def frozen_encoder(self) -> "Net":
        """The same network with gradients flowing into the head only (see ``encoder_frozen``)."""
        return dataclasses.replace(self, encoder_frozen=True)

    def head_only_gradient(self, params):
        """``params`` with every leaf outside the head behind ``lax.stop_gradient`` if
        ``encoder_frozen`` (values unchanged), else ``params`` as they are."""
        if not self.encoder_frozen:
            return params
        return self.replace_head(jax.lax.stop_gradient(params), self.head_params(params))

    def normalize(self, images: jax.Array) -> jax.Array:
        """Model inputs from ``images [B, H, W, C]``: uint8 normalisation, or a float32 cast."""
        return normalize(images, self.mean, self.std)

    def forward(self, params, batch_stats, images: jax.Array, train: bool):
        """``images [B, H, W, C]`` -> ``(logits [B, K], features dict, new batch_stats)``.

        ``images`` are uint8 pixels normalised with ``mean`` / ``std``, or (with both None)
        model inputs used as they are.
        """
        return self.forward_normalized(params, batch_stats, self.normalize(images), train)

    def forward_normalized(self, params, batch_stats, x: jax.Array, train: bool):
        """Like :meth:`forward` for already normalised float inputs ``x [B, H, W, C]``.

        With ``train=True`` (and BatchNorm not frozen) BatchNorm uses batch statistics and
        returns updated running statistics; otherwise it uses the running statistics, which
        come back unchanged. Dropout (with the ``"dropout"`` rng of :meth:`with_rng`) is on
        under the same condition.
        """
        variables = {"params": self.head_only_gradient(params), "batch_stats": batch_stats}
        train_bn = train and not self.bn_frozen
        kw = {"rngs": {"dropout": self.rng}} if train_bn and self.rng is not None else {}
        if train_bn and batch_stats:
            (logits, feats), upd = self.module.apply(variables, x, train=True, mutable=["batch_stats"], **kw)
            new_bs = upd["batch_stats"]
        else:
            logits, feats = self.module.apply(variables, x, train=train_bn, **kw)
            new_bs = batch_stats
        if self.head_buffers is not None:
            from jaxunlearn import cmf
            logits = cmf.cmf_logits(self.head_buffers, feats["features"])
        return logits, feats, new_bs

    # ------------------------------------------------------------------ the linear head

    def head_params(self, params) -> dict:
        """The head's parameters ``{"kernel" [D, K], "bias" [K] (optional)}`` in ``params``.

        Raises:
          ValueError: ``params`` has nothing at ``head_path`` (naming the top-level keys).
        """
        node = params
        for i, k in enumerate(self.head_path):
            if not hasattr(node, "keys") or k not in node:
                where = "/".join(self.head_path[:i]) or "params"
                have = ", ".join(map(str, node.keys())) if hasattr(node, "keys") else type(node).__name__
                raise ValueError(f"no head at {'/'.join(self.head_path)!r}: {where} has {have}; pass "
                                 "head_path naming the classifier layer (e.g. head_path='fc')")
            node = node[k]
        if not hasattr(node, "keys") or "kernel" not in node:
            raise ValueError(f"the head at {'/'.join(self.head_path)!r} has no 'kernel': it must be a "
                             "linear layer (nn.Dense) whose input is features['features']")
        return node

    def replace_head(self, params, head) -> dict:
        """``params`` with the subtree at ``head_path`` replaced by ``head`` (a new dict)."""
        self.head_params(params)  # refuses a missing head

        def put(node, path):
            return {**node, path[0]: head if len(path) == 1 else put(node[path[0]], path[1:])}

        return put(params, self.head_path)

    def head_mask(self, params, trainable_head: bool):
        """Params-shaped bools: True where a parameter may move (the head's, or all but the head's)."""
        self.head_params(params)
        n = len(self.head_path)

        def is_head(path, _):
            keys = tuple(getattr(p, "key", None) for p in path[:n])
            return (keys == self.head_path) == trainable_head

        return jax.tree_util.tree_map_with_path(is_head, params)

    def head_weights(self, params):
        """The head as ``(weights [K, D], bias [K] or None)`` host arrays."""
        import numpy as np
        head = self.head_params(params)
        bias = head.get("bias") if hasattr(head, "get") else None
        return np.asarray(head["kernel"]).T, (None if bias is None else np.asarray(bias))


def tree_equal(a, b) -> bool:
    """True iff two pytrees have the same structure and bit-identical leaves (host-side)."""
    import numpy as np
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))
