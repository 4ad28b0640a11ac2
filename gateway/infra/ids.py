"""Time-ordered identifiers."""

from __future__ import annotations

import random
import threading
import time
import uuid

_COUNTER_BITS = 12
_lock = threading.Lock()
# (milliseconds, counter) of the last id made from the clock: ids of one process never go
# backwards, even several within one millisecond (RFC 9562 section 6.2, method 1).
_last = (0, 0)


def _next_stamp() -> tuple[int, int]:
    global _last
    ms = time.time_ns() // 1_000_000
    with _lock:
        last_ms, counter = _last
        if ms > last_ms:
            # Start low in the millisecond so many ids fit before the counter overflows.
            counter = random.getrandbits(_COUNTER_BITS - 1)
        else:
            ms, counter = last_ms, counter + 1
            if counter >> _COUNTER_BITS:
                ms, counter = ms + 1, 0
        _last = (ms, counter)
    return ms, counter


def uuid7(now: float | None = None) -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7); ids made from the clock strictly increase."""
    if now is None:
        ms, counter = _next_stamp()
    else:
        ms, counter = int(now * 1000), random.getrandbits(_COUNTER_BITS)
    # Event ids need to be unique, not secret: the 62 random bits need no CSPRNG.
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | counter << 64
    value |= (0b10 << 62) | random.getrandbits(62)
    return uuid.UUID(int=value)
