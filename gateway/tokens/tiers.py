"""The two cache tiers in front of a mint: this worker's local copy, then the shared store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.tokens.format import EmbedToken
from gateway.tokens.local import LocalTokenCache
from gateway.tokens.store import EntryKey, Lookup, TokenStore


class TieredLookup:
    """Reads the local tier, then Redis; remembers what it served in the local tier."""

    def __init__(
        self,
        store: TokenStore,
        local: LocalTokenCache | None = None,
        on_local_lookup: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self._local = local if local is not None and local.enabled else None
        self._on_local_lookup = on_local_lookup or (lambda _result: None)

    def local(self, where: EntryKey, now: float) -> EmbedToken | None:
        """This worker's copy, while its bound and the reuse rule allow (no round trip)."""
        if self._local is None:
            return None
        held = self._local.get(where.key, now)
        self._on_local_lookup("miss" if held is None else "hit")
        return held

    def shared(self, where: EntryKey, now: float) -> Awaitable[Lookup]:
        """The shared tier: one script reading the entry and the generations guarding it (the
        store's own coroutine, not one more layer around it)."""
        return self.store.get(where, now)

    def remember(self, where: EntryKey, token: EmbedToken, now: float) -> None:
        """Keep `token` in this worker's tier (it was just read from or written to Redis)."""
        if self._local is not None:
            self._local.put(where.key, token, now)
