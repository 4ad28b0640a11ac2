"""A size-bounded LRU map whose entries each carry a deadline, for the in-process caches."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class ExpiringLru(Generic[K, V]):
    """At most `max_size` entries; the least recently used goes first, an expired one on sight.

    Written here rather than taken from cachetools: it sits on every request, and an OrderedDict
    lookup plus one comparison costs a fraction of a microsecond where TLRUCache costs several.
    Not thread-safe: each event loop (worker process) owns its own.
    """

    __slots__ = ("_data", "_max_size")

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._max_size = max_size
        self._data: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        """The value while `now` is before its deadline, else None (and the entry is dropped)."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, deadline: float) -> None:
        """Store `value` until `deadline`, evicting the least recently used entry when full."""
        data = self._data
        data[key] = (value, deadline)
        data.move_to_end(key)
        if len(data) > self._max_size:
            data.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget one entry, if present."""
        self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
