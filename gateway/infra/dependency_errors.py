"""Which failures mean "PostgreSQL (or Redis) is not answering right now", for every caller."""

from __future__ import annotations

import asyncpg
from redis.exceptions import RedisError

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

# Redis failures a caller degrades on (cache miss, fail-open limiter) rather than answering 500.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)
