"""Get an embed token: reuse the cached one while the rule allows, else look up and mint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from gateway.errors import RateLimited, Unavailable
from gateway.infra.dependency_errors import CONNECTION_ERRORS
from gateway.infra.singleflight import SingleFlight
from gateway.tokens.directory import lookup_dashboard
from gateway.tokens.format import EmbedToken, mint_v1
from gateway.tokens.local import LocalTokenCache
from gateway.tokens.request import TokenRequest
from gateway.tokens.store import DEFAULT_DASHBOARD, TokenCache, cache_key, key_fingerprint

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# Called with (caller subject, tenant) just before a mint; raises to refuse it (rate limits).
BeforeMint = Callable[[str | None, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Issued:
    """What the endpoint answers, and whether it came from the cache."""

    token: EmbedToken
    cache_hit: bool


class TokenIssuer:
    """The cache rule and the mint, over a PostgreSQL pool and a Redis cache passed in."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        cache: TokenCache,
        signing_secret: bytes,
        api_key_id: str,
        token_ttl: int,
        refresh_buffer: int,
        redis_prefix: str,
        db_timeout: float = 1.0,
        db_acquire_timeout: float | None = None,
        clock: Clock = time.time,
        local: LocalTokenCache | None = None,
        before_mint: BeforeMint | None = None,
        on_local_lookup: Callable[[str], None] | None = None,
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._secret = signing_secret
        self._api_key_id = api_key_id
        self._ttl = token_ttl
        self._buffer = refresh_buffer
        self._prefix = redis_prefix
        self._fingerprint = key_fingerprint(signing_secret)
        self._db_timeout = db_timeout
        self._acquire_timeout = db_timeout if db_acquire_timeout is None else db_acquire_timeout
        self._clock = clock
        self._before_mint = before_mint
        self._flight: SingleFlight[Issued] = SingleFlight()
        self._local = local if local is not None and local.enabled else None
        self._on_local_lookup = on_local_lookup
        self.lookups = 0  # database lookups made; tests pin single flight with it

    @property
    def api_key_id(self) -> str:
        """The API key id put in every token."""
        return self._api_key_id

    def key(self, workspace_id: str, tenant_id: str, dashboard_id: str) -> str:
        """The cache key of one (workspace, tenant, dashboard) under this signing key."""
        return cache_key(
            self._prefix, self._fingerprint, self._api_key_id, workspace_id, tenant_id, dashboard_id
        )

    async def issue(self, request: TokenRequest, subject: str | None = None) -> Issued:
        """The token for this (already authorised) request; `subject` is the caller's JWT sub."""
        key = self.key(
            request.workspace_id, request.tenant_id, request.dashboard_id or DEFAULT_DASHBOARD
        )
        local = self._local
        now = self._clock()
        if local is not None:
            # The hot path: no Redis or PostgreSQL round trip while this worker's copy is fresh.
            held = local.get(key, now)
            if self._on_local_lookup is not None:
                self._on_local_lookup("miss" if held is None else "hit")
            if held is not None:
                return Issued(held, cache_hit=True)
        cached = await self._cache.get(key, now)
        if cached is not None:
            issued = Issued(cached, cache_hit=True)
        else:
            issued = await self._shared_resolve(request, key, subject)
        if local is not None:
            local.put(key, issued.token, self._clock())
        return issued

    async def _shared_resolve(self, request: TokenRequest, key: str, subject: str | None) -> Issued:
        try:
            return await self._flight.run(key, lambda: self._resolve(request, key, subject))
        except RateLimited as exc:
            # The shared mint was refused for the subject that started it; another caller's own
            # budget may still allow it, so it tries once more as itself.
            if getattr(exc, "subject", subject) == subject:
                raise
            return await self._flight.run(key, lambda: self._resolve(request, key, subject))

    async def _lookup(self, request: TokenRequest) -> str:
        self.lookups += 1
        try:
            # Two deadlines: waiting for a pooled connection, then the query itself.
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                async with asyncio.timeout(self._db_timeout):
                    return await lookup_dashboard(
                        conn, request.tenant_id, request.workspace_id, request.dashboard_id
                    )
        except CONNECTION_ERRORS as exc:
            log.warning("dashboard lookup failed: %s", type(exc).__name__)
            raise Unavailable("the dashboard directory is unavailable", reason="database") from None

    async def _resolve(self, request: TokenRequest, key: str, subject: str | None) -> Issued:
        # Checked again inside the flight: a token may have landed while we queued.
        cached = await self._cache.get(key, self._clock())
        if cached is not None:
            return Issued(cached, cache_hit=True)
        dashboard_id = await self._lookup(request)
        canonical = self.key(request.workspace_id, request.tenant_id, dashboard_id)
        issued = None
        if canonical != key:
            # A request for the default dashboard shares the token of an explicit request for it.
            hit = await self._cache.get(canonical, self._clock())
            if hit is not None:
                issued = Issued(hit, cache_hit=True)
        if issued is None:
            if self._before_mint is not None:
                try:
                    await self._before_mint(subject, request.tenant_id)
                except RateLimited as exc:
                    exc.subject = subject  # whose budget said no, for callers sharing this mint
                    raise
            issued = await self._mint_and_share(request, dashboard_id, canonical)
        if canonical != key:
            await self._cache.put(key, issued.token, self._clock(), only_if_absent=False)
        return issued

    async def _mint_and_share(self, request: TokenRequest, dashboard_id: str, key: str) -> Issued:
        now = self._clock()
        valid_until = int(now) + self._ttl
        token = EmbedToken(
            token=mint_v1(
                self._secret,
                api_key_id=self._api_key_id,
                workspace_id=request.workspace_id,
                tenant_id=request.tenant_id,
                dashboard_id=dashboard_id,
                valid_until=valid_until,
            ),
            dashboard_id=dashboard_id,
            valid_until=valid_until,
        )
        stored = await self._cache.put(key, token, now, only_if_absent=True)
        if stored is not False:
            # Stored, or not storable (Redis unreachable, or too short-lived to reuse): ours it is.
            return Issued(token, cache_hit=False)
        # Another instance stored one first: prefer theirs while it is reusable, so every
        # instance hands out the same token for a key.
        winner = await self._cache.get(key, self._clock())
        if winner is not None:
            return Issued(winner, cache_hit=True)
        await self._cache.put(key, token, now, only_if_absent=False)
        return Issued(token, cache_hit=False)
