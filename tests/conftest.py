"""Fixtures: real PostgreSQL and Redis (the machine's when given, else embedded), private servers
for fault tests (from the same starter as `gateway dev`), the real app."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.dev.child import ChildServer
from gateway.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from gateway.ops.runner import GatewayRunner
from gateway.ops.serve import server_limits
from gateway.settings import Settings
from tests.helpers import API_KEY_ID, JWT_SECRET, SIGNING_SECRET, throwaway_database
from tests.jwks_server import AUDIENCE, ISSUER, JwksServer, test_keys
from tests.proxy import TcpProxy


def _given_or_embedded(variable: str, server: type[ChildServer]) -> Iterator[str]:
    given = os.environ.get(variable)
    if given:
        yield given
        return
    with server() as started:
        yield started.url


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """DSN of a PostgreSQL server: GATEWAY_TEST_DATABASE_URL's, or an embedded one."""
    yield from _given_or_embedded("GATEWAY_TEST_DATABASE_URL", EmbeddedPostgres)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """URL of a Redis server: GATEWAY_TEST_REDIS_URL's, or an embedded one."""
    yield from _given_or_embedded("GATEWAY_TEST_REDIS_URL", EmbeddedRedis)


@pytest.fixture
def server_dir() -> Iterator[pathlib.Path]:
    """A directory for a server's data outside pytest's temp root: a concurrent pytest session
    resets that root to mode 0700, locking out the system user PostgreSQL runs as under root."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="gw-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own (its command counts are ours alone), to stop and start at will;
    the port stays the same across restarts."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def proxied(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A cuttable TCP proxy in front of the test database, and the DSN through it."""
    proxy, dsn = TcpProxy.for_dsn(database_url)
    yield proxy, dsn
    proxy.close()


@pytest.fixture
def private_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, to stop and start at will (same port, same data)."""
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> Iterator[str]:
    """A database of this test run's own, migrated; dropped at the end."""
    with throwaway_database(pg_server, "gw_test_") as dsn:
        yield dsn


@pytest.fixture(scope="session")
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix of this test run's own; its keys are deleted at the end."""
    prefix = f"gwtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_server)
    try:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database, with both tables emptied for this test."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("TRUNCATE tenant_dashboards, audit_events")
    yield conn
    await conn.close()


@pytest.fixture
def settings(
    database_url: str, redis_server: str, redis_prefix: str, tmp_path: pathlib.Path
) -> Settings:
    """Settings for one test: its own Redis key prefix and audit spool, quick audit flushes."""
    return Settings(
        database_url=database_url,
        redis_url=redis_server,
        api_key_id=API_KEY_ID,
        signing_secret=SIGNING_SECRET,
        jwt_secret=JWT_SECRET,
        redis_prefix=f"{redis_prefix}{uuid.uuid4().hex[:8]}:",
        audit_flush_interval=0.02,
        # A shared CI machine can stall a loopback round trip; the default 50 ms is for production.
        redis_timeout=2.0,
        db_timeout=5.0,
        audit_spool_dir=str(tmp_path / "audit-spool"),
        # Limits stay on but out of the way; tests of the limiters set their own.
        rate_limit_requests_per_second=10_000.0,
        rate_limit_request_burst=10_000,
        rate_limit_subject_mints=100_000,
        rate_limit_tenant_mints=100_000,
        # Tests see Redis on every request; the per-worker tier is tested where it is switched on.
        local_cache_ttl=0.0,
    )


class GatewayTestServer(TestServer):
    """A test server running the app as `gateway serve` does (its connection handler, and the
    token paths answered ahead of the router)."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return GatewayRunner(self.app, **kwargs)


@pytest.fixture
def make_client(aiohttp_client: Any, db: asyncpg.Connection) -> Callable[..., Any]:
    """Start the real app (create_app) with settings changed as given, and return a test client."""

    async def start(
        settings: Settings, *, factory: Callable[[Settings], Any] = create_app, **changes: Any
    ) -> Any:
        app_settings = replace(settings, **changes)
        server = GatewayTestServer(factory(app_settings))
        # The server limits `gateway serve` uses; aiohttp_client would start it with defaults.
        await server.start_server(**server_limits(app_settings))
        return await aiohttp_client(server)

    return start


@pytest.fixture
async def client(make_client: Callable[..., Any], settings: Settings) -> Any:
    """A test client of the app with the default test settings."""
    return await make_client(settings)


@pytest.fixture
async def jwks(aiohttp_server: Any) -> JwksServer:
    """A JWKS server on 127.0.0.1 publishing the RSA, EC and Ed25519 test keys."""
    keys = test_keys()
    server = JwksServer(keys=[keys.rsa.jwk(), keys.ec.jwk(), keys.ed.jwk()])
    started = await aiohttp_server(server.app())
    server.url = str(started.make_url("/jwks.json"))
    return server


@pytest.fixture
def jwks_settings(settings: Settings, jwks: JwksServer) -> Settings:
    """Settings with the HS secret and the JWKS keys, an issuer and an audience."""
    return replace(
        settings,
        jwt_jwks_url=jwks.url,
        jwt_algorithms=("HS256", "RS256", "ES256", "EdDSA"),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_jwks_timeout=2.0,
    )
