"""Look-ups whose answers are kept a while: a cache of what was found, never of what was not."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import cachetools

K = TypeVar("K")
V = TypeVar("V")


class KeptLookup(Generic[K, V]):
    """Answers ``lookup(key)``, keeping each answer found (not None) for ``seconds``; 0 keeps nothing."""

    def __init__(self, lookup: Callable[[K], V | None], seconds: float, size: int = 50_000) -> None:
        self.lookup = lookup
        self._kept: cachetools.TTLCache[K, V] | None = cachetools.TTLCache(size, seconds) if seconds > 0 else None
        self._lock = threading.Lock()

    def __call__(self, key: K) -> V | None:
        if self._kept is None:
            return self.lookup(key)
        with self._lock:
            value = self._kept.get(key)
        if value is None:
            value = self.lookup(key)
            if value is not None:
                with self._lock:
                    self._kept[key] = value
        return value
