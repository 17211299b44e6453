"""A small thread-safe, bounded, expiring map for the per-process caches of the hot path.

Entries are evicted least recently used first once ``max_entries`` is reached, and an
entry older than its time to live is never returned. Each API worker process has its
own caches: they only ever hold what the database said, for at most the TTL.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from registry.auth import Principal
    from registry.services.manifests import Manifest

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """``key -> value`` with LRU eviction and an optional per-entry deadline."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The value stored under ``key`` if present and not expired, else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            deadline, value = entry
            if deadline <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (None: until evicted)."""
        deadline = float("inf") if ttl is None else self._clock() + ttl
        with self._lock:
            self._entries[key] = (deadline, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` (no error if absent)."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


@dataclass
class HotCaches:
    """The per-process caches of the resolve hot path (one set per API worker process)."""

    manifests: BoundedCache[Manifest] = field(default_factory=lambda: BoundedCache(4096))
    answers: BoundedCache[bytes] = field(default_factory=lambda: BoundedCache(4096))
    principals: BoundedCache[Principal] = field(default_factory=lambda: BoundedCache(1024))
