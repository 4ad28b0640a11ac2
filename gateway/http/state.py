"""Typed application state: one AppKey per shared object."""

from __future__ import annotations

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
