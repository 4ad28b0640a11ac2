"""The `gateway` command as a user runs it: tenants admin, migrate, and start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg


def gateway(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_tenants_add_list_remove(database_url: str, db: asyncpg.Connection) -> None:
    """add maps (and --default sets the default), list shows it, remove deletes it."""
    env = {"GATEWAY_DATABASE_URL": database_url}
    add = gateway(
        "tenants", "add", "--tenant", "org-7", "--workspace", "ws-7", "--dashboard", "d-7",
        "--default", env=env,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    row = await db.fetchrow("SELECT * FROM tenant_dashboards WHERE tenant_id = 'org-7'")
    assert (row["workspace_id"], row["dashboard_id"], row["is_default"]) == ("ws-7", "d-7", True)

    listed = gateway("tenants", "list", "--tenant", "org-7", env=env)
    assert listed.returncode == 0
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[1].split()[:4] == ["org-7", "ws-7", "d-7", "yes"]

    rm = gateway(
        "tenants", "remove", "--tenant", "org-7", "--workspace", "ws-7", "--dashboard", "d-7",
        env=env,
    )  # fmt: skip
    assert rm.returncode == 0
    assert await db.fetchval("SELECT count(*) FROM tenant_dashboards") == 0
    again = gateway(
        "tenants", "remove", "--tenant", "org-7", "--workspace", "ws-7", "--dashboard", "d-7",
        env=env,
    )  # fmt: skip
    assert again.returncode == 1
    assert "no mapping" in again.stderr


def test_tenants_add_rejects_a_bad_id(database_url: str) -> None:
    """Ids follow the same rule as the API; a bad one is refused before touching the database."""
    result = gateway(
        "tenants", "add", "--tenant", "bad tenant", "--workspace", "w", "--dashboard", "d",
        env={"GATEWAY_DATABASE_URL": database_url},
    )  # fmt: skip
    assert result.returncode == 2
    assert "not a valid id" in result.stderr


def test_migrate_twice(database_url: str) -> None:
    """On a migrated database, `gateway migrate` says there is nothing to do."""
    result = gateway("migrate", env={"GATEWAY_DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    assert "nothing to apply" in result.stdout


def test_serve_refuses_a_short_signing_secret() -> None:
    """A bad setting stops start-up with one line naming the variable, and no secret."""
    env = {
        "GATEWAY_DATABASE_URL": "postgresql://127.0.0.1/x",
        "GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0",
        "GATEWAY_API_KEY_ID": "k",
        "GATEWAY_SIGNING_SECRET": "too-short-secret",
        "GATEWAY_JWT_SECRET": "j" * 40,
    }
    result = gateway("serve", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "GATEWAY_SIGNING_SECRET" in lines[0]
    assert "too-short-secret" not in result.stderr
