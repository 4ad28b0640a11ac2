"""bench/apps.py's switches: each replaces its component on the real app, and only that."""

from __future__ import annotations

import pytest

from bench import apps
from gateway.http.state import AUDIT, REQUEST_LIMITER
from gateway.tokens.directory import add_mapping
from tests.helpers import audit_rows, auth


async def _issue(make_client, settings, db, off: tuple[str, ...]):
    """A client of the bench build with `off` switched off, and one token request's answer."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    client = await make_client(settings, factory=apps.factory(off))
    body = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
    resp = await client.post("/api/v1/dashboards/iframe-token", json=body, headers=auth())
    assert resp.status == 200
    return client, resp


async def test_switched_off_components_record_nothing(make_client, settings, db) -> None:
    """Audit, metrics and limiter off: the token is still issued, no row, no count, no bucket."""
    client, _ = await _issue(make_client, settings, db, ("audit", "metrics", "limiter"))
    app = client.server.app
    assert app[AUDIT].dropped == 1
    assert isinstance(app[REQUEST_LIMITER], apps.NoRequestLimit)
    scrape = await (await client.get("/metrics")).text()
    assert "gateway_requests_total" not in scrape
    assert "switched off" in scrape
    # Closing flushes the real writer: anything it had been handed would be written now.
    await client.close()
    assert await db.fetchval("SELECT count(*) FROM audit_events") == 0


async def test_no_switch_is_the_gateway_as_served(make_client, settings, db) -> None:
    """With nothing switched off the bench build audits and counts like `gateway serve`."""
    client, resp = await _issue(make_client, settings, db, ())
    rows = await audit_rows(db, resp.headers["X-Request-ID"])
    assert [r["event"] for r in rows] == ["token_issued"]
    scrape = await (await client.get("/metrics")).text()
    assert 'gateway_requests_total{event="token_issued",route="token",status="200"} 1.0' in scrape


def test_unknown_switches_are_refused() -> None:
    """A switch the build does not know stops the server instead of measuring nothing."""
    with pytest.raises(SystemExit, match="unknown"):
        apps.factory(("no-such-part",))


async def test_journal_off_still_writes_the_row(make_client, settings, db, tmp_path) -> None:
    """Journal off: the row still reaches PostgreSQL, and no journal segment holds it."""
    client, resp = await _issue(make_client, settings, db, ("journal",))
    rows = await audit_rows(db, resp.headers["X-Request-ID"])
    assert [r["event"] for r in rows] == ["token_issued"]
    journal = client.server.app[AUDIT]._journal
    assert isinstance(journal, apps.NoJournalWrites)
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert resp.headers["X-Request-ID"].encode() not in written
