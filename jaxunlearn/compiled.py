"""Built runners kept across runs, so a driver that runs many models compiles each program once.

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
