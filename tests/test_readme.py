"""Every marked README example is the real output of its command (see tests/readme.py)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from gateway.audit.partitions import ensure_partitions
from gateway.dev.embedded import _postgres_bin_dir
from gateway.dev.server import banner
from gateway.ops.migrate import migrate
from gateway.settings import VARIABLES
from gateway.tokens.directory import add_mapping
from tests.helpers import auth, database_on, make_jwt, throwaway_database
from tests.readme import README, check, examples

# A hand-made audit trail, relative to now() so the views' windows always see the same rows:
# two hours of issuance 2-3 hours ago, a week of baseline, a burst in the last half hour, and
# two refusals.
DATA_SET = """
INSERT INTO audit_events (event_id, occurred_at, event, status, request_id, subject, tenant_id,
                          workspace_id, dashboard_id, client_ip, latency_ms, detail)
SELECT gen_random_uuid(), t, e, s, r, sub, tenant, 'workspace-456', dash, ip::inet, ms, d::jsonb
FROM (
  SELECT date_trunc('hour', now()) - interval '3 hours' + i * interval '80 seconds' AS t,
         'token_issued' AS e, 200 AS s, 'h3-' || i AS r, 'u' || (i % 7) AS sub,
         'org-123' AS tenant, 'dashboard-789' AS dash, '10.1.2.3' AS ip,
         3.0 + (i % 5) * 0.42 AS ms, NULL AS d
  FROM generate_series(1, 33) i
  UNION ALL
  SELECT date_trunc('hour', now()) - interval '3 hours' + i * interval '100 seconds',
         'token_reused', 200, 'r3-' || i, 'u' || (i % 3), 'org-123', 'dashboard-789', '10.1.2.3',
         0.8, NULL
  FROM generate_series(1, 23) i
  UNION ALL
  SELECT date_trunc('hour', now()) - interval '2 hours' + i * interval '5 minutes',
         'token_issued', 200, 'h2-' || i, 'u' || i, 'org-123', 'dashboard-789', '10.1.2.3',
         5.1 + i * 0.13, NULL
  FROM generate_series(1, 9) i
  UNION ALL
  SELECT now() - interval '2 hours' - i * interval '1 hour', 'token_issued', 200, 'b-' || i,
         'u' || (i % 5), 'org-123', 'dashboard-789', '10.1.2.3', 4.0, NULL
  FROM generate_series(0, 125) i
  UNION ALL
  SELECT date_trunc('second', now()) - i * interval '20 seconds', 'token_issued', 200,
         'burst-' || i, 'u' || (i % 9), 'org-123', 'dashboard-789', '10.1.2.3', 6.0, NULL
  FROM generate_series(1, 42) i
  UNION ALL
  SELECT date_trunc('second', now()) - interval '5 minutes', 'access_denied', 403, '9b1d22',
         'u9', 'org-999', NULL, '10.1.2.3', 0.6,
         '{"reason": "tenant_mismatch", "code": "forbidden"}'
  UNION ALL
  SELECT date_trunc('second', now()) - interval '10 minutes', 'auth_failed', 401, '3f9c0a',
         NULL, NULL, NULL, '203.0.113.9', 0.4, '{"reason": "expired", "code": "unauthenticated"}'
) AS rows (t, e, s, r, sub, tenant, dash, ip, ms, d);
"""

VIEW_QUERIES = [
    (
        "SELECT * FROM audit_hourly WHERE hour BETWEEN date_trunc('hour', now()) - interval"
        " '3 hours' AND date_trunc('hour', now()) - interval '2 hours' ORDER BY hour, tenant_id,"
        " event;",
        "",
    ),
    ("SELECT * FROM audit_denials_recent;", "-- auth_failed/access_denied/rate_limited, 24 h"),
    ("SELECT * FROM audit_unusual_issuance;", "-- last hour > 3x the 7-day hourly average"),
]


@pytest.fixture(scope="module")
def audit_dsn(pg_server: str) -> Iterator[str]:
    """A throwaway database, migrated, holding DATA_SET."""
    with throwaway_database(pg_server, "gw_readme_", DATA_SET) as dsn:
        yield dsn


def _gateway(*args: str, dsn: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env | {"GATEWAY_DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return f"$ gateway {' '.join(args)}\n{result.stdout}"


def test_every_example_in_the_readme_has_a_test() -> None:
    """No marked block is left without a renderer below, and none is missing."""
    assert set(examples()) == {
        "audit-views",
        "audit-tail",
        "audit-maintain",
        "api-token",
        "api-error",
        "dev-banner",
    }


def test_audit_views(audit_dsn: str) -> None:
    """The SRE views, as psql prints them over the data set."""
    psql = _postgres_bin_dir() / "psql"
    out = []
    for query, comment in VIEW_QUERIES:
        result = subprocess.run(
            [str(psql), "-X", "-q", "-P", "pager=off", "-d", audit_dsn, "-c", query],
            env={**os.environ, "PGTZ": "UTC"},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        rows = result.stdout.rstrip("\n").splitlines()
        # psql's own "(N rows)" footer says nothing the table does not.
        out += [f"=> {query}{'    ' + comment if comment else ''}", *rows[:-1], ""]
    check("audit-views", "\n".join(out))


def test_audit_hourly_percentiles_are_rounded(audit_dsn: str) -> None:
    """p50/p95 come rounded to 0.01 ms, not 74.10014999999999."""

    async def percentiles() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(audit_dsn)
        try:
            return await conn.fetch("SELECT p50_ms, p95_ms FROM audit_hourly")
        finally:
            await conn.close()

    rows = asyncio.run(percentiles())
    assert rows
    for row in rows:
        for value in row.values():
            assert value == round(value, 2)
            assert len(repr(value).split(".")[1]) <= 2


def test_audit_tail(audit_dsn: str) -> None:
    """`gateway audit tail -n 3` over the data set."""
    check("audit-tail", _gateway("audit", "tail", "-n", "3", dsn=audit_dsn))


def test_audit_maintain_and_prune(pg_server: str) -> None:
    """`maintain` on a fresh database, then `prune` after ten days of old partitions."""
    name = f"gw_readme_{uuid.uuid4().hex[:10]}"
    dsn = database_on(pg_server, name)

    async def run(sql_or_days: str | int) -> None:
        conn = await asyncpg.connect(pg_server if isinstance(sql_or_days, str) else dsn)
        try:
            if isinstance(sql_or_days, str):
                await conn.execute(sql_or_days)
            elif sql_or_days == 0:
                await migrate(conn)
            else:
                await ensure_partitions(conn, days_back=sql_or_days, days_ahead=0)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(run(0))
        maintain = _gateway("audit", "maintain", dsn=dsn)
        asyncio.run(run(10))  # as if the service had run for ten days
        pruned = _gateway("audit", "prune", "--keep-days", "7", dsn=dsn)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    check("audit-maintain", maintain + pruned)


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return db


async def test_api_token_and_error(client, mapped) -> None:
    """The token endpoint's answer, and its error shape, byte for byte as curl -s shows them."""
    body = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
    ok = await client.post("/api/v1/dashboards/iframe-token", json=body, headers=auth())
    assert ok.status == 200
    check("api-token", await ok.text())
    denied = await client.post(
        "/api/v1/dashboards/iframe-token",
        json={**body, "tenant_id": "org-999"},
        headers=auth(),
    )
    assert denied.status == 403
    check("api-error", await denied.text())


def test_dev_banner() -> None:
    """What `gateway dev` prints once it is ready."""
    token = make_jwt(secret=b"d" * 48)
    dsn = "postgresql://postgres@127.0.0.1:41537/postgres"
    check("dev-banner", banner("http://127.0.0.1:8080", token, dsn).strip("\n"))


_DEFAULT_ROW = re.compile(r"^\| `(GATEWAY_[A-Z0-9_]+)` \| `([^`]*)` \|", re.MULTILINE)


def _same(documented: str, default: object) -> bool:
    if isinstance(default, bool):
        return documented == str(default).lower()
    if isinstance(default, int | float):
        return float(documented) == float(default)
    return documented == default


def test_configuration_tables_match_the_settings_registry() -> None:
    """Each documented default is the registry's, and every variable is documented."""
    text = README.read_text()
    by_name = {var.name: var for var in VARIABLES.values()}
    rows = _DEFAULT_ROW.findall(text)
    assert len(rows) > 20
    for name, documented in rows:
        assert name in by_name, f"README documents {name}, which nothing reads"
        assert _same(documented, by_name[name].default), (name, documented)
    undocumented = [name for name in by_name if f"`{name}`" not in text]
    assert undocumented == []


def test_the_docs_stand_alone() -> None:
    """The README and docs/CONTRACT.md point at nothing outside the repository, the contract
    covers token format, API, errors, configuration and tables, and the quick start makes a
    virtualenv before installing."""
    contract = README.parent / "docs" / "CONTRACT.md"
    text = README.read_text()
    for doc in (text, contract.read_text()):
        assert "../shared" not in doc
        assert "shared folder" not in doc
        for target in re.findall(r"\]\(([^)#]+)", doc):
            if not target.startswith("http"):
                base = README.parent if doc is text else contract.parent
                assert (base / target).exists(), target
    assert "(docs/CONTRACT.md)" in text
    for heading in ("## Embed token", "## HTTP API", "## Configuration", "## Tables"):
        assert heading in contract.read_text()
    quick = text[text.index("## Quick start") : text.index("gateway dev\n```")]
    commands = quick[quick.index("```sh") :]
    assert commands.index("python3 -m venv") < commands.index("pip install")
