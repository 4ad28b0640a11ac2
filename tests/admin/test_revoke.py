"""Revocation: `gateway revoke` and the tenant commands revoke cached tokens and audit it."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace

import asyncpg
import pytest

from gateway.tokens.directory import add_mapping
from tests.helpers import audit_rows, auth, tenants_args
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


async def event_of(db: asyncpg.Connection, response) -> tuple[str, bool]:
    (row,) = await audit_rows(db, response.headers["X-Request-ID"])
    return row["event"], row["cache_hit"]


async def fetch(client, body, **kw):
    resp = await client.post(V1, json=body, headers=auth(**kw))
    assert resp.status == 200
    return resp


async def test_revoke_reaches_the_tenant_and_is_audited(client, settings, mapped) -> None:
    """After `gateway revoke --tenant`, that tenant's next requests mint while another tenant's
    token stays cached; the command names its Redis and prefix; an audit row tokens_revoked."""
    await fetch(client, DEFAULT)
    await fetch(client, OTHER)
    await fetch(client, {**DEFAULT, "tenant_id": "org-999"}, tenant="org-999")
    assert await event_of(mapped, await fetch(client, DEFAULT)) == ("token_reused", True)

    code, out, err = await gateway_cli(settings, "revoke", "--tenant", "org-123")
    assert code == 0, err
    assert "revoked every cached token of org-123 (generation 1)" in out
    assert f"prefix '{settings.redis_prefix}'" in out
    assert "warning" not in err

    after = await fetch(client, DEFAULT)
    # Minted anew (a v1 token minted in the same second has the same bytes, so the event is
    # what tells a new mint from a served revoked entry).
    assert await event_of(mapped, after) == ("token_issued", False)
    assert await event_of(mapped, await fetch(client, OTHER)) == ("token_issued", False)
    kept = await fetch(client, {**DEFAULT, "tenant_id": "org-999"}, tenant="org-999")
    assert await event_of(mapped, kept) == ("token_reused", True)

    (revoked,) = await mapped.fetch("SELECT * FROM audit_events WHERE event = 'tokens_revoked'")
    assert revoked["tenant_id"] == "org-123"
    assert revoked["status"] == 0
    assert revoked["subject"].startswith("cli:")
    assert revoked["detail"] == '{"source": "revoke", "generation": 1}'


async def test_revoke_one_dashboard(client, settings, mapped) -> None:
    """--dashboard revokes that dashboard's tokens, including the default-dashboard entry that
    holds it, and leaves the tenant's other dashboards cached."""
    await fetch(client, DEFAULT)
    await fetch(client, OTHER)
    code, out, err = await gateway_cli(
        settings, "revoke", "--tenant", "org-123", "--dashboard", "dashboard-789"
    )
    assert code == 0, err
    assert "revoked every cached token of org-123 / dashboard-789" in out
    assert await event_of(mapped, await fetch(client, DEFAULT)) == ("token_issued", False)
    explicit = {**DEFAULT, "dashboard_id": "dashboard-789"}
    assert await event_of(mapped, await fetch(client, explicit)) == ("token_reused", True)
    assert await event_of(mapped, await fetch(client, OTHER)) == ("token_reused", True)


async def test_revoke_warns_about_a_prefix_no_gateway_uses(settings, mapped) -> None:
    """Run with a prefix no gateway ever started with, revoke says so (it revoked nothing)."""
    unused = replace(settings, redis_prefix=settings.redis_prefix + "typo:")
    code, out, err = await gateway_cli(unused, "revoke", "--tenant", "org-123")
    assert code == 0, err
    assert f"prefix '{unused.redis_prefix}'" in out
    assert "warning: no gateway has used prefix" in err


async def test_revoke_needs_redis(settings, mapped) -> None:
    """Without GATEWAY_REDIS_URL revoke stops with a configuration error naming it."""
    code, _, err = await gateway_cli(settings, "revoke", "--tenant", "org-123", redis=False)
    assert code == 2
    assert "GATEWAY_REDIS_URL" in err


async def test_tenant_commands_revoke_affected_tokens(client, settings, mapped) -> None:
    """`tenants add --default` revokes the default-dashboard entries of that tenant and
    workspace; `tenants remove` revokes the removed dashboard's tokens; each is audited as
    mapping_changed, never as tokens_revoked."""
    await fetch(client, DEFAULT)
    await fetch(client, OTHER)
    code, out, err = await gateway_cli(
        settings,
        *tenants_args("add", "dashboard-other", default=True),
    )
    assert code == 0, err
    assert "revoked cached default-dashboard tokens of org-123 / workspace-456" in out
    assert (await (await fetch(client, DEFAULT)).json())["dashboard_id"] == "dashboard-other"

    code, out, err = await gateway_cli(
        settings,
        *tenants_args("remove", "dashboard-other"),
    )
    assert code == 0, err
    assert "revoked cached tokens of org-123 / dashboard-other" in out
    gone = await client.post(V1, json=OTHER, headers=auth())
    assert gone.status == 404  # the cached token of the removed dashboard is not served
    rows = await mapped.fetch(
        "SELECT event, detail->>'action' AS action, detail->>'revoked' AS revoked"
        " FROM audit_events WHERE status = 0 ORDER BY occurred_at"
    )
    assert [tuple(r) for r in rows] == [
        ("mapping_changed", "add", "default_alias"),
        ("mapping_changed", "remove", "dashboard"),
    ]


async def test_adding_a_non_default_dashboard_revokes_nothing(client, settings, mapped) -> None:
    """With a default in place, `tenants add` without --default changes no cached answer: it
    revokes nothing and writes no tokens_revoked row, only mapping_changed."""
    await fetch(client, DEFAULT)
    code, out, err = await gateway_cli(
        settings,
        *tenants_args("add", "dashboard-third"),
    )
    assert code == 0, err
    assert "no cached token needed revoking" in out
    assert await event_of(mapped, await fetch(client, DEFAULT)) == ("token_reused", True)
    events = await mapped.fetch("SELECT event, detail FROM audit_events WHERE status = 0")
    assert [r["event"] for r in events] == ["mapping_changed"]
    assert '"revoked": null' in events[0]["detail"]


async def test_tenant_command_without_redis_says_so(settings, mapped) -> None:
    """Without GATEWAY_REDIS_URL the mapping still changes and a note says nothing was purged."""
    code, out, err = await gateway_cli(
        settings,
        *tenants_args("remove", "dashboard-999", tenant="org-999"),
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
    assert "revoked cached default-dashboard tokens of org-5 / ws-5" in out
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
        *tenants_args("add", "d6", tenant="org-6", workspace="ws-6", default=True),
    )
    assert code == 3, (out, err)
    assert "mapped org-6 / ws-6 -> d6" in out
    assert "gateway revoke --tenant org-6" in err
    assert await db.fetchval("SELECT is_default FROM tenant_dashboards WHERE tenant_id = 'org-6'")
