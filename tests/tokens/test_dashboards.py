"""The tenant-to-dashboard mapping: lookup rules and the admin edits."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.errors import DashboardNotFound
from gateway.tokens.directory import add_mapping, list_mappings, lookup_dashboard, remove_mapping


async def test_default_wins_and_named_must_belong(db: asyncpg.Connection) -> None:
    """Without a name the default is used; a name must be the tenant's in that workspace."""
    await add_mapping(db, "t1", "w1", "d-a", is_default=False)
    await add_mapping(db, "t1", "w1", "d-b", is_default=True)
    await add_mapping(db, "t2", "w1", "d-c", is_default=True)
    assert await lookup_dashboard(db, "t1", "w1", None) == "d-b"
    assert await lookup_dashboard(db, "t1", "w1", "d-a") == "d-a"
    with pytest.raises(DashboardNotFound):
        await lookup_dashboard(db, "t1", "w1", "d-c")
    with pytest.raises(DashboardNotFound):
        await lookup_dashboard(db, "t1", "w2", None)


async def test_new_default_demotes_the_old_one(db: asyncpg.Connection) -> None:
    """At most one default per tenant and workspace: adding one with --default moves it."""
    await add_mapping(db, "t1", "w1", "d-a", is_default=True)
    await add_mapping(db, "t1", "w1", "d-b", is_default=True)
    rows = {m.dashboard_id: m.is_default for m in await list_mappings(db, "t1")}
    assert rows == {"d-a": False, "d-b": True}
    assert await lookup_dashboard(db, "t1", "w1", None) == "d-b"


async def test_database_refuses_two_defaults(db: asyncpg.Connection) -> None:
    """The partial unique index enforces one default even against a hand-written insert."""
    await add_mapping(db, "t1", "w1", "d-a", is_default=True)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(
            "INSERT INTO tenant_dashboards (tenant_id, workspace_id, dashboard_id, is_default)"
            " VALUES ('t1', 'w1', 'd-z', true)"
        )


async def test_remove_reports_whether_it_existed(db: asyncpg.Connection) -> None:
    """remove_mapping deletes one row and says False for a row that was not there."""
    await add_mapping(db, "t1", "w1", "d-a", is_default=False)
    assert await remove_mapping(db, "t1", "w1", "d-a") is True
    assert await remove_mapping(db, "t1", "w1", "d-a") is False
    assert await list_mappings(db) == []
