"""Mint a token and share it through the store, settling the race between instances."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.tokens.format import EmbedToken, mint_v1
from gateway.tokens.request import TokenRequest
from gateway.tokens.store import EntryKey, TokenStore

Clock = Callable[[], float]


class Minter:
    """Signs new tokens, and stores them with SET NX so every instance hands out one per key."""

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
        self.races_lost = 0  # SET NX found another instance's token first

    def mint(self, request: TokenRequest, dashboard_id: str, now: float) -> EmbedToken:
        """A new token for this request's tenant and workspace and the resolved dashboard."""
        self.mints += 1
        valid_until = int(now) + self._ttl
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
        self, request: TokenRequest, dashboard_id: str, where: EntryKey, observed: str
    ) -> tuple[EmbedToken, bool]:
        """(token, minted here): ours when stored or not storable, else the race winner's."""
        now = self._clock()
        token = self.mint(request, dashboard_id, now)
        stored = await self._store.put(where, token, now, only_if_absent=True, observed=observed)
        if stored is not False:
            # Stored, or not storable (Redis unreachable, too short-lived, a revocation since
            # the miss): ours it is, for this request only.
            return token, True
        # Another instance stored one first: prefer theirs while it is reusable, so every
        # instance hands out the same token for a key.
        self.races_lost += 1
        winner = await self._store.get(where, self._clock())
        if winner.token is not None:
            return winner.token, False
        await self._store.put(where, token, now, only_if_absent=False, observed=observed)
        return token, True
