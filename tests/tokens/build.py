"""Assemble a TokenIssuer from its parts, as app.py does, for tests without HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

from gateway.infra.redis_client import AnyRedis
from gateway.tokens.issuer import BeforeMint, TenantBudgets, TokenIssuer
from gateway.tokens.keys import KeyLayout, key_fingerprint
from gateway.tokens.local import LocalTokenCache
from gateway.tokens.minter import Minter
from gateway.tokens.resolver import DashboardResolver
from gateway.tokens.store import TokenStore
from gateway.tokens.tiers import TieredLookup
from tests.helpers import SIGNING_SECRET


def make_issuer(
    pool: asyncpg.Pool,
    client: AnyRedis,
    prefix: str,
    *,
    clock: Callable[[], float] = time.time,
    token_ttl: int = 3600,
    buffer: int = 300,
    local_ttl: float = 0.0,
    before_mint: BeforeMint | None = None,
    budgets: TenantBudgets | None = None,
    signing_secret: bytes = SIGNING_SECRET,
    api_key_id: str = "key-1",
    minter: list[Minter] | None = None,
) -> TokenIssuer:
    """An issuer over real PostgreSQL and Redis; `minter` (a list) receives its minter."""
    store = TokenStore(client, buffer, 2.0)
    mint = Minter(
        store,
        signing_secret=signing_secret,
        api_key_id=api_key_id,
        token_ttl=token_ttl,
        clock=clock,
    )
    if minter is not None:
        minter.append(mint)
    return TokenIssuer(
        layout=KeyLayout(prefix),
        fingerprint=key_fingerprint(signing_secret),
        api_key_id=api_key_id,
        tiers=TieredLookup(
            store, LocalTokenCache(ttl=local_ttl, max_size=100, refresh_buffer=buffer)
        ),
        resolver=DashboardResolver(pool, timeout=5.0),
        minter=mint,
        before_mint=before_mint,
        budgets=budgets,
        clock=clock,
    )
