"""Counting mints: token_issued and the mint counter mean "this request minted"."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson

from gateway.tokens.directory import add_mapping
from tests.helpers import auth, eventually

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}


async def test_one_shared_mint_is_one_token_issued(client, db: asyncpg.Connection) -> None:
    """20 concurrent misses share one mint: one token_issued row, 19 token_reused rows with
    detail.shared_mint, and gateway_tokens_minted_total counts one mint."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    answers = await asyncio.gather(
        *(client.post(V1, json=BODY, headers=auth(sub=f"user-{i}")) for i in range(20))
    )
    assert {r.status for r in answers} == {200}
    assert len({(await r.json())["token"] for r in answers}) == 1

    async def all_written() -> bool:
        return await db.fetchval("SELECT count(*) FROM audit_events") == 20

    await eventually(all_written)
    rows = await db.fetch("SELECT event, cache_hit, detail FROM audit_events")
    issued = [r for r in rows if r["event"] == "token_issued"]
    reused = [r for r in rows if r["event"] == "token_reused"]
    assert len(issued) == 1
    assert len(reused) == 19
    assert all(orjson.loads(r["detail"]) == {"shared_mint": True} for r in reused)
    metrics = await (await client.get("/metrics")).text()
    assert "gateway_tokens_minted_total 1.0" in metrics
