"""The bounded, deadline-carrying LRU map under both in-process caches."""

from __future__ import annotations

from gateway.infra.lru import ExpiringLru


def test_entry_is_served_only_before_its_deadline() -> None:
    """An entry is returned while now < deadline and is gone from then on."""
    lru: ExpiringLru[str, int] = ExpiringLru(4)
    lru.put("a", 1, deadline=10.0)
    assert lru.get("a", 9.999) == 1
    assert lru.get("a", 10.0) is None
    assert len(lru) == 0


def test_least_recently_used_entry_is_evicted_at_the_bound() -> None:
    """Past max_size the least recently used entry goes; a read counts as a use."""
    lru: ExpiringLru[str, int] = ExpiringLru(2)
    lru.put("a", 1, 100.0)
    lru.put("b", 2, 100.0)
    assert lru.get("a", 0.0) == 1
    lru.put("c", 3, 100.0)
    assert len(lru) == 2
    assert lru.get("b", 0.0) is None
    assert lru.get("a", 0.0) == 1
    assert lru.get("c", 0.0) == 3
