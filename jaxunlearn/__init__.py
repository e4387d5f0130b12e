"""jaxunlearn: machine unlearning in JAX that looks inside the model."""

import os as _os

# XLA:CPU in jaxlib 0.12 runs convolutions through YNNPACK; its weight-gradient convolutions
# made a ResNet-18 CPU train step more than twice as expensive as with XLA's own (Eigen)
# convolutions (benchmarks/README.md, attempts). The flag must be set before JAX creates its
# CPU backend, so it is added here, at import; it does not affect GPU/TPU. XLA aborts on flags
# it does not know, so only for the jaxlib version it was measured with. Set
# JAXUNLEARN_KEEP_XLA_FLAGS=1 to leave XLA_FLAGS alone.
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-INDIVIDUAL_CONVOLUTION"


def _jaxlib_minor() -> tuple:
    try:
        from importlib.metadata import version
        return tuple(int(p) for p in version("jaxlib").split(".")[:2])
    except Exception:  # noqa: BLE001 - no jaxlib metadata: leave the flags alone
        return (0, 0)


if (_os.environ.get("JAXUNLEARN_KEEP_XLA_FLAGS") != "1" and _jaxlib_minor() == (0, 12)
        and "xla_cpu_experimental_ynn_fusion_type" not in _os.environ.get("XLA_FLAGS", "")):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + " " + _YNN_FLAG).strip()

__version__ = "0.1.0"
