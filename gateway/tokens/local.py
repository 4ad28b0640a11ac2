"""Each worker's in-process copy of tokens it read from or wrote to Redis (the first cache tier).

Redis stays the shared, authoritative tier. A local copy is served only while the reuse rule
allows (more than the refresh buffer left) and for at most `ttl` seconds after it was read, so a
revocation (a generation increment in Redis) reaches every worker within `ttl`.
"""

from __future__ import annotations

from gateway.infra.lru import ExpiringLru
from gateway.tokens.format import EmbedToken


class LocalTokenCache:
    """A bounded per-process map from cache key to token; `ttl <= 0` disables it."""

    def __init__(self, *, ttl: float, max_size: int, refresh_buffer: int) -> None:
        self._ttl = ttl
        self._buffer = refresh_buffer
        self._entries: ExpiringLru[str, EmbedToken] = ExpiringLru(max_size)

    @property
    def enabled(self) -> bool:
        """Whether anything is ever kept."""
        return self._ttl > 0

    def get(self, key: str, now: float) -> EmbedToken | None:
        """The token held for `key`, while both the bound and the reuse rule allow."""
        return self._entries.get(key, now)

    def put(self, key: str, token: EmbedToken, now: float) -> None:
        """Hold `token`, which was just read from or written to Redis at `now`."""
        if self._ttl <= 0:
            return
        # The reuse rule: is_reusable() holds exactly while now < valid_until - refresh_buffer.
        deadline = min(now + self._ttl, token.valid_until - self._buffer)
        if deadline > now:
            self._entries.put(key, token, deadline)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
