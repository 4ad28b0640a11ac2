"""The application factory: routes, middleware, and one cleanup context per resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
from aiohttp import web

from gateway.audit.journal import Fsync, Journal
from gateway.audit.partitions import maintain_forever
from gateway.audit.writer import AuditWriter
from gateway.auth.jwks import JwksKeys
from gateway.auth.jwt_cache import JwtCache
from gateway.auth.verifier import JwtVerifier
from gateway.http import handlers
from gateway.http.assets import setup_assets
from gateway.http.cors import setup_cors
from gateway.http.middleware import edge_middleware
from gateway.http.openapi import openapi_json
from gateway.http.parser_refusals import setup_parser_refusals
from gateway.http.state import (
    AUDIT,
    DB_POOL,
    DB_READ_POOL,
    ISSUER,
    JWT_CACHE,
    METRICS,
    REDIS,
    REDIS_BREAKER,
    REQUEST_LIMITER,
    SETTINGS,
    VERIFIER,
)
from gateway.http.token_api import TOKEN_PATHS, setup_token_api
from gateway.infra.breaker import CircuitBreaker
from gateway.infra.dependency_errors import CONNECTION_ERRORS, REDIS_ERRORS, on_config_error
from gateway.infra.ratelimit import MintLimiter, Rate, RequestLimiter
from gateway.infra.redis_batch import RedisBatcher
from gateway.infra.redis_client import create_redis
from gateway.ops.dependencies import log_unreachable
from gateway.ops.metrics import Metrics, multiprocess
from gateway.settings import RedisTarget, Settings
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.keys import KeyLayout, key_fingerprint
from gateway.tokens.local import LocalTokenCache
from gateway.tokens.minter import Minter
from gateway.tokens.request import MAX_BODY_BYTES
from gateway.tokens.resolver import DashboardResolver
from gateway.tokens.store import TokenStore
from gateway.tokens.tiers import TieredLookup

log = logging.getLogger(__name__)

__all__ = ["TOKEN_PATHS", "create_app"]
WARM_REDIS_CONNECTIONS = 8


async def _verifier(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.jwt_jwks_url is None:
        app[VERIFIER] = JwtVerifier(settings)
        yield
        return
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.jwt_jwks_timeout),
        headers={"User-Agent": "embed-gateway"},
    ) as session:
        keys = JwksKeys(
            session,
            settings.jwt_jwks_url,
            algorithms=[a for a in settings.jwt_algorithms if not a.startswith("HS")],
            lifespan=settings.jwt_jwks_lifespan,
            cooldown=settings.jwt_jwks_cooldown,
            timeout=settings.jwt_jwks_timeout,
        )
        # One bounded fetch before serving, so the first callers find keys; a failure is
        # logged, not fatal: the background task keeps trying and requests get 503 meanwhile.
        await keys.refresh()
        app[VERIFIER] = JwtVerifier(settings, keys)
        app[METRICS].track_jwks(lambda: keys.fetches, lambda: keys.failures)
        keys.start()
        yield
        # Before the session closes, or a last fetch would fail on a closed session.
        await keys.aclose()


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_db_pool(settings, settings.database_url)
    with contextlib.suppress(*CONNECTION_ERRORS):
        async with asyncio.timeout(settings.db_timeout), pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    app[DB_POOL] = pool
    read_pool = None
    if settings.database_read_url is not None:
        read_pool = await create_db_pool(settings, settings.database_read_url)
    app[DB_READ_POOL] = read_pool
    yield
    if read_pool is not None:
        await read_pool.close()
    await pool.close()


async def create_db_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    """A pool for the request path and the audit writer (also the read replica's)."""
    return await asyncpg.create_pool(
        dsn,
        # No connection at creation: the gateway starts (and serves cache hits) while PostgreSQL
        # is down; /readyz says so.
        min_size=0,
        max_size=10,
        command_timeout=settings.db_timeout * 5,
        # Prepared statements kept across requests (the lookup is the only hot query); 0 behind
        # PgBouncer in transaction mode, where a statement cannot outlive its transaction.
        statement_cache_size=settings.db_statement_cache_size,
        # No reset query on release. asyncpg's default runs `pg_advisory_unlock_all(); CLOSE ALL;
        # UNLISTEN *; RESET ALL` on every release, a second round trip inside each lookup; the
        # gateway leaves no session state behind (transaction-level advisory locks, SET LOCAL,
        # an ON COMMIT DROP staging table, no LISTEN or cursors), and asyncpg still rolls back an
        # open transaction before its reset hook runs.
        reset=_no_session_state,
    )


async def _no_session_state(_conn: asyncpg.Connection) -> None:
    return None


def redis_target(settings: Settings) -> RedisTarget:
    """The service's Redis, as the one client factory takes it."""
    return RedisTarget(
        settings.redis_url,
        settings.redis_prefix,
        settings.redis_mode,
        settings.redis_sentinel_master,
    )


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    on_config_error(lambda kind: metrics.redis_config_errors.labels(kind).inc())
    client = create_redis(
        redis_target(settings), timeout=max(settings.redis_timeout, 0.5), max_connections=64
    )
    # Open a few connections now, so a first burst does not pay connection set-up inside each
    # call's deadline (which the breaker would count as Redis being slow), and mark the prefix
    # as in use for `gateway revoke`. Redis may be down at start: the breaker handles that.
    with contextlib.suppress(*REDIS_ERRORS, TimeoutError):
        async with asyncio.timeout(2.0):
            await client.set(KeyLayout(settings.redis_prefix).in_use(), "1")
            await asyncio.gather(*(client.ping() for _ in range(WARM_REDIS_CONNECTIONS)))
    app[REDIS] = client
    app[REDIS_BREAKER] = CircuitBreaker(
        "redis",
        threshold=settings.redis_breaker_threshold,
        cooldown=settings.redis_breaker_cooldown,
        on_change=metrics.breaker_changed,
        on_failure=lambda name: metrics.dependency_errors.labels(name).inc(),
    )
    metrics.breaker_state.labels("redis").set(0)
    yield
    await client.aclose()


async def _audit(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    journal = Journal(settings.audit_spool_dir, fsync=Fsync(settings.audit_fsync))
    writer = AuditWriter(
        app[DB_POOL],
        journal=journal,
        batch_size=settings.audit_batch_size,
        flush_interval=settings.audit_flush_interval,
        queue_size=settings.audit_queue_size,
        metrics=app[METRICS],
        write_timeout=settings.audit_write_timeout,
        fail_closed=settings.audit_required,
    )
    app[AUDIT] = writer
    app[METRICS].track_queue(lambda: writer.depth)
    app[METRICS].track_journal(
        pending_bytes=lambda: journal.bytes,
        segments=lambda: len(journal.segments),
        oldest_age=writer.oldest_age,
        failing=lambda: journal.failing,
    )
    # The first thing the writer does is replay what gone processes left in the journal.
    writer.start()
    yield
    # Cleanup runs in reverse order, so this flush happens before the pool closes; what cannot be
    # written within the shutdown timeout stays in the journal for the next start.
    await writer.close(timeout=settings.shutdown_timeout)


async def _partitions(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        maintain_forever(app[DB_POOL], days_ahead=app[SETTINGS].audit_partition_days_ahead),
        name="audit-partitions",
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _issuer(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    layout = KeyLayout(settings.redis_prefix)
    # Concurrent requests' Redis calls go out as one pipeline per loop turn under one deadline
    # (bench/redis_calls.py: at 64 concurrent, a third of the client CPU per call, 2.3-2.5x the
    # calls per second; at 1 concurrent about 10% dearer).
    batcher = RedisBatcher(app[REDIS], timeout=settings.redis_timeout)
    limiter = MintLimiter(
        app[REDIS],
        tenant_key=layout.tenant_budget,
        subject_key=layout.subject_budget,
        per_subject=_per_minute(settings.rate_limit_subject_mints),
        per_tenant=_per_minute(settings.rate_limit_tenant_mints),
        timeout=settings.redis_timeout,
        breaker=app[REDIS_BREAKER],
        fail_closed=settings.rate_limit_fail_closed,
        on_decision=metrics.counting(metrics.rate_limit),
        batcher=batcher,
    )
    store = TokenStore(
        app[REDIS],
        settings.refresh_buffer,
        settings.redis_timeout,
        breaker=app[REDIS_BREAKER],
        on_lookup=metrics.counting(metrics.cache_lookups, "redis"),
        batcher=batcher,
    )
    local = LocalTokenCache(
        ttl=settings.local_cache_ttl,
        max_size=settings.local_cache_size,
        refresh_buffer=settings.refresh_buffer,
    )
    app[ISSUER] = TokenIssuer(
        layout=layout,
        fingerprint=key_fingerprint(settings.signing_secret),
        api_key_id=settings.api_key_id,
        tiers=TieredLookup(
            store,
            local,
            on_local_lookup=metrics.counting(metrics.cache_lookups, "local"),
        ),
        resolver=DashboardResolver(
            app[DB_POOL],
            read_pool=app[DB_READ_POOL],
            timeout=settings.db_timeout,
            acquire_timeout=settings.db_acquire_timeout,
        ),
        minter=Minter(
            store,
            signing_secret=settings.signing_secret,
            api_key_id=settings.api_key_id,
            token_ttl=settings.token_ttl,
        ),
        # The subject's budget in its own call, the tenant's inside the store's share script.
        before_mint=limiter.spend_subject,
        budgets=limiter,
    )
    yield
    # Before the Redis client closes (cleanup runs in reverse): batches in flight finish.
    await batcher.aclose()


def _per_minute(limit: int) -> Rate | None:
    return Rate(limit, 60.0) if limit > 0 else None


async def _metrics_refresh(app: web.Application) -> AsyncIterator[None]:
    # With several workers a scrape reads files: each worker flushes its local numbers there
    # once a second (and on every scrape it answers itself).
    task = asyncio.create_task(_refresh_forever(app[METRICS])) if multiprocess() else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _refresh_forever(metrics: Metrics) -> None:
    while True:
        metrics.refresh()
        await asyncio.sleep(1.0)


def create_app(settings: Settings) -> web.Application:
    """Build the gateway; no I/O happens until the app starts."""
    app = web.Application(
        middlewares=[edge_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[SETTINGS] = settings
    metrics = app[METRICS] = Metrics()
    app[JWT_CACHE] = JwtCache(max_size=settings.jwt_cache_size, max_ttl=settings.jwt_cache_ttl)
    app[REQUEST_LIMITER] = RequestLimiter(
        rate=settings.rate_limit_requests_per_second,
        burst=settings.rate_limit_request_burst,
        on_decision=metrics.counting(metrics.rate_limit),
    )
    app.cleanup_ctx.extend(
        [_verifier, _postgres, _redis, _audit, _partitions, _issuer, _metrics_refresh]
    )
    # After the cleanup contexts' start-up (aiohttp runs those first): app[REDIS] exists.
    app.on_startup.append(lambda app: log_unreachable(settings, app[REDIS].ping))
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/openapi.json", openapi_json)
    setup_assets(app)
    # Middleware order: the edge (request id, errors, headers), CORS preflights (answered before
    # the token API's audit: a preflight is not a token request), then the token API's audit.
    setup_cors(app, settings.cors_origins)
    setup_token_api(app, handlers.issue_token)
    setup_parser_refusals(app)
    return app
