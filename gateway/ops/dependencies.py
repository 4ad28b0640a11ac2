"""Naming a dependency for a human: which variable points at it, and where (never a password)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from redis.exceptions import RedisError

from gateway.settings import Settings

log = logging.getLogger(__name__)
Ping = Callable[[], Awaitable[Any]]
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379}


def where(url: str) -> str:
    """host:port (or the socket path) of a DSN or URL; user, password and query left out."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        # A list of cluster seeds or sentinels ("a:1,b:2"): the hosts as given, no credentials.
        return parts.netloc.rpartition("@")[2]
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


async def _check_redis(settings: Settings, ping: Ping, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await ping()
    except (RedisError, OSError, TimeoutError) as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        log.error(
            "%s; retrying in the background",
            unreachable_line("GATEWAY_REDIS_URL", "Redis", settings.redis_url, cause),
            extra={"dependency": "redis"},
        )


async def log_unreachable(settings: Settings, ping_redis: Ping, timeout: float = 2.0) -> None:
    """At start: one error line per dependency that does not answer; the service keeps going.

    Redis is pinged through the service's own client (`ping_redis`), so a cluster or sentinel
    deployment is checked the way the service will reach it.
    """
    await asyncio.gather(
        _check_postgres(settings, timeout), _check_redis(settings, ping_redis, timeout)
    )
