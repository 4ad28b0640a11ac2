"""`gateway migrate`: each file once, a second run a no-op, concurrent runs safe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.ops.migrate import load_migrations, migrate
from tests.helpers import database_on


@pytest.fixture
async def empty_db(pg_server: str) -> AsyncIterator[str]:
    """A brand-new empty database, dropped afterwards."""
    name = f"gw_mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_on(pg_server, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_second_run_applies_nothing(empty_db: str) -> None:
    """The first run applies every file in order and records it; the second applies none."""
    conn = await asyncpg.connect(empty_db)
    try:
        names = [m.name for m in load_migrations()]
        assert await migrate(conn) == names
        assert await migrate(conn) == []
        recorded = await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")
        assert [r["name"] for r in recorded] == names
        assert await conn.fetchval("SELECT to_regclass('audit_events') IS NOT NULL")
    finally:
        await conn.close()


async def test_concurrent_runs_do_not_fail(empty_db: str) -> None:
    """Four instances migrating at once: no error, and every file applied exactly once."""
    conns = [await asyncpg.connect(empty_db) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = [name for result in results for name in result]
        assert sorted(applied) == sorted(m.name for m in load_migrations())
    finally:
        for c in conns:
            await c.close()
