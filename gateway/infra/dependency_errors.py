"""Which failures mean "PostgreSQL (or Redis) is not answering right now", for every caller."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import asyncpg
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

log = logging.getLogger(__name__)

# Failures of the connection, not of a statement: worth retrying once the server is back.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    # A server shutting down or starting up ("terminating connection", 57P01/57P03).
    asyncpg.exceptions.OperatorInterventionError,
    # A pooled connection caught mid-operation when the server went away ("cannot switch to
    # state ...; another operation is in progress"): another connection will do.
    asyncpg.exceptions.InternalClientError,
)

# For background writers, any PostgreSQL error is retried too: the batch is kept either way.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *CONNECTION_ERRORS)

# On the request path every PostgreSQL failure is "the directory is unavailable" (a 503): a
# pooler's error (PgBouncer: a prepared statement that does not exist) is no reason for a 500.
REQUEST_DATABASE_ERRORS: tuple[type[BaseException], ...] = DATABASE_ERRORS

# Redis failures a caller degrades on (cache miss, fail-open limiter) rather than answering 500.
# RedisClusterException does not derive from RedisError (topology refresh failures, slots not
# covered), so it is named here.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)

# Error replies that mean the deployment does not match the configuration (a cluster behind a
# standalone client, a replica behind a primary's address, an old server): no retry will help.
# Inside a script the reply is wrapped ("Error running script ...: -READONLY ..."), so the
# code is looked for anywhere in the message.
_CONFIG_REPLY = re.compile(
    r"(?:^|[\s-])(MOVED|ASK|CROSSSLOT|READONLY|CLUSTERDOWN)\b|unknown command"
)
_KINDS = {"ASK": "moved", "MOVED": "moved"}

_listener: Callable[[str], None] = lambda _kind: None  # noqa: E731 - replaced by the app
_logged: set[str] = set()


def on_config_error(listener: Callable[[str], None]) -> None:
    """Count configuration errors (a metric) with `listener(kind)`; set once by the app.

    A module-level hook, because the stores and limiters that see the errors sit below ops/.
    """
    global _listener
    _listener = listener


def config_error_kind(exc: BaseException) -> str | None:
    """The kind of configuration problem an error reply names, or None for an outage."""
    if isinstance(exc, RedisClusterException):
        return "cluster"
    if isinstance(exc, ReadOnlyError):
        return "readonly"
    if isinstance(exc, AskError):  # MovedError derives from it
        return "moved"
    if isinstance(exc, ClusterDownError):
        return "clusterdown"
    if isinstance(exc, ResponseError):
        found = _CONFIG_REPLY.search(str(exc))
        if found is not None:
            code = found.group(1)
            return "unknown_command" if code is None else _KINDS.get(code, code.lower())
    return None


def note_redis_error(exc: BaseException, what: str) -> None:
    """Log a Redis failure: a configuration problem once per kind (at error), else at debug."""
    kind = config_error_kind(exc)
    if kind is None:
        log.debug("redis %s failed: %s", what, type(exc).__name__)
        return
    _listener(kind)
    if kind not in _logged:
        _logged.add(kind)
        log.error(
            "redis answered %s to a %s: the deployment does not match GATEWAY_REDIS_MODE /"
            " GATEWAY_REDIS_URL (see README, Deploying at scale); counted in"
            " gateway_redis_config_errors_total",
            kind.upper(),
            what,
        )
