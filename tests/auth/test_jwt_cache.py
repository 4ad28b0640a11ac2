"""The verified-JWT cache: never past exp or its bound, never across tenants or key changes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.auth.jwt_cache import JwtCache
from gateway.auth.verifier import Caller, JwtVerifier
from gateway.http.state import JWT_CACHE, VERIFIER
from gateway.settings import Settings
from gateway.tokens.directory import add_mapping
from tests.helpers import auth, make_jwt

V1 = "/api/v1/dashboards/iframe-token"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def caller(expires_at: float | None) -> Caller:
    return Caller(subject="user-1", tenant_claim="org-123", expires_at=expires_at)


def test_never_serves_a_token_at_or_after_its_exp() -> None:
    """A hit is only possible while the clock is before the token's exp (no leeway)."""
    clock = Clock()
    cache = JwtCache(max_size=10, max_ttl=60, clock=clock)
    cache.put("t", caller(clock.now + 10))
    clock.now += 9.9
    assert cache.get("t") == caller(1_000_010.0)
    clock.now += 0.1
    assert cache.get("t") is None


def test_keeps_an_entry_no_longer_than_the_configured_maximum() -> None:
    """A long-lived token is still verified again after max_ttl seconds."""
    clock = Clock()
    cache = JwtCache(max_size=10, max_ttl=60, clock=clock)
    cache.put("t", caller(clock.now + 3600))
    clock.now += 59.9
    assert cache.get("t") is not None
    clock.now += 0.2
    assert cache.get("t") is None


def test_nothing_is_stored_without_exp_already_expired_or_when_disabled() -> None:
    """No exp, an exp already past, or max_ttl 0: the token is never remembered."""
    clock = Clock()
    cache = JwtCache(max_size=10, max_ttl=60, clock=clock)
    cache.put("a", caller(None))
    cache.put("b", caller(clock.now - 1))
    off = JwtCache(max_size=10, max_ttl=0, clock=clock)
    off.put("c", caller(clock.now + 30))
    assert cache.get("a") is None
    assert cache.get("b") is None
    assert off.get("c") is None


def test_a_key_change_empties_it_and_a_racing_verification_is_not_stored() -> None:
    """A new key-set generation forgets every entry; a result from the old one is dropped."""
    clock = Clock()
    cache = JwtCache(max_size=10, max_ttl=60, clock=clock)
    cache.put("t", caller(clock.now + 30), generation=0)
    assert cache.get("t", generation=1) is None
    cache.put("u", caller(clock.now + 30), generation=0)  # verified before the change
    assert cache.get("u", generation=1) is None
    assert cache.get("t", generation=1) is None
    cache.put("t", caller(clock.now + 30), generation=1)
    assert cache.get("t", generation=1) is not None
    cache.clear()
    assert cache.get("t", generation=1) is None


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    """Two tenants, each with a default dashboard."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    await add_mapping(db, "org-999", "workspace-456", "dashboard-999", is_default=True)
    return db


async def test_a_cached_caller_is_still_held_to_the_tenant_rule(client, mapped) -> None:
    """The same (cached) JWT gets 200 for its own tenant and 403 for another, every time."""
    token = make_jwt("org-123")
    own = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
    other = {"tenant_id": "org-999", "workspace_id": "workspace-456"}
    assert (await client.post(V1, json=own, headers=auth(token))).status == 200
    assert len(client.app[JWT_CACHE]) == 1
    for _ in range(2):
        resp = await client.post(V1, json=other, headers=auth(token))
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "forbidden"
    assert (await client.post(V1, json=own, headers=auth(token))).status == 200


async def test_an_expired_token_is_refused_even_after_a_cached_success(
    make_client, settings, mapped
) -> None:
    """A JWT accepted (and cached) while valid gets 401 once its exp has passed.

    The cache and the claims check share a clock the test moves, so no sleep and no race with a
    slow machine; the cache's own bound is an hour, so only the token's exp can end the entry."""
    clock = Clock(time.time())

    def clocked_app(app_settings: Settings) -> web.Application:
        app = create_app(app_settings)
        app[JWT_CACHE] = JwtCache(max_size=10, max_ttl=3600, clock=clock)

        async def verifier(app: web.Application) -> AsyncIterator[None]:
            # Runs after create_app's own verifier context, so this one is what requests use.
            app[VERIFIER] = JwtVerifier(app_settings, clock=clock)
            yield

        app.cleanup_ctx.append(verifier)
        return app

    client = await make_client(settings, factory=clocked_app, jwt_leeway=0)
    token = make_jwt("org-123", lifetime=600)
    # The shared clock starts now, not before the app started: with no leeway, a token whose
    # whole-second iat passed the clock's start while the app started up is "issued in the future".
    clock.now = time.time()
    body = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
    first = await client.post(V1, json=body, headers=auth(token))
    assert first.status == 200
    assert len(client.app[JWT_CACHE]) == 1
    clock.now += 599
    assert (await client.post(V1, json=body, headers=auth(token))).status == 200
    clock.now += 1.5  # past exp on the shared clock
    second = await client.post(V1, json=body, headers=auth(token))
    assert second.status == 401
    assert (await second.json())["error"]["code"] == "unauthenticated"
    assert len(client.app[JWT_CACHE]) == 0
