"""PostgreSQL behind PgBouncer in transaction mode (a real pgbouncer process): concurrent
migrations, repeated tenant commands, and token requests that never answer 500."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import asyncpg
import pytest

from tests.helpers import tenants_args
from tests.scenarios.scale import cli, instances
from tests.topology import PGBOUNCER_INSTALLED, PgBouncerProc

TRANSACTION_POOLING = {"GATEWAY_DB_STATEMENT_CACHE_SIZE": "0"}
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}


@pytest.fixture(scope="module")
def pgbouncer(pg_server: str) -> Iterator[PgBouncerProc]:
    if not PGBOUNCER_INSTALLED:
        pytest.skip(
            "!! PgBouncer is not installed (apt-get install pgbouncer; .ci/run does it):"
            " the PgBouncer scenarios did NOT run"
        )
    proc = PgBouncerProc(pg_server).start()
    yield proc
    proc.stop()


@pytest.fixture
async def fresh_database(pg_server: str) -> AsyncIterator[str]:
    """A new, empty database (no schema yet): its DSN on the server itself."""
    name = f"gw_pgb_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.rsplit("/", 1)[0] + "/" + name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def test_five_concurrent_migrations_through_pgbouncer(
    settings, pgbouncer: PgBouncerProc, fresh_database: str
) -> None:
    """Five `gateway migrate` at once through PgBouncer: all succeed, the schema is applied
    once, and no advisory lock is left behind for a later run."""
    through = replace(settings, database_url=pgbouncer.dsn_for(fresh_database))
    runs = await asyncio.gather(*(cli(through, "migrate", **TRANSACTION_POOLING) for _ in range(5)))
    assert [code for code, _, _ in runs] == [0] * 5, [err for _, _, err in runs]
    applied = [out for _, out, _ in runs if out.startswith("applied:")]
    assert len(applied) == 1, [out for _, out, _ in runs]
    code, out, err = await asyncio.wait_for(cli(through, "migrate", **TRANSACTION_POOLING), 30)
    assert (code, out.strip()) == (0, "nothing to apply; schema is current"), err
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await conn.close()


async def test_tenant_commands_and_token_requests_through_pgbouncer(
    settings, pgbouncer: PgBouncerProc, db: asyncpg.Connection, tmp_path
) -> None:
    """`tenants add` x20 through PgBouncer all succeed; a gateway whose pool goes through
    PgBouncer serves tokens, and even with the statement cache left on (the misconfiguration)
    a failing lookup is a 503, never a 500."""
    through = replace(settings, database_url=pgbouncer.dsn_for(settings.database_url))
    code, _out, err = await cli(
        through,
        *tenants_args("add", "dash-0", default=True),
        **TRANSACTION_POOLING,
    )
    assert code == 0, err
    for batch in range(1, 20, 5):  # five commands at a time: each is a new process
        runs = await asyncio.gather(
            *(
                cli(
                    through,
                    *tenants_args("add", f"dash-{i}"),
                    **TRANSACTION_POOLING,
                )
                for i in range(batch, min(batch + 5, 20))
            )
        )
        assert [code for code, _, _ in runs] == [0] * len(runs), [err for _, _, err in runs]
    assert await db.fetchval("SELECT count(*) FROM tenant_dashboards") == 20

    env = TRANSACTION_POOLING | {"GATEWAY_RATE_LIMIT_REQUESTS_PER_SECOND": "0"}
    async with instances(through, 1, tmp_path, **env) as gw:
        answers = await asyncio.gather(
            *(gw.token(0, {**BODY, "dashboard_id": f"dash-{i % 20}"}) for i in range(100))
        )
        assert {status for status, _ in answers} == {200}
    assert 500 not in gw.statuses

    cached = {
        "GATEWAY_DB_STATEMENT_CACHE_SIZE": "256",
        "GATEWAY_RATE_LIMIT_REQUESTS_PER_SECOND": "0",
    }
    async with instances(through, 1, tmp_path, **cached) as gw:
        await asyncio.gather(
            *(
                gw.token(0, {**BODY, "dashboard_id": f"dash-{i % 20}"}, sub=f"s-{i}")
                for i in range(100)
            )
        )
    print("statement cache on behind PgBouncer:", dict(gw.statuses))
    assert set(gw.statuses) <= {200, 503}, gw.statuses
