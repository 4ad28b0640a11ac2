"""The application factory: routes, middleware, and one cleanup context per resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from gateway import handlers
from gateway.assets import setup_assets
from gateway.audit import AuditWriter
from gateway.auth import JwtVerifier
from gateway.cache import TokenCache
from gateway.config import Settings
from gateway.issuer import TokenIssuer
from gateway.jwks import JwksKeys
from gateway.jwt_cache import JwtCache
from gateway.local_cache import LocalTokenCache
from gateway.metrics import Metrics
from gateway.middleware import gateway_middleware
from gateway.partitions import maintain_forever
from gateway.spool import Spool
from gateway.state import AUDIT, DB_POOL, ISSUER, JWT_CACHE, METRICS, REDIS, SETTINGS, VERIFIER
from gateway.token_request import MAX_BODY_BYTES

log = logging.getLogger(__name__)

TOKEN_PATHS = ("/api/v1/dashboards/iframe-token", "/api/dashboards/iframe-token")
# Passed to the server runner: aiohttp's default 8,190-byte header field would cut a legal
# 8 KiB bearer token short with a bare 400 that bypasses the middleware and the audit row.
SERVER_LIMITS = {"max_field_size": 16 * 1024}


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
        keys.start()
        yield
        # Before the session closes, or a last fetch would fail on a closed session.
        await keys.aclose()


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[DB_POOL] = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=10,
        command_timeout=settings.db_timeout * 5,
        # Keep prepared statements across requests; the lookup is the only hot query.
        statement_cache_size=256,
    )
    yield
    await app[DB_POOL].close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=max(settings.redis_timeout, 0.5),
        max_connections=64,
        health_check_interval=30,
    )
    app[REDIS] = client
    yield
    await client.aclose()


async def _audit(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    spool = Spool(settings.audit_spool_dir)
    writer = AuditWriter(
        app[DB_POOL],
        spool=spool,
        batch_size=settings.audit_batch_size,
        flush_interval=settings.audit_flush_interval,
        queue_size=settings.audit_queue_size,
        metrics=app[METRICS],
        write_timeout=settings.audit_write_timeout,
    )
    app[AUDIT] = writer
    app[METRICS].track_queue(lambda: writer.depth)
    app[METRICS].track_spool(lambda: spool.pending_bytes)
    # The first thing the writer does is replay what a previous process left in the spool.
    writer.start()
    yield
    # Cleanup runs in reverse order, so this flush happens before the pool closes; what cannot be
    # written within the shutdown timeout goes to the spool.
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
    app[ISSUER] = TokenIssuer(
        pool=app[DB_POOL],
        cache=TokenCache(app[REDIS], settings.refresh_buffer, settings.redis_timeout),
        signing_secret=settings.signing_secret,
        api_key_id=settings.api_key_id,
        token_ttl=settings.token_ttl,
        refresh_buffer=settings.refresh_buffer,
        redis_prefix=settings.redis_prefix,
        db_timeout=settings.db_timeout,
        local=LocalTokenCache(
            ttl=settings.local_cache_ttl,
            max_size=settings.local_cache_size,
            refresh_buffer=settings.refresh_buffer,
        ),
    )
    yield


def create_app(settings: Settings) -> web.Application:
    """Build the gateway; no I/O happens until the app starts."""
    app = web.Application(middlewares=[gateway_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[JWT_CACHE] = JwtCache(max_size=settings.jwt_cache_size, max_ttl=settings.jwt_cache_ttl)
    app.cleanup_ctx.extend([_verifier, _postgres, _redis, _audit, _partitions, _issuer])
    for path in TOKEN_PATHS:
        app.router.add_post(path, handlers.issue_token)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    setup_assets(app)
    if settings.dev_routes:
        from gateway.devtools import setup_dev_routes  # noqa: PLC0415 - dev mode only

        setup_dev_routes(app)
    return app
