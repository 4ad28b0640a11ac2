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
from gateway.tokens.format import EmbedToken, is_reusable

log = logging.getLogger(__name__)

# KEYS: entry, generations, changed-marker. ARGV: workspace alias field, dashboard field hint,
# alias flag. Returns {entry or false, observed stamp, changed flag}; the stamp is what a put
# after this miss must still find, so a revoke between the miss and the put is not lost.
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
return {false, observed, changed}
"""

# KEYS: entry, generations. ARGV: token, dashboard id, valid_until, ttl ms, nx flag, alias field,
# alias flag, observed stamp (from the miss; '' to skip). Returns 1 stored, 0 kept an existing
# entry (another instance won the race), -1 refused: a generation moved since the miss.
PUT_SCRIPT = """
local g = redis.call('HMGET', KEYS[2], 't', 'd:' .. ARGV[2], ARGV[6])
if ARGV[8] ~= '' and ARGV[8] ~= (g[1] or '0') .. '.' .. (g[3] or '0') then return -1 end
local stamp = (g[1] or '0') .. '.' .. (g[2] or '0')
if ARGV[7] == '1' then stamp = stamp .. '.' .. (g[3] or '0') end
local value = cjson.encode({ARGV[1], ARGV[2], tonumber(ARGV[3]), stamp})
if ARGV[5] == '1' then
    if redis.call('SET', KEYS[1], value, 'PX', ARGV[4], 'NX') then return 1 end
    return 0
end
redis.call('SET', KEYS[1], value, 'PX', ARGV[4])
return 1
"""


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
class Lookup:
    """A read: the reusable token or None, what a later put must still find, and whether the
    tenant's mapping changed a moment ago (read the directory from the primary)."""

    token: EmbedToken | None
    observed: str = ""
    recently_changed: bool = False


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
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        refresh_buffer: int,
        timeout: float,
        *,
        breaker: CircuitBreaker | None = None,
        on_lookup: LookupListener | None = None,
    ) -> None:
        self._get = client.register_script(GET_SCRIPT)
        self._put = client.register_script(PUT_SCRIPT)
        self._buffer = refresh_buffer
        self._timeout = timeout
        # A breaker that never opens keeps the no-breaker case on the same code path.
        self._breaker = breaker or CircuitBreaker("redis", threshold=2**31)
        self._on_lookup = on_lookup or (lambda _result: None)

    async def get(self, where: EntryKey, now: float) -> Lookup:
        """The stored token if it may still be reused at `now` and is not revoked."""
        keys = [where.key, where.generations, where.changed]
        args = [where.alias_field, where.dashboard_field, "1" if where.alias else "0"]
        try:
            raw, observed, changed = await self._breaker.call(
                lambda: self._get(keys=keys, args=args), timeout=self._timeout, errors=REDIS_ERRORS
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
            return Lookup(None, observed, bool(changed))
        self._on_lookup("hit")
        return Lookup(entry, observed, bool(changed))

    async def put(
        self,
        where: EntryKey,
        token: EmbedToken,
        now: float,
        *,
        only_if_absent: bool,
        observed: str = "",
    ) -> bool | None:
        """Store `token` until it stops being reusable; with only_if_absent, keep an existing one.

        True when stored, False when an existing entry was kept (another process won the race),
        None when nothing was stored (Redis unreachable, the token is not reusable, or a
        generation moved since `observed`, i.e. a revocation happened meanwhile).
        """
        ttl_ms = reuse_window_ms(token.valid_until, now, self._buffer)
        if ttl_ms <= 0:
            return None
        args = [
            token.token,
            token.dashboard_id,
            token.valid_until,
            ttl_ms,
            "1" if only_if_absent else "0",
            where.alias_field,
            "1" if where.alias else "0",
            observed,
        ]
        try:
            stored = await self._breaker.call(
                lambda: self._put(keys=[where.key, where.generations], args=args),
                timeout=self._timeout,
                errors=REDIS_ERRORS,
            )
        except CircuitOpen:
            return None
        except (*REDIS_ERRORS, TimeoutError) as exc:
            note_redis_error(exc, "token write")
            return None
        if int(stored) < 0:
            log.info("a revocation happened during a mint; the new token is not shared")
            return None
        return int(stored) == 1
