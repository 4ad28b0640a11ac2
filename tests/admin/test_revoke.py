"""Revocation: `gateway revoke` and the tenant commands purge cached tokens and audit it."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.tokens.directory import add_mapping
from tests.helpers import audit_rows, auth
from tests.servers import env_without_gateway

V1 = "/api/v1/dashboards/iframe-token"
DEFAULT = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
OTHER = {**DEFAULT, "dashboard_id": "dashboard-other"}


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    await add_mapping(db, "org-123", "workspace-456", "dashboard-other", is_default=False)
    await add_mapping(db, "org-999", "workspace-456", "dashboard-999", is_default=True)
    return db


async def gateway_cli(settings, *args: str, redis: bool = True) -> tuple[int, str, str]:
    """Run `python -m gateway ARGS` against the test's database (and Redis prefix)."""
    env = env_without_gateway() | {"GATEWAY_DATABASE_URL": settings.database_url}
    if redis:
        env |= {
            "GATEWAY_REDIS_URL": settings.redis_url,
            "GATEWAY_REDIS_PREFIX": settings.redis_prefix,
        }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def cached_keys(settings) -> list[str]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        return sorted([k async for k in client.scan_iter(match=settings.redis_prefix + "tok:*")])
    finally:
        await client.aclose()


async def fetch(client, body, **kw):
    resp = await client.post(V1, json=body, headers=auth(**kw))
    assert resp.status == 200
    return resp


async def test_revoke_purges_the_tenant_and_is_audited(client, settings, mapped) -> None:
    """After `gateway revoke --tenant`, that tenant's next request mints (a miss) while another
    tenant's token stays cached; the purge is an audit row tokens_revoked with the count."""
    await fetch(client, DEFAULT)
    await fetch(client, OTHER)
    await fetch(client, {**DEFAULT, "tenant_id": "org-999"}, tenant="org-999")
    assert len(await cached_keys(settings)) == 5  # org-123: '*', 789, other; org-999: '*', 999

    code, out, err = await gateway_cli(settings, "revoke", "--tenant", "org-123")
    assert code == 0, err
    assert "revoked 3 cached token(s) of org-123" in out
    assert all("|org-999|" in k for k in await cached_keys(settings))

    after = await fetch(client, DEFAULT)
    (row,) = await audit_rows(mapped, after.headers["X-Request-ID"])
    assert (row["event"], row["cache_hit"]) == ("token_issued", False)
    kept = await fetch(client, {**DEFAULT, "tenant_id": "org-999"}, tenant="org-999")
    (row,) = await audit_rows(mapped, kept.headers["X-Request-ID"])
    assert row["cache_hit"] is True

    (revoked,) = await mapped.fetch("SELECT * FROM audit_events WHERE event = 'tokens_revoked'")
    assert revoked["tenant_id"] == "org-123"
    assert revoked["status"] == 0
    assert revoked["subject"].startswith("cli:")
    assert revoked["detail"] == '{"purged": 3, "source": "revoke"}'


async def test_revoke_one_dashboard(client, settings, mapped) -> None:
    """--dashboard purges that dashboard's tokens, including the default-dashboard entry holding
    it, and leaves the tenant's other dashboards cached."""
    await fetch(client, DEFAULT)
    await fetch(client, OTHER)
    code, out, err = await gateway_cli(
        settings, "revoke", "--tenant", "org-123", "--dashboard", "dashboard-789"
    )
    assert code == 0, err
    assert "revoked 2" in out
    keys = await cached_keys(settings)
    assert len(keys) == 1
    assert keys[0].endswith("|dashboard-other")


async def test_revoke_needs_redis(settings, mapped) -> None:
    """Without GATEWAY_REDIS_URL revoke stops with a configuration error naming it."""
    code, _, err = await gateway_cli(settings, "revoke", "--tenant", "org-123", redis=False)
    assert code == 2
    assert "GATEWAY_REDIS_URL" in err


async def test_tenant_commands_purge_affected_tokens(client, settings, mapped) -> None:
    """`tenants add --default` purges the default-dashboard entries of that tenant and workspace;
    `tenants remove` purges the removed dashboard's tokens; each is audited."""
    await fetch(client, DEFAULT)
    await fetch(client, OTHER)
    code, out, err = await gateway_cli(
        settings,
        "tenants",
        "add",
        "--tenant",
        "org-123",
        "--workspace",
        "workspace-456",
        "--dashboard",
        "dashboard-other",
        "--default",
    )
    assert code == 0, err
    assert "purged 1 cached default-dashboard token(s)" in out
    assert (await (await fetch(client, DEFAULT)).json())["dashboard_id"] == "dashboard-other"

    code, out, err = await gateway_cli(
        settings,
        "tenants",
        "remove",
        "--tenant",
        "org-123",
        "--workspace",
        "workspace-456",
        "--dashboard",
        "dashboard-other",
    )
    assert code == 0, err
    assert "purged 2 cached token(s)" in out
    assert [k for k in await cached_keys(settings) if "dashboard-other" in k] == []
    sources = await mapped.fetch(
        "SELECT detail->>'source' AS source FROM audit_events WHERE event = 'tokens_revoked'"
        " ORDER BY occurred_at"
    )
    assert [r["source"] for r in sources] == ["tenants add --default", "tenants remove"]


async def test_tenant_command_without_redis_says_so(settings, mapped) -> None:
    """Without GATEWAY_REDIS_URL the mapping still changes and a note says nothing was purged."""
    code, out, err = await gateway_cli(
        settings,
        "tenants",
        "remove",
        "--tenant",
        "org-999",
        "--workspace",
        "workspace-456",
        "--dashboard",
        "dashboard-999",
        redis=False,
    )
    assert code == 0, err
    assert "removed org-999" in out
    assert "GATEWAY_REDIS_URL is not set" in err


async def test_adding_a_second_dashboard_purges_the_default_entry(client, settings, db) -> None:
    """With one non-default dashboard a tenant gets it by default; adding a second makes the
    default ambiguous, so `tenants add` purges the cached default entry and the next request
    is 404, not the old token."""
    await add_mapping(db, "org-5", "ws-5", "solo", is_default=False)
    first = await client.post(
        V1, json={"tenant_id": "org-5", "workspace_id": "ws-5"}, headers=auth(tenant="org-5")
    )
    assert (await first.json())["dashboard_id"] == "solo"
    code, out, err = await gateway_cli(
        settings, "tenants", "add", "--tenant", "org-5", "--workspace", "ws-5", "--dashboard", "two"
    )
    assert code == 0, err
    assert "purged 1 cached default-dashboard token(s)" in out
    again = await client.post(
        V1, json={"tenant_id": "org-5", "workspace_id": "ws-5"}, headers=auth(tenant="org-5")
    )
    assert again.status == 404


async def test_tenant_change_saved_when_redis_is_down(settings, db) -> None:
    """Redis unreachable: the mapping change is committed, and the command says the purge
    failed and how to finish it, with its own exit code."""
    broken = replace(settings, redis_url="redis://127.0.0.1:1/0")
    code, out, err = await gateway_cli(
        broken,
        "tenants",
        "add",
        "--tenant",
        "org-6",
        "--workspace",
        "ws-6",
        "--dashboard",
        "d6",
        "--default",
    )
    assert code == 3, (out, err)
    assert "mapped org-6 / ws-6 -> d6" in out
    assert "gateway revoke --tenant org-6" in err
    assert await db.fetchval("SELECT is_default FROM tenant_dashboards WHERE tenant_id = 'org-6'")
