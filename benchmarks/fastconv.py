"""Benchmark-only drop-ins for Flax layers, to measure changes before they go into the library.

* :func:`conv_general_dilated` -- ``lax.conv_general_dilated`` whose weight gradient is
  computed with GEMMs (per kernel row, the ``kw`` column shifts of the padded input are
  concatenated and contracted with the output gradient over ``B, Ho, Wo``). Written because
  XLA:CPU's weight-gradient convolution was several times slower than its forward
  convolution. That slowness turned out to come from YNNPACK's convolution path, and
  ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-INDIVIDUAL_CONVOLUTION`` fixes it at the
  root, which beats this patch (see README.md, attempts). Use with Flax:
  ``nn.Conv(..., conv_general_dilated=fastconv.conv_general_dilated)``; only NHWC/HWIO, no
  dilation, one feature group take the fast path.
* :func:`max_pool_reshape` -- ``nn.max_pool`` for non-overlapping windows as reshape + max,
  whose gradient is elementwise instead of XLA:CPU's variadic reduce-window with index
  tracking.

``patch_flax_conv`` / ``patch_flax_max_pool`` swap them into ``flax.linen`` for the
library's unchanged models (``jax_side.py --patch conv,pool``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def _is_nhwc(dn) -> bool:
    if dn is None:
        return False
    if isinstance(dn, tuple) and all(isinstance(s, str) for s in dn):
        return tuple(dn) == _NHWC
    # ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))
    try:
        return tuple(map(tuple, dn)) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    except TypeError:
        return False


def _conv(x, w, strides, pads, precision):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC, precision=precision)


def _weight_grad(x, g, kh, kw, strides, pads, precision):
    sh, sw = strides
    _, ho, wo, _ = g.shape
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    rows = []
    for i in range(kh):
        xr = xp[:, i:i + (ho - 1) * sh + 1:sh]
        cols = [xr[:, :, j:j + (wo - 1) * sw + 1:sw, :] for j in range(kw)]
        p = cols[0] if kw == 1 else jnp.concatenate(cols, axis=-1)  # [B, Ho, Wo, kw*C]
        rows.append(jnp.einsum("bhwk,bhwd->kd", p, g, precision=precision))
    return jnp.stack(rows).reshape(kh, kw, x.shape[-1], g.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _fast_conv(x, w, strides, pads, precision):
    return _conv(x, w, strides, pads, precision)


def _fast_conv_fwd(x, w, strides, pads, precision):
    return _conv(x, w, strides, pads, precision), (x, w)


def _fast_conv_bwd(strides, pads, precision, res, g):
    x, w = res
    _, vjp_x = jax.vjp(lambda x_: _conv(x_, w, strides, pads, precision), x)
    (dx,) = vjp_x(g)
    dw = _weight_grad(x, g, w.shape[0], w.shape[1], strides, pads, precision)
    return dx, dw.astype(w.dtype)


_fast_conv.defvjp(_fast_conv_fwd, _fast_conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
    """``lax.conv_general_dilated`` with a GEMM weight gradient (same signature)."""
    plain = ((lhs_dilation is None or all(d == 1 for d in lhs_dilation))
             and (rhs_dilation is None or all(d == 1 for d in rhs_dilation))
             and feature_group_count == 1 and batch_group_count == 1
             and preferred_element_type is None and lhs.ndim == 4 and _is_nhwc(dimension_numbers))
    if not plain:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count,
                                        precision, preferred_element_type)
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    else:
        pads = padding
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    prec = precision if precision is None or isinstance(precision, (str, lax.Precision)) else tuple(precision)
    return _fast_conv(lhs, rhs, strides, pads, prec)


def patch_flax_conv() -> None:
    """Makes every ``flax.linen.Conv`` built afterwards use :func:`conv_general_dilated`.

    For benchmarking the library's models unchanged; the library itself would pass
    ``conv_general_dilated=`` where it builds its convolutions.
    """
    import flax.linen as nn
    orig = nn.Conv
    if getattr(orig, "_fastconv", False):
        return

    class Conv(orig):
        _fastconv = True

        def __post_init__(self):
            if self.conv_general_dilated is None and self.conv_general_dilated_cls is None:
                object.__setattr__(self, "conv_general_dilated", conv_general_dilated)
            super().__post_init__()

    Conv.__name__ = "Conv"
    nn.Conv = Conv


def max_pool_reshape(inputs, window_shape, strides=None, padding="VALID"):
    """``nn.max_pool`` for non-overlapping windows (``strides == window_shape``, VALID) as a
    reshape + ``max``; its gradient is elementwise instead of XLA:CPU's variadic reduce-window
    with index tracking. Anything else falls back to ``flax.linen.max_pool``.

    Ties inside a window: ``max_pool``'s gradient goes to one element, ``jnp.max``'s is split
    evenly among the tied elements (after a ReLU, ties are zeros whose gradient is zero anyway).
    """
    import flax.linen as nn
    strides = tuple(strides) if strides is not None else tuple(window_shape)
    if tuple(window_shape) != strides or padding != "VALID" or inputs.ndim != 4:
        return _orig_max_pool(inputs, window_shape, strides, padding)
    (wh, ww) = window_shape
    b, h, w, c = inputs.shape
    ho, wo = h // wh, w // ww
    x = inputs[:, :ho * wh, :wo * ww, :].reshape(b, ho, wh, wo, ww, c)
    return jnp.max(x, axis=(2, 4))


_orig_max_pool = None


def patch_flax_max_pool() -> None:
    """Makes ``flax.linen.max_pool`` use :func:`max_pool_reshape` (benchmark variant)."""
    global _orig_max_pool
    import flax.linen as nn
    if _orig_max_pool is None:
        _orig_max_pool = nn.max_pool
        nn.max_pool = max_pool_reshape
