"""Data parallelism with ``jax.jit`` and named shardings, on one host or a multi-host pod.

Parameters and optimiser state are replicated (``P()``); every batched array is sharded
along its leading axis over the mesh axis ``"data"`` (``P("data")``). XLA inserts the
gradient all-reduce, and BatchNorm statistics are computed over the global batch, so a
sharded step equals the single-device step up to float reduction order.

Multi-host (TPU pods): call :func:`initialize_distributed` first on every host; each host
then loads the full dataset (identical arrays), which :func:`replicate` places as one global
replicated array, and the same program runs on every host.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed() -> None:
    """``jax.distributed.initialize()`` when running on several hosts (no-op otherwise).

    Detected through the usual cluster environment (TPU pod metadata, SLURM, or
    ``JAX_COORDINATOR_ADDRESS``); set ``JAXUNLEARN_DISTRIBUTED=1`` to force it.
    """
    if os.environ.get("JAXUNLEARN_DISTRIBUTED") == "1" or os.environ.get("JAX_COORDINATOR_ADDRESS") \
            or os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0:
        jax.distributed.initialize()


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh ``("data",)`` over ``num_devices`` devices (all by default), Auto axis type."""
    n = num_devices or jax.device_count()
    if n > jax.device_count():
        raise ValueError(f"asked for {n} devices, but only {jax.device_count()} are visible")
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:n])


def batch_sharding(mesh) -> NamedSharding:
    """Sharding of batched arrays: leading axis split over ``"data"``."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicate(tree, mesh):
    """Places every leaf of ``tree`` (host or device arrays) replicated on ``mesh``.

    On several processes each must pass identical values; uses
    ``jax.make_array_from_process_local_data`` so it works across hosts.
    """
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def check_batch_size(batch_size: int, mesh) -> None:
    n = mesh.shape[DATA_AXIS]
    if batch_size % n:
        raise ValueError(f"batch size {batch_size} is not divisible by the {n} devices of the mesh")
