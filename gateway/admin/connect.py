"""The CLI's connections: PostgreSQL and Redis, configured exactly as the service's."""

from __future__ import annotations

import asyncpg

from gateway.infra.redis_client import AnyRedis, create_redis, parse_redis_url
from gateway.settings import (
    RedisTarget,
    database_url_from_env,
    statement_cache_size_from_env,
)


async def connect_database() -> asyncpg.Connection:
    """GATEWAY_DATABASE_URL, with GATEWAY_DB_STATEMENT_CACHE_SIZE (0 behind PgBouncer)."""
    return await asyncpg.connect(
        database_url_from_env(), statement_cache_size=statement_cache_size_from_env()
    )


def connect_redis(target: RedisTarget) -> AnyRedis:
    """The service's client factory, with patient deadlines for a one-off command."""
    return create_redis(target, timeout=5.0, max_connections=4, health_check_interval=0)


def describe(target: RedisTarget) -> str:
    """Where a command went, for its output: mode, hosts (never a password) and prefix."""
    if target.url.startswith("unix:"):
        hosts = target.url.split("?", 1)[0].split("@")[-1]
    else:
        hosts = ",".join(f"{h}:{p}" for h, p in parse_redis_url(target.url).hosts)
    return f"redis {target.mode} {hosts} prefix {target.prefix!r}"
