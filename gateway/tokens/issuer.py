"""Get an embed token: reuse the cached one while the rule allows, else look up and mint.

The issuer only orchestrates: the tiers (`tiers.py`) answer hits, the resolver (`resolver.py`)
looks the dashboard up, the limiter hook may refuse, the minter (`minter.py`) signs and shares,
and single flight (`infra/singleflight.py`) makes concurrent misses of one key share one mint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, Protocol

from gateway.errors import RateLimited
from gateway.infra.ratelimit import Budget
from gateway.infra.singleflight import SingleFlight
from gateway.tokens.format import EmbedToken
from gateway.tokens.keys import DEFAULT_DASHBOARD, KeyLayout, alias_field, dashboard_field
from gateway.tokens.minter import Minter
from gateway.tokens.request import TokenRequest
from gateway.tokens.resolver import DashboardResolver
from gateway.tokens.store import EntryKey, Lookup
from gateway.tokens.tiers import TieredLookup

Clock = Callable[[], float]
LANDED_SECONDS = 1.0  # far above a Redis read's deadline (GATEWAY_REDIS_TIMEOUT)
# Called with (caller subject, tenant) just before a mint; raises to refuse it (the subject's
# mint budget, in its own Redis slot).
BeforeMint = Callable[[str | None, str], Awaitable[None]]
ENTRY_CACHE_SIZE = 10_000


class TenantBudgets(Protocol):
    """The tenant's mint budget, spent inside the store's share script (`MintLimiter`), and the
    subject's where one script may spend both."""

    def tenant_budget(self, tenant_id: str) -> Budget | None:
        """The budget the share script spends before storing a new token."""

    def subject_budget(self, subject: str | None) -> Budget | None:
        """The subject's budget for the share script to spend first; None when `BeforeMint`
        spends it (its own call, in a cluster) or there is none."""

    def settle(self, subject: str | None, wait_ms: int | None) -> None:
        """Record the mint's decision; raise RateLimited (wait_ms > 0) or Unavailable."""


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
        budgets: TenantBudgets | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._layout = layout
        self._fingerprint = fingerprint
        self._api_key_id = api_key_id
        self._tiers = tiers
        self._resolver = resolver
        self._minter = minter
        self._before_mint = before_mint
        self._budgets = budgets
        self._clock = clock
        self._flight: SingleFlight[Issued] = SingleFlight()
        # Flights that stored a token lately: key -> (flight number, result). A caller whose
        # Redis read missed while its key's flight was ending reads once more and, finding that
        # token, is that flight's caller (`shared_mint`); without it, now that the flight makes
        # no second read, it would start a flight of its own (a second database lookup).
        self._flights_ended = 0
        self._landed: dict[str, tuple[int, Issued]] = {}
        # Each request's entry, built once: five key strings per request add up on the hot path.
        # A plain dict dropping its oldest when full: the values are pure functions of the key.
        self._entries: dict[TokenRequest, EntryKey] = {}

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

    def entry(self, request: TokenRequest) -> EntryKey:
        """`where` of a request (its dashboard, or the tenant's default), remembered."""
        entries = self._entries
        where = entries.get(request)
        if where is None:
            dashboard_id = request.dashboard_id or DEFAULT_DASHBOARD
            where = entries[request] = self.where(
                request.workspace_id, request.tenant_id, dashboard_id
            )
            if len(entries) > ENTRY_CACHE_SIZE:
                del entries[next(iter(entries))]
        return where

    def held(self, request: TokenRequest) -> EmbedToken | None:
        """This worker's copy of the request's token, while its bound and the reuse rule allow:
        the hot path, answered without a round trip, an await or a task."""
        return self._tiers.local(self.entry(request), self._clock())

    def key(self, workspace_id: str, tenant_id: str, dashboard_id: str) -> str:
        """The Redis key of one entry."""
        return self.where(workspace_id, tenant_id, dashboard_id).key

    async def issue(self, request: TokenRequest, subject: str | None = None) -> Issued:
        """The token for this (already authorised) request; `subject` is the caller's JWT sub."""
        held = self.held(request)
        if held is not None:
            # The hot path: no Redis or PostgreSQL round trip while this worker's copy is fresh.
            return Issued(held, cache_hit=True)
        return await self.issue_shared(request, subject)

    async def issue_shared(self, request: TokenRequest, subject: str | None = None) -> Issued:
        """`issue` past the local tier, for a request `held` has just answered None: Redis, else
        a mint (the local tier is not looked up, or counted, a second time)."""
        where = self.entry(request)
        now = self._clock()
        ended_before = self._flights_ended
        looked = await self._tiers.shared(where, now)
        landed = self._landed.get(where.key)
        if looked.token is None and landed is not None and landed[0] > ended_before:
            # Our read raced a flight of this key that stored a token: read again (only here),
            # so a revocation since then is still seen, and take it as that flight's caller.
            looked = await self._tiers.shared(where, self._clock())
            if looked.token is not None and landed[1].token == looked.token:
                issued = Issued(looked.token, cache_hit=False, shared_mint=landed[1].minted)
                issued = issued if issued.shared_mint else Issued(looked.token, cache_hit=True)
                self._tiers.remember(where, issued.token, self._clock())
                return issued
        if looked.token is not None:
            issued = Issued(looked.token, cache_hit=True)
        else:
            joined = self._flight.running(where.key)
            issued = await self._shared_resolve(request, where, subject, looked)
            if joined and issued.minted:
                issued = Issued(issued.token, cache_hit=False, shared_mint=True)
        self._tiers.remember(where, issued.token, self._clock())
        return issued

    async def _shared_resolve(
        self, request: TokenRequest, where: EntryKey, subject: str | None, looked: Lookup
    ) -> Issued:
        def work() -> Awaitable[Issued]:
            return self._resolve(request, where, subject, looked)

        try:
            issued = await self._flight.run(where.key, work)
        except RateLimited as exc:
            # The shared mint was refused for the subject that started it; another caller's own
            # budget may still allow it, so it tries once more as itself. (A tenant over its
            # budget carries no subject: every caller sharing the mint gets the 429.)
            if getattr(exc, "subject", subject) == subject:
                raise
            return await self._flight.run(where.key, work)
        return issued

    async def _resolve(
        self, request: TokenRequest, where: EntryKey, subject: str | None, looked: Lookup
    ) -> Issued:
        # No second read here: the leader's own miss is the observation the share script checks
        # against, and the script itself serves a token that landed meanwhile (one per key).
        dashboard_id = await self._resolver.resolve(request, fresh=looked.recently_changed)
        canonical, alias = where, None
        if where.alias:
            # A request for the default dashboard shares the token of an explicit request for it:
            # the script returns the canonical entry when there is one and points the alias at it.
            canonical = self.where(request.workspace_id, request.tenant_id, dashboard_id)
            alias = where
        # The subject's budget. On one Redis node (standalone, Sentinel) the share script spends
        # it first (`subject_budget`), so a miss is 2 round trips. In a cluster its key is in
        # another slot than the tenant's: the hook spends it in a single-key call of its own
        # before the script (3 round trips), not pipelined with it, since the script could not
        # see its answer and sending both together would store (and let every instance serve) a
        # token minted for a subject that was over its budget.
        await self._spend_budget(subject, request.tenant_id)
        budgets = self._budgets
        token, shared = await self._minter.mint_and_share(
            request,
            dashboard_id,
            canonical,
            alias=alias,
            observed=looked.observed,
            budget=None if budgets is None else budgets.tenant_budget(request.tenant_id),
            subject_budget=None if budgets is None else budgets.subject_budget(subject),
            avoid=looked.revoked_until,
        )
        if shared.token is not None:
            return self._land(where.key, Issued(shared.token, cache_hit=True))
        if budgets is not None:
            if shared.outcome == "subject_limited":
                _refuse_subject(budgets, subject, shared.wait_ms)
            budgets.settle(subject, None if shared.outcome == "failed" else shared.wait_ms)
        issued = Issued(token, cache_hit=False)
        # Only a token Redis holds can be found by late readers; one not stored (a revocation
        # during the mint, Redis failing) stays with this flight's callers.
        return self._land(where.key, issued) if shared.outcome == "stored" else issued

    def _land(self, key: str, issued: Issued) -> Issued:
        self._flights_ended += 1
        number = self._flights_ended
        self._landed[key] = (number, issued)
        # Kept for as long as a read may take (its deadline is far below this), then dropped.
        asyncio.get_running_loop().call_later(LANDED_SECONDS, self._forget, key, number)
        return issued

    def _forget(self, key: str, number: int) -> None:
        held = self._landed.get(key)
        if held is not None and held[0] == number:
            del self._landed[key]

    async def _spend_budget(self, subject: str | None, tenant_id: str) -> None:
        if self._before_mint is None:
            return
        try:
            await self._before_mint(subject, tenant_id)
        except RateLimited as exc:
            exc.subject = subject  # whose budget said no, for callers sharing this mint
            raise


def _refuse_subject(budgets: TenantBudgets, subject: str | None, wait_ms: int) -> NoReturn:
    """The share script found the subject over its budget and stored nothing: its 429."""
    try:
        budgets.settle(subject, wait_ms)
    except RateLimited as exc:
        exc.subject = subject  # whose budget said no, for callers sharing this mint
        raise
    raise AssertionError("settle() must refuse a mint over a budget")
