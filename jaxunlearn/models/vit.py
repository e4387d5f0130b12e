"""Vision Transformer (ViT-S/16 by default): patch embedding, CLS token, pre-norm blocks."""

import flax.linen as nn
import jax.numpy as jnp


class EncoderBlock(nn.Module):
    dim: int
    heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(y, y)
        y = nn.LayerNorm()(x)
        y = nn.Dense(self.dim)(nn.gelu(nn.Dense(self.mlp_dim)(y)))
        return x + y


class ViT(nn.Module):
    """ViT. Features: ``stage{i}`` = mean token of block ``i`` ``[B, dim]``; ``features`` = the
    CLS token after the final LayerNorm ``[B, dim]``.

    Works for any image size divisible by ``patch`` (ViT-S/16 is meant for 224 x 224).
    """

    num_classes: int
    patch: int = 16
    dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_dim: int = 1536

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = x.shape[0]
        x = nn.Conv(self.dim, (self.patch, self.patch), self.patch, name="patch_embed")(x)
        x = x.reshape(b, -1, self.dim)
        cls = self.param("cls", nn.initializers.zeros, (1, 1, self.dim))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.dim)), x], axis=1)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, x.shape[1], self.dim))
        x = x + pos
        feats = {}
        for i in range(self.depth):
            x = EncoderBlock(self.dim, self.heads, self.mlp_dim, name=f"block{i + 1}")(x)
            feats[f"stage{i + 1}"] = jnp.mean(x, axis=1)
        x = nn.LayerNorm(name="final_norm")(x)
        feats["features"] = x[:, 0]
        return nn.Dense(self.num_classes, name="head")(feats["features"]), feats


def vit_s16(num_classes: int) -> ViT:
    return ViT(num_classes)
