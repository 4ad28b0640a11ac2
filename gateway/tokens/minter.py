"""Mint a token and share it through the store, settling the race between instances."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.infra.ratelimit import Budget
from gateway.tokens.format import EmbedToken, mint_v1
from gateway.tokens.request import TokenRequest
from gateway.tokens.store import EntryKey, Shared, TokenStore

Clock = Callable[[], float]


class Minter:
    """Signs new tokens and shares them: the store's script keeps one token per key across
    instances (an entry already there and still reusable wins)."""

    def __init__(
        self,
        store: TokenStore,
        *,
        signing_secret: bytes,
        api_key_id: str,
        token_ttl: int,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._secret = signing_secret
        self._api_key_id = api_key_id
        self._ttl = token_ttl
        self._clock = clock
        self.mints = 0  # tokens signed by this minter; tests pin one mint per key with it
        self.races_lost = 0  # the share script found another instance's token first

    def mint(
        self, request: TokenRequest, dashboard_id: str, now: float, *, avoid: int | None = None
    ) -> EmbedToken:
        """A new token for this request's tenant and workspace and the resolved dashboard;
        `avoid`: a revoked token's valid_until, which this one must not repeat."""
        self.mints += 1
        valid_until = int(now) + self._ttl
        if valid_until == avoid:
            valid_until -= 1  # a second less, never more than the TTL: not the revoked bytes
        return EmbedToken(
            token=mint_v1(
                self._secret,
                api_key_id=self._api_key_id,
                workspace_id=request.workspace_id,
                tenant_id=request.tenant_id,
                dashboard_id=dashboard_id,
                valid_until=valid_until,
            ),
            dashboard_id=dashboard_id,
            valid_until=valid_until,
        )

    async def mint_and_share(
        self,
        request: TokenRequest,
        dashboard_id: str,
        canonical: EntryKey,
        *,
        alias: EntryKey | None,
        observed: str,
        budget: Budget | None,
        subject_budget: Budget | None = None,
        avoid: int | None = None,
    ) -> tuple[EmbedToken, Shared]:
        """Sign a token and hand it to the share script: (our token, what the script did).

        Serve `shared.token` when the script found one ("found"), else ours. `avoid`: see `mint`.
        """
        now = self._clock()
        token = self.mint(request, dashboard_id, now, avoid=avoid)
        shared = await self._store.share(
            canonical,
            token,
            now,
            alias=alias,
            observed=observed,
            budget=budget,
            subject_budget=subject_budget,
        )
        if shared.outcome == "found" and alias is None:
            self.races_lost += 1
        return token, shared
