"""The share script: a revocation during a mint is not lost, a found entry spends no budget."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.errors import RateLimited
from gateway.infra.breaker import CircuitBreaker
from gateway.infra.ratelimit import MintLimiter, Rate
from gateway.settings import Settings
from gateway.tokens.directory import add_mapping
from gateway.tokens.keys import KeyLayout
from gateway.tokens.request import TokenRequest
from gateway.tokens.revocation import revoke_default_alias, revoke_tenant
from tests.tokens import build


@pytest.fixture
async def deps(settings: Settings, db: asyncpg.Connection) -> AsyncIterator[tuple]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    client = aioredis.Redis.from_url(settings.redis_url)
    await add_mapping(db, "org-1", "ws-1", "dash-1", is_default=True)
    await add_mapping(db, "org-1", "ws-1", "dash-2", is_default=False)
    yield pool, client, settings
    await client.aclose()
    await pool.close()


def _req(dashboard: str | None) -> TokenRequest:
    return TokenRequest(tenant_id="org-1", workspace_id="ws-1", dashboard_id=dashboard)


@pytest.mark.parametrize("dashboard", ["dash-1", None])
async def test_a_revocation_between_miss_and_store_is_not_lost(deps, dashboard) -> None:
    """A generation moved after the miss's read and before the share script: the new token goes
    to this request only, nothing is stored, and the next request mints again."""
    pool, client, settings = deps
    layout = KeyLayout(settings.redis_prefix)
    revoke = revoke_tenant if dashboard else revoke_default_alias
    where = "org-1" if dashboard else ("org-1", "ws-1")

    async def revoke_now(_subject: str | None, _tenant: str) -> None:
        if isinstance(where, tuple):
            await revoke(client, layout, *where)
        else:
            await revoke(client, layout, where)

    racing = build.make_issuer(pool, client, settings.redis_prefix, before_mint=revoke_now)
    first = await racing.issue(_req(dashboard))
    assert first.minted
    canonical = racing.key("ws-1", "org-1", "dash-1")
    alias = racing.key("ws-1", "org-1", "*")
    assert await client.exists(canonical, alias) == 0
    calm = build.make_issuer(pool, client, settings.redis_prefix)
    second = await calm.issue(_req(dashboard))
    assert second.minted  # nothing stored stood in its way (a token is a pure function of its
    # fields and the second, so no comparison of the two: they may be equal)
    assert await client.exists(canonical) == 1
    assert (await calm.issue(_req(dashboard))).cache_hit


async def test_an_alias_miss_served_by_the_canonical_entry_spends_no_budget(deps) -> None:
    """With a tenant budget of one mint, the explicit request mints; the default-dashboard
    request then finds that entry inside the script (no budget spent, same token); a mint of
    another dashboard is over the budget."""
    pool, client, settings = deps
    layout = KeyLayout(settings.redis_prefix)
    limiter = MintLimiter(
        client,
        tenant_key=layout.tenant_budget,
        subject_key=layout.subject_budget,
        per_subject=None,
        per_tenant=Rate(1, 60.0),
        timeout=2.0,
        breaker=CircuitBreaker("redis"),
    )
    issuer = build.make_issuer(pool, client, settings.redis_prefix, budgets=limiter)
    minted = await issuer.issue(_req("dash-1"))
    assert minted.minted
    alias = await issuer.issue(_req(None))
    assert alias.cache_hit
    assert alias.token == minted.token
    with pytest.raises(RateLimited) as refused:
        await issuer.issue(_req("dash-2"))
    assert 1 <= refused.value.retry_after <= 60
    assert await client.exists(issuer.key("ws-1", "org-1", "dash-2")) == 0
