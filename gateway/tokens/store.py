"""The shared token store in Redis: entries stamped with the tenant's revocation generations.

A read is one script in the tenant's slot: the entry, and the generations it must still match
(tenant, its dashboard, and for a default-dashboard alias the workspace's alias generation). An
entry stored under an older generation is never returned, so `gateway revoke` (which increments
a generation) reaches every instance at once and no replica resync can bring a revoked token
back: a resynced entry still carries its old stamp.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.infra.breaker import CircuitBreaker, CircuitOpen
from gateway.infra.dependency_errors import REDIS_ERRORS, note_redis_error
from gateway.infra.ratelimit import GCRA_SPEND, Budget
from gateway.infra.redis_batch import RedisBatcher, ScriptCall
from gateway.tokens.format import EmbedToken, is_reusable

log = logging.getLogger(__name__)

# KEYS: entry, generations, changed-marker. ARGV: workspace alias field, dashboard field hint,
# alias flag. Returns {entry or false, observed stamp, changed flag, valid_until of an entry a
# revocation left behind or false}; the stamp is what a put after this miss must still find, so a
# revoke between the miss and the put is not lost.
GET_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
local changed = redis.call('EXISTS', KEYS[3])
local dash = ARGV[2]
local entry = nil
if raw then
    local ok, e = pcall(cjson.decode, raw)
    if ok and type(e) == 'table' and type(e[2]) == 'string' then
        entry = e
        dash = 'd:' .. e[2]
    end
end
local g = redis.call('HMGET', KEYS[2], 't', dash, ARGV[1])
local stamp = (g[1] or '0') .. '.' .. (g[2] or '0')
if ARGV[3] == '1' then stamp = stamp .. '.' .. (g[3] or '0') end
local observed = (g[1] or '0') .. '.' .. (g[3] or '0')
if entry and entry[4] == stamp then return {raw, observed, changed} end
return {false, observed, changed, entry and tonumber(entry[3]) or false}
"""

# The whole write side of a miss in one script in the tenant's slot (one round trip): the
# caller subject's mint budget when one is passed (only where one script may touch two slots:
# not a cluster), then the canonical entry if one stored under the current generations is still
# reusable (another instance won the race, or an explicit request stored the default dashboard's
# token; the alias is pointed at it and no tenant budget is spent), else the tenant's mint
# budget, else store the new token and its alias. The script is atomic, so "check then SET"
# needs no NX: one token per key.
# KEYS: canonical entry, generations, tenant budget, subject budget, [alias entry] (an absent
# budget's key is the canonical entry's, never touched). ARGV: token, dashboard id, valid_until,
# now (s), refresh buffer (s), alias field, observed stamp ('' to skip), tenant budget interval
# ms (0: none), its period ms, subject budget interval ms (0: none), its period ms. Returns {1}
# stored; {0, entry} reusable entry found; {-1} not stored, a generation moved since the miss (a
# revocation: not lost); {-2, wait ms} over the tenant's budget; {-3} not stored, too
# short-lived to reuse; {-4, wait ms} over the subject's budget, nothing else done.
SHARE_SCRIPT = (
    GCRA_SPEND
    + """
if tonumber(ARGV[10]) > 0 then
    local wait = gcra_spend(KEYS[4], tonumber(ARGV[10]), tonumber(ARGV[11]))
    if wait > 0 then return {-4, wait} end
end
local g = redis.call('HMGET', KEYS[2], 't', 'd:' .. ARGV[2], ARGV[6])
local t, d, a = g[1] or '0', g[2] or '0', g[3] or '0'
local stamp = t .. '.' .. d
local now, buffer = tonumber(ARGV[4]), tonumber(ARGV[5])
local alias = KEYS[5]
local raw = redis.call('GET', KEYS[1])
if raw then
    local ok, e = pcall(cjson.decode, raw)
    if ok and type(e) == 'table' and e[4] == stamp and type(e[3]) == 'number' then
        local ttl = math.floor((e[3] - buffer - now) * 1000)
        if ttl > 0 then
            if alias then
                local value = cjson.encode({e[1], e[2], e[3], stamp .. '.' .. a})
                redis.call('SET', alias, value, 'PX', ttl)
            end
            return {0, raw}
        end
    end
end
if tonumber(ARGV[8]) > 0 then
    local wait = gcra_spend(KEYS[3], tonumber(ARGV[8]), tonumber(ARGV[9]))
    if wait > 0 then return {-2, wait} end
end
if ARGV[7] ~= '' and ARGV[7] ~= t .. '.' .. a then return {-1} end
local ttl = math.floor((tonumber(ARGV[3]) - buffer - now) * 1000)
if ttl <= 0 then return {-3} end
redis.call('SET', KEYS[1], cjson.encode({ARGV[1], ARGV[2], tonumber(ARGV[3]), stamp}), 'PX', ttl)
if alias then
    local value = cjson.encode({ARGV[1], ARGV[2], tonumber(ARGV[3]), stamp .. '.' .. a})
    redis.call('SET', alias, value, 'PX', ttl)
end
return {1}
"""
)


@dataclass(frozen=True, slots=True)
class EntryKey:
    """Where one entry lives and which generations guard it."""

    key: str
    generations: str
    changed: str
    alias_field: str
    dashboard_field: str  # the requested dashboard's field; '' for a default-dashboard alias
    alias: bool


@dataclass(frozen=True, slots=True)
class Shared:
    """What the share script did with a new token.

    outcome: "stored"; "found" (`token` is the reusable entry already there); "not_stored" (a
    generation moved since the miss, or too short-lived to share); "limited" (the tenant's
    budget: `wait_ms`); "subject_limited" (the subject's budget, when the script spent it:
    `wait_ms`; nothing stored); "failed" (Redis did not answer, or the breaker is open).
    """

    outcome: str
    token: EmbedToken | None = None
    wait_ms: int = 0


@dataclass(frozen=True, slots=True)
class Lookup:
    """A read: the reusable token or None, what a later put must still find, and whether the
    tenant's mapping changed a moment ago (read the directory from the primary)."""

    token: EmbedToken | None
    observed: str = ""
    recently_changed: bool = False
    # The valid_until of the entry a revocation left behind: a new token must not repeat it (a
    # token is a function of its valid_until, so one minted in the revoked one's second would
    # be the revoked token again).
    revoked_until: int | None = None


def decode_entry(raw: bytes | str) -> EmbedToken | None:
    """Parse a stored entry; None for anything unexpected (treated as a miss)."""
    try:
        token, dashboard_id, valid_until, _stamp = orjson.loads(raw)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None
    if not isinstance(token, str) or not isinstance(dashboard_id, str):
        return None
    if type(valid_until) is not int:
        return None
    return EmbedToken(token=token, dashboard_id=dashboard_id, valid_until=valid_until)


def reuse_window_ms(valid_until: int, now: float, refresh_buffer: int) -> int:
    """Milliseconds for which the entry may still be reused; <= 0 means do not store it."""
    return math.floor((valid_until - refresh_buffer - now) * 1000)


# Called with a lookup's outcome: "hit", "miss", "error" (failed or timed out), "skipped" (open).
LookupListener = Callable[[str], None]
MISS = Lookup(None)


class TokenStore:
    """Redis-backed entries; every call is bounded by a deadline and a Redis fault is a miss.

    Calls go through the breaker: while it is open they are skipped at once, not timed out.
    With a batcher, concurrent calls share one pipeline and its one deadline.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        refresh_buffer: int,
        timeout: float,
        *,
        breaker: CircuitBreaker | None = None,
        on_lookup: LookupListener | None = None,
        batcher: RedisBatcher | None = None,
    ) -> None:
        self._get = ScriptCall(client, GET_SCRIPT, timeout=timeout, batcher=batcher)
        self._share = ScriptCall(client, SHARE_SCRIPT, timeout=timeout, batcher=batcher)
        self._buffer = refresh_buffer
        # A breaker that never opens keeps the no-breaker case on the same code path.
        self._breaker = breaker or CircuitBreaker("redis", threshold=2**31)
        self._on_lookup = on_lookup or (lambda _result: None)

    async def get(self, where: EntryKey, now: float) -> Lookup:
        """The stored token if it may still be reused at `now` and is not revoked."""
        keys = [where.key, where.generations, where.changed]
        args = [where.alias_field, where.dashboard_field, "1" if where.alias else "0"]
        try:
            raw, observed, changed, *revoked = await self._breaker.call(
                lambda: self._get(keys, args), timeout=self._get.deadline, errors=REDIS_ERRORS
            )
        except CircuitOpen:
            self._on_lookup("skipped")
            return MISS
        except (*REDIS_ERRORS, TimeoutError) as exc:
            self._on_lookup("error")
            note_redis_error(exc, "token read")
            return MISS
        observed = observed.decode() if isinstance(observed, bytes) else str(observed)
        entry = None if raw is None else decode_entry(raw)
        if entry is None or not is_reusable(entry.valid_until, now, self._buffer):
            self._on_lookup("miss")
            stale = revoked[0] if revoked else None
            return Lookup(None, observed, bool(changed), stale if type(stale) is int else None)
        self._on_lookup("hit")
        return Lookup(entry, observed, bool(changed))

    async def share(
        self,
        canonical: EntryKey,
        token: EmbedToken,
        now: float,
        *,
        alias: EntryKey | None = None,
        observed: str = "",
        budget: Budget | None = None,
        subject_budget: Budget | None = None,
    ) -> Shared:
        """Store a new token under `canonical` (and `alias`) unless a reusable one is there,
        spending `subject_budget` first and `budget` (the tenant's) before storing; one script,
        one round trip (see SHARE_SCRIPT)."""
        keys = [
            canonical.key,
            canonical.generations,
            budget.key if budget else canonical.key,
            subject_budget.key if subject_budget else canonical.key,
        ]
        if alias is not None:
            keys.append(alias.key)
        args = [
            token.token,
            token.dashboard_id,
            token.valid_until,
            f"{now:.6f}",
            self._buffer,
            canonical.alias_field,
            observed,
            budget.interval_ms if budget else 0,
            budget.period_ms if budget else 0,
            subject_budget.interval_ms if subject_budget else 0,
            subject_budget.period_ms if subject_budget else 0,
        ]
        try:
            reply = await self._breaker.call(
                lambda: self._share(keys, args),
                timeout=self._share.deadline,
                errors=REDIS_ERRORS,
            )
        except CircuitOpen:
            return Shared("failed")
        except (*REDIS_ERRORS, TimeoutError) as exc:
            note_redis_error(exc, "token write")
            return Shared("failed")
        code = int(reply[0])
        if code == 1:
            return Shared("stored")
        if code == -2:
            return Shared("limited", wait_ms=int(reply[1]))
        if code == -4:
            return Shared("subject_limited", wait_ms=int(reply[1]))
        if code == -1:
            log.info("a revocation happened during a mint; the new token is not shared")
        found = decode_entry(reply[1]) if code == 0 else None
        return Shared("not_stored") if found is None else Shared("found", found)
