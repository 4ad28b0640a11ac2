"""Get an embed token: reuse the cached one while the rule allows, else look up and mint.

The issuer only orchestrates: the tiers (`tiers.py`) answer hits, the resolver (`resolver.py`)
looks the dashboard up, the limiter hook may refuse, the minter (`minter.py`) signs and shares,
and single flight (`infra/singleflight.py`) makes concurrent misses of one key share one mint.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.errors import RateLimited
from gateway.infra.singleflight import SingleFlight
from gateway.tokens.format import EmbedToken
from gateway.tokens.keys import DEFAULT_DASHBOARD, KeyLayout, alias_field, dashboard_field
from gateway.tokens.minter import Minter
from gateway.tokens.request import TokenRequest
from gateway.tokens.resolver import DashboardResolver
from gateway.tokens.store import EntryKey
from gateway.tokens.tiers import TieredLookup

Clock = Callable[[], float]
# Called with (caller subject, tenant) just before a mint; raises to refuse it (rate limits).
BeforeMint = Callable[[str | None, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Issued:
    """What the endpoint answers: from a cache, minted by this request, or shared from a mint
    another request of this worker made (`shared_mint`: audited as reuse, not counted a mint)."""

    token: EmbedToken
    cache_hit: bool
    shared_mint: bool = False

    @property
    def minted(self) -> bool:
        """Whether this request's own mint made the token."""
        return not self.cache_hit and not self.shared_mint


class TokenIssuer:
    """The cache rule and the mint, over the parts passed in."""

    def __init__(
        self,
        *,
        layout: KeyLayout,
        fingerprint: str,
        api_key_id: str,
        tiers: TieredLookup,
        resolver: DashboardResolver,
        minter: Minter,
        before_mint: BeforeMint | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._layout = layout
        self._fingerprint = fingerprint
        self._api_key_id = api_key_id
        self._tiers = tiers
        self._resolver = resolver
        self._minter = minter
        self._before_mint = before_mint
        self._clock = clock
        self._flight: SingleFlight[Issued] = SingleFlight()

    @property
    def api_key_id(self) -> str:
        """The API key id put in every token."""
        return self._api_key_id

    @property
    def lookups(self) -> int:
        """Database lookups made (tests pin single flight with it)."""
        return self._resolver.lookups

    def where(self, workspace_id: str, tenant_id: str, dashboard_id: str) -> EntryKey:
        """The entry of one (workspace, tenant, dashboard or '*') under this signing key."""
        alias = dashboard_id == DEFAULT_DASHBOARD
        return EntryKey(
            key=self._layout.token(
                self._fingerprint, self._api_key_id, workspace_id, tenant_id, dashboard_id
            ),
            generations=self._layout.generations(tenant_id),
            changed=self._layout.changed(tenant_id),
            alias_field=alias_field(workspace_id),
            dashboard_field="" if alias else dashboard_field(dashboard_id),
            alias=alias,
        )

    def key(self, workspace_id: str, tenant_id: str, dashboard_id: str) -> str:
        """The Redis key of one entry."""
        return self.where(workspace_id, tenant_id, dashboard_id).key

    async def issue(self, request: TokenRequest, subject: str | None = None) -> Issued:
        """The token for this (already authorised) request; `subject` is the caller's JWT sub."""
        where = self.where(
            request.workspace_id, request.tenant_id, request.dashboard_id or DEFAULT_DASHBOARD
        )
        now = self._clock()
        held = self._tiers.local(where, now)
        if held is not None:
            # The hot path: no Redis or PostgreSQL round trip while this worker's copy is fresh.
            return Issued(held, cache_hit=True)
        looked = await self._tiers.shared(where, now)
        if looked.token is not None:
            issued = Issued(looked.token, cache_hit=True)
        else:
            joined = self._flight.running(where.key)
            issued = await self._shared_resolve(request, where, subject)
            if joined and issued.minted:
                issued = Issued(issued.token, cache_hit=False, shared_mint=True)
        self._tiers.remember(where, issued.token, self._clock())
        return issued

    async def _shared_resolve(
        self, request: TokenRequest, where: EntryKey, subject: str | None
    ) -> Issued:
        try:
            return await self._flight.run(where.key, lambda: self._resolve(request, where, subject))
        except RateLimited as exc:
            # The shared mint was refused for the subject that started it; another caller's own
            # budget may still allow it, so it tries once more as itself.
            if getattr(exc, "subject", subject) == subject:
                raise
            return await self._flight.run(where.key, lambda: self._resolve(request, where, subject))

    async def _resolve(self, request: TokenRequest, where: EntryKey, subject: str | None) -> Issued:
        # Checked again inside the flight: a token may have landed while we queued.
        looked = await self._tiers.shared(where, self._clock())
        if looked.token is not None:
            return Issued(looked.token, cache_hit=True)
        dashboard_id = await self._resolver.resolve(request, fresh=looked.recently_changed)
        canonical, canonical_look = where, looked
        if where.alias:
            # A request for the default dashboard shares the token of an explicit request for it.
            canonical = self.where(request.workspace_id, request.tenant_id, dashboard_id)
            canonical_look = await self._tiers.shared(canonical, self._clock())
        issued = None if canonical_look.token is None else Issued(canonical_look.token, True)
        if issued is None:
            await self._spend_budget(subject, request.tenant_id)
            token, minted = await self._minter.mint_and_share(
                request, dashboard_id, canonical, canonical_look.observed
            )
            issued = Issued(token, cache_hit=not minted)
        if where.alias:
            await self._tiers.store.put(
                where, issued.token, self._clock(), only_if_absent=False, observed=looked.observed
            )
        return issued

    async def _spend_budget(self, subject: str | None, tenant_id: str) -> None:
        if self._before_mint is None:
            return
        try:
            await self._before_mint(subject, tenant_id)
        except RateLimited as exc:
            exc.subject = subject  # whose budget said no, for callers sharing this mint
            raise
