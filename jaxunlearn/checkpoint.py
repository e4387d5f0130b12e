"""Orbax checkpoints of a :class:`TrainState` plus JSON metadata: save, keep the last K, restore.

Checkpoints hold arrays (tensorstore) and JSON only: restoring never executes code. A restore
needs a template state (from the model's own init), so a checkpoint of another model or
dataset is refused with a clear :class:`CheckpointError` instead of silently mis-loading.

Every saved step also gets ``SHA256SUMS.json`` (the SHA-256 of each of its files, written after
Orbax has finished the step). :func:`restore` checks it before Orbax reads anything, so a
truncated, garbled or missing file is refused as corrupt (Orbax itself does not notice garbled
array bytes). A step without the file (written before this existed, or killed between Orbax's
commit and the checksums) is restored unchecked.

Several processes (``jax.distributed``): every process calls :func:`save` and :func:`restore`
with the same arguments. Orbax's multi-host save coordinates them (process 0 writes the
replicated host arrays and the metadata, the others wait at its barriers; sharded arrays
that no single process holds are written shard by shard); process 0 alone writes the
checksums. The directory must be shared by every process (one machine, NFS, or a bucket).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxunlearn import parallel

logging.getLogger("absl").setLevel(logging.ERROR)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, truncated, or does not match the model."""


def _manager(directory, max_to_keep: int | None = 3, create: bool = True) -> ocp.CheckpointManager:
    directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


@contextlib.contextmanager
def _quiet():
    """Silences Orbax's own error logs while reading: every failure surfaces as CheckpointError."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _to_host(tree):
    """Host copies of every leaf, except sharded arrays no process holds whole (Orbax saves
    those shard by shard from the processes that own them)."""
    def host(x):
        if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
            return x
        return np.asarray(x)
    return jax.tree.map(host, tree)


CHECKSUMS = "SHA256SUMS.json"


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_checksums(step_dir: pathlib.Path) -> None:
    sums = {str(p.relative_to(step_dir)): _sha256(p) for p in sorted(step_dir.rglob("*"))
            if p.is_file() and p.name != CHECKSUMS}
    tmp = step_dir / f".{CHECKSUMS}.tmp"
    tmp.write_text(json.dumps(sums, indent=1, sort_keys=True))
    os.replace(tmp, step_dir / CHECKSUMS)


def verify(step_dir) -> None:
    """Checks the files of one saved step against its ``SHA256SUMS.json`` (if it has one).

    Raises:
      CheckpointError: a listed file is missing or its bytes changed, or the list is unreadable.
    """
    step_dir = pathlib.Path(step_dir)
    path = step_dir / CHECKSUMS
    if not path.is_file():
        return
    try:
        sums = json.loads(path.read_text())
        if not isinstance(sums, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint in {step_dir} is corrupt: unreadable {CHECKSUMS} ({e})") from None
    for rel, digest in sums.items():
        f = step_dir / rel
        if not f.is_file():
            raise CheckpointError(f"checkpoint in {step_dir} is incomplete: {rel} is missing")
        if _sha256(f) != digest:
            raise CheckpointError(f"checkpoint in {step_dir} is corrupt: {rel} does not match its "
                                  "checksum (truncated or modified)")


def save(directory, step: int, state: Any, meta: dict | None = None, max_to_keep: int | None = 3) -> None:
    """Saves ``state`` (any pytree of arrays) at ``step``, keeping the last ``max_to_keep``."""
    with _manager(directory, max_to_keep) as mngr:
        mngr.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(_to_host(state)),
            meta=ocp.args.JsonSave(meta or {})), force=True)
        mngr.wait_until_finished()
        step_dir = pathlib.Path(directory).absolute() / str(int(step))
        parallel.on_primary(lambda: _write_checksums(step_dir) if step_dir.is_dir() else None,
                            f"the checksums of {step_dir}")


def latest_step(directory) -> int | None:
    """The newest complete checkpoint's step in ``directory``, or None."""
    if not pathlib.Path(directory).is_dir():
        return None
    with _quiet(), _manager(directory, create=False) as mngr:
        return mngr.latest_step()


def restore(directory, template: Any, step: int | None = None, expect_meta: dict | None = None):
    """Restores ``(state, meta)`` from ``directory`` (latest step unless given).

    Args:
      directory: the checkpoint directory.
      template: a pytree with the expected structure, shapes and dtypes (arrays, or
        ``jax.ShapeDtypeStruct`` leaves as ``jax.eval_shape`` gives).
      step: which step; latest if None.
      expect_meta: keys whose values must match the saved metadata (e.g. model, dataset).

    Raises:
      CheckpointError: nothing to restore, unreadable or truncated files, a structure or shape
        mismatch, or metadata that does not match ``expect_meta``.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoint directory at {directory}")
    try:
        with _quiet(), _manager(directory, create=False) as mngr:
            step = mngr.latest_step() if step is None else step
            if step is None:
                raise CheckpointError(f"no complete checkpoint in {directory}")
            verify(directory.absolute() / str(int(step)))
            meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            _check_meta(directory, meta, expect_meta)
            host_template = jax.tree.map(lambda x: np.zeros(np.shape(x), _dtype(x)), template)
            restored = mngr.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(host_template)))["state"]
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - orbax raises many types for corrupt data
        detail = str(e).splitlines()[0].split(" [tensorstore_spec")[0][:300] if str(e) else ""
        raise CheckpointError(f"cannot restore checkpoint in {directory}: {type(e).__name__}: {detail}") from None
    _check_shapes(directory, template, restored)
    return jax.tree.map(lambda t, r: np.asarray(r, dtype=_dtype(t)), template, restored), meta


def _dtype(x):
    """The dtype of an array or of an abstract ``jax.ShapeDtypeStruct`` template leaf."""
    return x.dtype if isinstance(x, jax.ShapeDtypeStruct) else np.asarray(x).dtype


def _check_meta(directory, meta, expect):
    for k, v in (expect or {}).items():
        if k in meta and meta[k] != v:
            raise CheckpointError(f"checkpoint in {directory} is for {k}={meta[k]!r}, not {v!r}")


def _check_shapes(directory, template, restored):
    ta, tb = jax.tree.structure(template), jax.tree.structure(restored)
    if ta != tb:
        raise CheckpointError(f"checkpoint in {directory} has a different structure than the model")
    for a, b in zip(jax.tree.leaves(template), jax.tree.leaves(restored)):
        if np.shape(a) != np.shape(b):
            raise CheckpointError(f"checkpoint in {directory} has shape {np.shape(b)} where the model "
                                  f"expects {np.shape(a)}: it belongs to another model or dataset")
