"""BoundedCache: least-recently-used eviction and per-entry expiry, on a fake clock."""

from __future__ import annotations

import pytest

from registry.services.caching import BoundedCache


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_returned_until_its_ttl_then_never() -> None:
    clock = Clock()
    cache: BoundedCache[str] = BoundedCache(4, clock=clock)
    cache.put("k", "v", ttl=2.0)
    clock.now += 1.999
    assert cache.get("k") == "v"
    clock.now += 0.001  # exactly at the deadline: expired
    assert cache.get("k") is None
    assert len(cache) == 0


def test_entries_without_ttl_stay_until_evicted_least_recently_used_first() -> None:
    cache: BoundedCache[int] = BoundedCache(3, clock=Clock())
    for key in "abc":
        cache.put(key, ord(key))
    assert cache.get("a") == ord("a")  # a is now the most recently used
    cache.put("d", 4)  # evicts b, the least recently used
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [ord("a"), ord("c"), 4]
    assert len(cache) == 3


def test_put_replaces_and_discard_and_clear_forget() -> None:
    cache: BoundedCache[int] = BoundedCache(2, clock=Clock())
    cache.put("a", 1)
    cache.put("a", 2)
    assert cache.get("a") == 2 and len(cache) == 1
    cache.discard("a")
    cache.discard("missing")
    assert cache.get("a") is None
    cache.put("b", 1)
    cache.clear()
    assert len(cache) == 0


def test_a_cache_needs_room_for_one_entry() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BoundedCache(0)
