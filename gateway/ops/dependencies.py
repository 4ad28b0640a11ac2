"""Naming a dependency for a human: which variable points at it, and where (never a password)."""

from __future__ import annotations

import asyncio
import logging
import socket
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.settings import Settings

log = logging.getLogger(__name__)
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379}


def where(url: str) -> str:
    """host:port (or the socket path) of a DSN or URL; user, password and query left out."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        port = 0
    host = parts.hostname or "localhost"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def why(exc: BaseException) -> str:
    """A short cause for a failed connection, without the exception's text (it may quote a DSN)."""
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__


def unreachable_line(variable: str, what: str, url: str, exc: BaseException) -> str:
    """The one line an operator needs when a dependency cannot be reached."""
    return f"{what} unreachable at {where(url)} ({variable}): {why(exc)}"


async def _check_postgres(settings: Settings, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            conn = await asyncpg.connect(settings.database_url)
            await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.error(
            "%s; retrying in the background",
            unreachable_line("GATEWAY_DATABASE_URL", "PostgreSQL", settings.database_url, exc),
            extra={"dependency": "postgresql"},
        )


async def _check_redis(settings: Settings, timeout: float) -> None:
    client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            await client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        log.error(
            "%s; retrying in the background",
            unreachable_line("GATEWAY_REDIS_URL", "Redis", settings.redis_url, cause),
            extra={"dependency": "redis"},
        )
    finally:
        await client.aclose()


async def log_unreachable(settings: Settings, timeout: float = 2.0) -> None:
    """At start: one error line per dependency that does not answer; the service keeps going."""
    await asyncio.gather(_check_postgres(settings, timeout), _check_redis(settings, timeout))
