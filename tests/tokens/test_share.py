"""The share script: a revocation during a mint is not lost, a found entry spends no budget."""

from __future__ import annotations

import asyncio
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


@pytest.mark.parametrize("dashboard", ["dash-1", None])
async def test_a_token_revoked_in_its_own_second_is_not_minted_again(deps, dashboard) -> None:
    """A token is a function of its fields and its second: revoked within the second it was
    minted, the next mint of that second would hand the revoked token out again. The read that
    finds the revoked entry tells the mint, which takes a second less."""
    pool, client, settings = deps
    now = 1_900_000_000.25
    issuer = build.make_issuer(pool, client, settings.redis_prefix, clock=lambda: now)
    first = await issuer.issue(_req(dashboard))
    assert first.minted
    await revoke_tenant(client, KeyLayout(settings.redis_prefix), "org-1")
    again = await issuer.issue(_req(dashboard))
    assert again.minted
    assert again.token.token != first.token.token
    assert again.token.valid_until == first.token.valid_until - 1
    assert (await issuer.issue(_req(dashboard))).token == again.token  # stored, then reused


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


def _limiter(client: aioredis.Redis, layout: KeyLayout, *, subject_in_share: bool) -> MintLimiter:
    return MintLimiter(
        client,
        tenant_key=layout.tenant_budget,
        subject_key=layout.subject_budget,
        per_subject=Rate(1, 60.0),
        per_tenant=Rate(2, 60.0),
        timeout=2.0,
        breaker=CircuitBreaker("redis"),
        subject_in_share=subject_in_share,
    )


@pytest.mark.parametrize("subject_in_share", [True, False], ids=["in_script", "own_call"])
async def test_a_subject_over_its_budget_stores_nothing_and_spends_no_tenant_budget(
    deps, subject_in_share
) -> None:
    """A subject of one mint a minute: its second mint is 429 with a Retry-After, nothing is
    stored, and the tenant's budget (two a minute) is untouched, so another subject still mints;
    the same whether the share script spends the subject's budget (one Redis node) or its own
    call does (a cluster)."""
    pool, client, settings = deps
    layout = KeyLayout(settings.redis_prefix)
    limiter = _limiter(client, layout, subject_in_share=subject_in_share)
    issuer = build.make_issuer(
        pool, client, settings.redis_prefix, before_mint=limiter.spend_subject, budgets=limiter
    )
    assert (await issuer.issue(_req("dash-1"), "greedy")).minted
    tenant_budget = await client.get(layout.tenant_budget("org-1"))
    with pytest.raises(RateLimited) as refused:
        await issuer.issue(_req("dash-2"), "greedy")
    assert 1 <= refused.value.retry_after <= 60
    assert refused.value.reason == "mint_limit"
    assert await client.exists(issuer.key("ws-1", "org-1", "dash-2")) == 0
    assert await client.get(layout.tenant_budget("org-1")) == tenant_budget
    assert (await issuer.issue(_req("dash-2"), "modest")).minted


async def test_a_shared_mint_refused_in_the_script_does_not_refuse_other_subjects(deps) -> None:
    """Two callers share one mint; the share script finds the subject that started it over its
    budget, and the other caller mints under its own budget instead of inheriting the 429."""
    pool, client, settings = deps
    layout = KeyLayout(settings.redis_prefix)
    limiter = _limiter(client, layout, subject_in_share=True)
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold_greedy(subject: str | None, _tenant: str) -> None:
        if subject == "greedy" and not entered.is_set():
            entered.set()
            await release.wait()

    issuer = build.make_issuer(
        pool, client, settings.redis_prefix, before_mint=hold_greedy, budgets=limiter
    )
    spent = build.make_issuer(pool, client, settings.redis_prefix, budgets=limiter)
    assert (await spent.issue(_req("dash-2"), "greedy")).minted  # its one mint this minute
    first = asyncio.create_task(issuer.issue(_req("dash-1"), "greedy"))
    await entered.wait()  # the shared mint is under way, held before the share script
    second = asyncio.create_task(issuer.issue(_req("dash-1"), "modest"))
    await asyncio.sleep(0.3)  # ample time for the second caller's miss to join the flight
    release.set()
    with pytest.raises(RateLimited):
        await first
    issued = await second
    assert not issued.cache_hit  # minted on its retry (as the flight's joiner: shared_mint)
    assert await client.exists(issuer.key("ws-1", "org-1", "dash-1")) == 1
