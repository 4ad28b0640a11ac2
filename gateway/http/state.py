"""Typed application state: one AppKey per shared object."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiohttp import web

from gateway.audit.writer import AuditWriter
from gateway.auth.jwt_cache import JwtCache
from gateway.auth.verifier import JwtVerifier
from gateway.http.token_record import TokenRecord
from gateway.infra.breaker import CircuitBreaker
from gateway.infra.ratelimit import RequestLimiter
from gateway.infra.redis_client import AnyRedis
from gateway.ops.metrics import Metrics
from gateway.settings import Settings
from gateway.tokens.issuer import TokenIssuer

SETTINGS = web.AppKey("settings", Settings)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
REDIS: web.AppKey[AnyRedis] = web.AppKey("redis")
# The directory's read replica (GATEWAY_DATABASE_READ_URL), or None.
DB_READ_POOL: web.AppKey[asyncpg.Pool | None] = web.AppKey("db_read_pool")
AUDIT = web.AppKey("audit", AuditWriter)
ISSUER = web.AppKey("issuer", TokenIssuer)
VERIFIER = web.AppKey("verifier", JwtVerifier)
JWT_CACHE = web.AppKey("jwt_cache", JwtCache)
METRICS = web.AppKey("metrics", Metrics)
CLIENT_INTEGRITY = web.AppKey("client_integrity", str)  # the embed client's SRI hash (dev demo)
REQUEST_LIMITER = web.AppKey("request_limiter", RequestLimiter)
REDIS_BREAKER = web.AppKey("redis_breaker", CircuitBreaker)

REQUEST_ID = web.RequestKey("request_id", str)
TOKEN_RECORD = web.RequestKey("token_record", TokenRecord)


@dataclass(frozen=True, slots=True)
class TokenServices:
    """The parts the token path uses, read from the app once it has started (its state is fixed
    by then): a request pays attribute reads instead of a dozen `app[KEY]` calls."""

    settings: Settings
    metrics: Metrics
    jwt_cache: JwtCache
    verifier: JwtVerifier
    limiter: RequestLimiter
    audit: AuditWriter
    issuer: TokenIssuer
    api_key_id: str

    @classmethod
    def of(cls, app: web.Application) -> TokenServices:
        """The started app's parts."""
        return cls(
            settings=app[SETTINGS],
            metrics=app[METRICS],
            jwt_cache=app[JWT_CACHE],
            verifier=app[VERIFIER],
            limiter=app[REQUEST_LIMITER],
            audit=app[AUDIT],
            issuer=app[ISSUER],
            api_key_id=app[ISSUER].api_key_id,
        )


TOKEN_SERVICES = web.AppKey("token_services", TokenServices)
