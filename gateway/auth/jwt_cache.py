"""Verified caller JWTs, remembered briefly so a repeat caller skips the signature check.

Only successful verifications are stored, keyed by the exact token string. An entry lives until
the token's `exp` (no leeway: stricter than the verifier) and never longer than the configured
maximum; every hit compares against the clock. The tenant rule is not cached: the handler applies
it to every request. A change of keys (the verifier's `generation`) empties the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.auth.verifier import Caller
from gateway.infra.lru import ExpiringLru


class JwtCache:
    """Bounded LRU from a token string to its verified Caller; `max_ttl <= 0` disables it."""

    def __init__(
        self, *, max_size: int, max_ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._entries: ExpiringLru[str, Caller] = ExpiringLru(max_size)
        self._max_ttl = max_ttl
        self._clock = clock
        self._generation = 0

    def get(self, token: str, generation: int = 0) -> Caller | None:
        """The Caller verified earlier for exactly this token, while its exp has not passed."""
        if generation != self._generation:
            # The secret or JWKS changed: nothing verified under the old keys may be served.
            self._entries.clear()
            self._generation = generation
            return None
        return self._entries.get(token, self._clock())

    def put(self, token: str, caller: Caller, generation: int = 0) -> None:
        """Remember a successful verification made under key-set `generation`."""
        if self._max_ttl <= 0 or caller.expires_at is None or generation != self._generation:
            # A verification that raced a key change is not stored: it may be under old keys.
            return
        now = self._clock()
        deadline = min(now + self._max_ttl, caller.expires_at)
        if deadline > now:
            self._entries.put(token, caller, deadline)

    def clear(self) -> None:
        """Forget every verified token (the secret or JWKS changed)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
