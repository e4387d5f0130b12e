"""Data parallelism with ``jax.jit`` and named shardings, on one process or several (TPU pods).

Parameters and optimiser state are replicated (``P()``); every batched array is sharded
along its leading axis over the mesh axis ``"data"`` (``P("data")``). XLA inserts the
gradient all-reduce, and BatchNorm statistics are computed over the global batch, so a
sharded step equals the single-device step up to float reduction order.

Several processes (one per host of a TPU pod, or several on one machine for testing):
:func:`initialize_distributed` runs first in every process, before any JAX computation.
Every process then loads the same dataset and runs the same program; :func:`replicate`
turns each process's identical host arrays into one global replicated array
(``jax.make_array_from_process_local_data``), and batches are gathered from it inside jit,
so every device computes on its own shard of each global batch. Only process 0 writes files
(:func:`on_primary`); the others wait for it at a barrier, so they never read a half-written
file and learn when process 0 failed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from typing import Callable

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAXUNLEARN_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXUNLEARN_PROCESS_ID"
ENV_PEER_TIMEOUT = "JAXUNLEARN_PEER_TIMEOUT"
DEFAULT_PEER_TIMEOUT = 120.0


class DistributedError(RuntimeError):
    """A multi-process run cannot go on (another process failed, or the settings disagree)."""


# ----------------------------------------------------------------------------- processes

@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How this process joins a multi-process run.

    ``mode``: ``"none"`` (one process), ``"explicit"`` (coordinator, process count and id
    given) or ``"auto"`` (``jax.distributed.initialize()`` detects them: Cloud TPU pods,
    SLURM, Open MPI). ``timeout``: seconds to wait for every process to join, and for a silent
    (dead) peer before this process is ended.
    """

    mode: str = "none"
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    timeout: float = DEFAULT_PEER_TIMEOUT


def _env_int(env, name: str) -> int | None:
    v = env.get(name)
    if v in (None, ""):
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{name}={v!r} is not an integer") from None


def distributed_config(coordinator: str | None = None, num_processes: int | None = None,
                       process_id: int | None = None, timeout: float | None = None,
                       environ=None) -> DistributedConfig:
    """Resolves command-line values, then environment variables, into a :class:`DistributedConfig`.

    Nothing touches JAX here. Values: ``coordinator`` (``HOST:PORT`` of process 0, else
    ``$JAX_COORDINATOR_ADDRESS``), ``num_processes`` (else ``$JAXUNLEARN_NUM_PROCESSES``),
    ``process_id`` (else ``$JAXUNLEARN_PROCESS_ID``), ``timeout`` (else
    ``$JAXUNLEARN_PEER_TIMEOUT``, else 120 s). A process count or id (flag or
    ``JAXUNLEARN_*`` variable) asks for an explicit set-up, which needs all three. Without
    them, ``JAXUNLEARN_DISTRIBUTED=1`` (a Cloud TPU pod), ``$JAX_COORDINATOR_ADDRESS`` alone
    (e.g. SLURM) or ``TPU_WORKER_HOSTNAMES`` naming several hosts (a TPU pod on GKE) select
    JAX's auto-detection. One process (``num_processes == 1``) needs no set-up.

    Raises:
      ValueError: incomplete or inconsistent values (the message names the fix).
    """
    env = os.environ if environ is None else environ
    if timeout is None:
        try:
            timeout = float(env.get(ENV_PEER_TIMEOUT) or DEFAULT_PEER_TIMEOUT)
        except ValueError:
            raise ValueError(f"{ENV_PEER_TIMEOUT}={env.get(ENV_PEER_TIMEOUT)!r} is not a number of seconds") from None
    if not 0 < timeout < float("inf"):
        raise ValueError(f"--peer-timeout must be a positive number of seconds, got {timeout}")
    n = num_processes if num_processes is not None else _env_int(env, ENV_NUM_PROCESSES)
    pid = process_id if process_id is not None else _env_int(env, ENV_PROCESS_ID)
    addr = coordinator or env.get(ENV_COORDINATOR) or None
    if coordinator or n is not None or pid is not None:
        missing = [name for name, v in (("--coordinator HOST:PORT", addr), ("--num-processes N", n),
                                        ("--process-id I", pid)) if v is None]
        if missing:
            raise ValueError(f"a multi-process run needs {', '.join(missing)} too (or the variables "
                             f"{ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID})")
        host, sep, port = addr.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator address {addr!r} is not HOST:PORT (e.g. 10.0.0.1:1234)")
        if n < 1:
            raise ValueError(f"--num-processes must be at least 1, got {n}")
        if not 0 <= pid < n:
            raise ValueError(f"--process-id must be in 0..{n - 1} for {n} processes, got {pid}")
        if n == 1:
            return DistributedConfig("none", timeout=timeout)
        return DistributedConfig("explicit", addr, n, pid, timeout)
    tpu_hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    if env.get("JAXUNLEARN_DISTRIBUTED") == "1" or addr or tpu_hosts.count(",") > 0:
        return DistributedConfig("auto", addr, None, None, timeout)
    return DistributedConfig("none", timeout=timeout)


def initialize_distributed(config: DistributedConfig | None = None) -> bool:
    """Joins the multi-process run described by ``config`` (default: from the environment).

    Must run before any JAX computation (and after ``jax_num_cpu_devices`` is set, if it is).
    Calls ``jax.distributed.initialize`` with ``initialization_timeout``,
    ``heartbeat_timeout_seconds`` and ``shutdown_timeout_seconds`` bounded by
    ``config.timeout``. If the other processes have not all joined within ``config.timeout``
    seconds, a watchdog prints one ``error:`` line and ends the process with status 2 (JAX's
    own timeout would abort it with a long C++ trace). Later, a process whose peer stops
    sending heartbeats for ``config.timeout`` seconds is terminated by JAX's coordination
    service ("... another task died"), so no process waits forever.

    Returns:
      True when a multi-process run was joined, False for a single process.

    Raises:
      ValueError: JAX has already started (the command must run in a fresh process).
    """
    config = config or distributed_config()
    if config.mode == "none":
        return False
    t = max(1, int(round(config.timeout)))
    kwargs = dict(initialization_timeout=t + 30, heartbeat_timeout_seconds=t, shutdown_timeout_seconds=t)
    if config.mode == "explicit":
        kwargs.update(coordinator_address=config.coordinator, num_processes=config.num_processes,
                      process_id=config.process_id)
        who = f"process {config.process_id} of {config.num_processes}"
        where = f"the coordinator at {config.coordinator}"
    else:
        if config.coordinator:
            kwargs["coordinator_address"] = config.coordinator
        who, where = "this process", "the auto-detected coordinator"
    joined = threading.Event()

    def watchdog():
        if not joined.wait(config.timeout):
            sys.stderr.write(
                f"error: {who}: not every process joined {where} within {config.timeout:g} s; start all "
                "of them with the same --coordinator and --num-processes and distinct --process-id "
                "0..N-1 (or raise --peer-timeout)\n")
            sys.stderr.flush()
            os._exit(2)

    threading.Thread(target=watchdog, name="jaxunlearn-join-watchdog", daemon=True).start()
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        if "before" in str(e) or "already" in str(e):
            raise ValueError(f"cannot join a multi-process run: {e} (run the command in a fresh process)") from None
        raise
    finally:
        joined.set()
    return True


def process_count() -> int:
    return jax.process_count()


def is_primary() -> bool:
    """True in process 0 (the one that writes files), and in a single-process run."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """A barrier of every process (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def on_primary(fn: Callable[[], object], what: str):
    """Runs ``fn`` (a file write) in process 0 only; every process returns once it is done.

    With several processes: a barrier first (no process still reads what ``fn`` replaces),
    then process 0 runs ``fn`` and broadcasts whether it succeeded. Process 0 re-raises its own
    exception; the others raise :class:`DistributedError`, so a failed write stops every
    process instead of leaving them waiting. Returns ``fn()``'s value in process 0, None
    elsewhere.
    """
    if jax.process_count() == 1:
        return fn()
    from jax.experimental import multihost_utils
    sync(f"before {what}")
    error, out = None, None
    if is_primary():
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - re-raised below, after telling the others
            error = e
    ok = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
    if error is not None:
        raise error
    if not ok:
        raise DistributedError(f"process 0 failed writing {what}; see its error")
    return out


# ----------------------------------------------------------------------------- meshes

def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh ``("data",)`` over ``num_devices`` devices (all by default), Auto axis type.

    With several processes the mesh takes the same number of devices from each process (so
    every process holds a shard of every batch); ``num_devices`` must be a multiple of the
    process count.

    Raises:
      ValueError: more devices than visible, or not a multiple of the process count.
    """
    n = num_devices or jax.device_count()
    if n > jax.device_count():
        raise ValueError(f"asked for {n} devices, but only {jax.device_count()} are visible")
    pc = jax.process_count()
    if pc == 1:
        devices = jax.devices()[:n]
    else:
        if n % pc:
            raise ValueError(f"--devices {n} is not a multiple of the {pc} processes: every process "
                             f"needs the same number of devices (e.g. --devices {pc * max(1, n // pc)})")
        per = n // pc
        by_process = [sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)
                      for p in range(pc)]
        short = [p for p, ds in enumerate(by_process) if len(ds) < per]
        if short:
            raise ValueError(f"process {short[0]} has {len(by_process[short[0]])} devices, fewer than the "
                             f"{per} per process that --devices {n} needs")
        devices = [d for ds in by_process for d in ds[:per]]
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def batch_sharding(mesh) -> NamedSharding:
    """Sharding of batched arrays: leading axis split over ``"data"``."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _is_array(x) -> bool:
    return isinstance(x, (np.ndarray, jax.Array, np.generic))


def replicate(tree, mesh):
    """Places every array leaf of ``tree`` (host or device arrays) replicated on ``mesh``.

    Other leaves (Python numbers, strings) are returned as they are. On several processes
    each must pass identical values; uses ``jax.make_array_from_process_local_data`` so it
    works across hosts.
    """
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.tree.map(lambda x: jax.device_put(x, sharding) if _is_array(x) else x, tree)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x))
                        if _is_array(x) else x, tree)


def shard_batch(host_array: np.ndarray, mesh) -> jax.Array:
    """One global array sharded over ``"data"`` from a host array that every process holds.

    Each process places only the rows of its own devices (``jax.make_array_from_callback``).
    ``host_array``'s leading axis must be divisible by the mesh size.
    """
    host_array = np.asarray(host_array)
    return jax.make_array_from_callback(host_array.shape, batch_sharding(mesh), lambda idx: host_array[idx])


def check_batch_size(batch_size: int, mesh, what: str = "batch size") -> None:
    """Refuses a batch that does not split evenly over the mesh (ValueError naming the fix)."""
    n = mesh.shape[DATA_AXIS]
    if batch_size % n:
        raise ValueError(f"{what} {batch_size} is not divisible by the {n} devices of the mesh; "
                         f"pass --batch-size a multiple of {n} or another --devices")
