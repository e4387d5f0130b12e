"""Compiled programs kept across runs (in memory) and across commands (on disk).

In memory, :func:`cached`: built runners kept across runs, so a driver that runs many models
compiles each program once. On disk, :func:`enable_persistent_cache`: JAX's persistent
compilation cache, which every single-process command turns on.

``jax.jit`` caches compiled programs per Python function object. The host drivers build a new
step closure for every run (``train.make_step`` -> ``train.Epoch`` -> ``train.jit_runner``),
so a study or a pool that trains or unlearns many models of the same shape recompiled the
same step for every model (measured: ~9 s of a 30 s Random Label epoch of the Fashion-MNIST
CNN on the loaded 2-core CPU). :func:`cached` builds a runner once per hashable description
of everything its closure depends on (method, phase, network, optimiser config, settings,
sharding) and returns the same object afterwards; an unhashable description builds afresh.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Hashable

MAX_ENTRIES = 32
_CACHE: "collections.OrderedDict[Hashable, Any]" = collections.OrderedDict()


def cached(key: Hashable, build: Callable[[], Any]) -> Any:
    """``build()`` once per ``key`` (least recently used entries beyond :data:`MAX_ENTRIES` go).

    ``key`` must describe everything ``build``'s result depends on; objects it refers to by
    ``id`` must be kept alive by the caller (an entry holds what ``build`` returned only).
    """
    try:
        hash(key)
    except TypeError:
        return build()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = build()
    _CACHE[key] = value
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)
    return value


def clear() -> None:
    """Forget every cached runner (their compiled programs are freed with them)."""
    _CACHE.clear()


# ----------------------------------------------------------------------------- on disk

#: Environment variable: a directory for compiled programs, or ``off`` (default: the user cache).
CACHE_ENV = "JAXUNLEARN_COMPILATION_CACHE"
#: Programs that compile faster than this are not written to disk. 0: every program (they are
#: small: a digits ``train`` command writes 58 entries, 392 KB, and its second run takes 2.7-3.1 s
#: instead of 5.5 s; with a 0.5 s threshold only 4 entries are written and the second run takes 4.5 s).
MIN_COMPILE_S = 0.0
#: Disk budget of the cache (JAX evicts the least recently used entries beyond it).
MAX_BYTES = 2 << 30


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/jaxunlearn/xla`` (``~/.cache/jaxunlearn/xla`` when unset)."""
    import os
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxunlearn", "xla")


def enable_persistent_cache(path: str | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache, so a second command compiles nothing.

    XLA's executables are keyed by the program, the JAX/XLA versions, the flags and the
    device, so a cached program is the one a fresh compilation would produce (same results);
    on the 2-core CPU it saves the several seconds each whole-run program takes to compile
    (``benchmarks/results.json``, row ``pool/64_per_side``: the warm variant). The command
    line turns it on for single-process runs; call this from Python to do the same.

    Args:
      path: the directory; None reads :data:`CACHE_ENV` (``off``/``0``/``false``/``no``
        disables it, any other value is the directory), else keeps JAX's own
        ``JAX_COMPILATION_CACHE_DIR`` if set, else uses :func:`default_cache_dir`.

    Returns:
      The directory in use, or None when disabled.

    Raises:
      ValueError: a chosen path (``path`` or :data:`CACHE_ENV`) exists and is not a
        directory, or cannot be created. An unusable default place turns the cache off.
    """
    import os

    import jax
    if path is None:
        if CACHE_ENV not in os.environ and os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            return os.environ["JAX_COMPILATION_CACHE_DIR"]  # JAX's own setting (e.g. the test suite's)
        path = os.environ.get(CACHE_ENV, "").strip()
        if path.lower() in ("off", "0", "false", "no"):
            return None
        chosen, path = bool(path), path or default_cache_dir()
    else:
        chosen = True
    path = os.path.abspath(os.path.expanduser(path))
    try:
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"{CACHE_ENV}={path} is not a directory; give a directory, or off to disable the cache")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create the compilation cache {path} ({e.strerror}); set {CACHE_ENV} to a "
                             "writable directory, or to off") from None
    except ValueError:
        if chosen:
            raise
        return None  # the default place is unusable (e.g. a read-only home): run without the cache
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return path
