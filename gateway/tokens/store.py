"""The shared token cache in Redis: keys, values and the expiry that enforces the reuse rule."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from gateway.infra.breaker import CircuitBreaker, CircuitOpen
from gateway.infra.dependency_errors import REDIS_ERRORS
from gateway.tokens.format import EmbedToken, is_reusable

log = logging.getLogger(__name__)

# Marks "the tenant's default dashboard" in a key; '*' can never appear in a validated id.
DEFAULT_DASHBOARD = "*"


def key_fingerprint(signing_secret: bytes) -> str:
    """A short, one-way tag of the signing key, so rotating it never serves an old token."""
    return hmac.new(signing_secret, b"embed-gateway cache key v1", hashlib.sha256).hexdigest()[:16]


def cache_key(
    prefix: str,
    fingerprint: str,
    api_key_id: str,
    workspace_id: str,
    tenant_id: str,
    dashboard_id: str,
) -> str:
    """Key for one (api key, workspace, tenant, dashboard); '|' cannot occur in validated ids."""
    return f"{prefix}tok:v1|{fingerprint}|{api_key_id}|{workspace_id}|{tenant_id}|{dashboard_id}"


def tenant_pattern(prefix: str, tenant_id: str) -> str:
    """SCAN pattern matching every cached token of one tenant (for purges)."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in tenant_id)
    return f"{prefix}tok:v1|*|*|*|{escaped}|*"


def encode_entry(token: EmbedToken) -> bytes:
    """Serialise a cache entry."""
    return orjson.dumps([token.token, token.dashboard_id, token.valid_until])


def decode_entry(raw: bytes) -> EmbedToken | None:
    """Parse a cache entry; None for anything unexpected (treated as a miss)."""
    try:
        token, dashboard_id, valid_until = orjson.loads(raw)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None
    if not isinstance(token, str) or not isinstance(dashboard_id, str):
        return None
    if type(valid_until) is not int:
        return None
    return EmbedToken(token=token, dashboard_id=dashboard_id, valid_until=valid_until)


def reuse_window_ms(valid_until: int, now: float, refresh_buffer: int) -> int:
    """Milliseconds for which the entry may still be reused; <= 0 means do not cache."""
    return math.floor((valid_until - refresh_buffer - now) * 1000)


# Called with a lookup's outcome: "hit", "miss", "error" (failed or timed out), "skipped" (open).
LookupListener = Callable[[str], None]


class TokenCache:
    """Redis-backed cache; every call is bounded by a deadline and a Redis fault is a miss.

    Calls go through the breaker: while it is open they are skipped at once, not timed out.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        refresh_buffer: int,
        timeout: float,
        *,
        breaker: CircuitBreaker | None = None,
        on_lookup: LookupListener | None = None,
    ) -> None:
        self._client = client
        self._buffer = refresh_buffer
        self._timeout = timeout
        # A breaker that never opens keeps the no-breaker case on the same code path.
        self._breaker = breaker or CircuitBreaker("redis", threshold=2**31)
        self._on_lookup = on_lookup or (lambda _result: None)

    async def get(self, key: str, now: float) -> EmbedToken | None:
        """The cached token if it may still be reused at `now`, else None."""
        try:
            raw = await self._breaker.call(
                lambda: self._client.get(key), timeout=self._timeout, errors=REDIS_ERRORS
            )
        except CircuitOpen:
            self._on_lookup("skipped")
            return None
        except (*REDIS_ERRORS, TimeoutError) as exc:
            self._on_lookup("error")
            log.debug("redis get failed, treating as a miss: %s", type(exc).__name__)
            return None
        entry = None if raw is None else decode_entry(raw)
        if entry is None or not is_reusable(entry.valid_until, now, self._buffer):
            self._on_lookup("miss")
            return None
        self._on_lookup("hit")
        return entry

    async def put(
        self, key: str, token: EmbedToken, now: float, *, only_if_absent: bool
    ) -> bool | None:
        """Store `token` until it stops being reusable; with only_if_absent, keep an existing one.

        True when stored, False when an existing entry was kept (another process won the race),
        None when nothing could be stored (Redis unreachable, or the token is not reusable).
        """
        ttl_ms = reuse_window_ms(token.valid_until, now, self._buffer)
        if ttl_ms <= 0:
            return None
        try:
            stored = await self._breaker.call(
                lambda: self._client.set(key, encode_entry(token), px=ttl_ms, nx=only_if_absent),
                timeout=self._timeout,
                errors=REDIS_ERRORS,
            )
        except CircuitOpen:
            return None
        except (*REDIS_ERRORS, TimeoutError) as exc:
            log.debug("redis set failed, token not shared: %s", type(exc).__name__)
            return None
        return bool(stored)

    async def purge_tenant(self, prefix: str, tenant_id: str) -> int:
        """Delete every cached token of a tenant; returns how many keys went."""
        deleted = 0
        async for key in self._client.scan_iter(match=tenant_pattern(prefix, tenant_id), count=500):
            deleted += await self._client.delete(key)
        return deleted
