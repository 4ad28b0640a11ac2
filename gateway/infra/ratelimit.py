"""Rate limits: global mint limits in Redis (GCRA), and a per-worker limit on all requests.

The mint limiter answers for every instance at once, so it lives in Redis and checks the caller's
and the tenant's budget in one atomic script. The request limiter is a token bucket in this
process's memory: refusing a caller who hammers cache hits must not cost a Redis round trip.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway.errors import RateLimited, Unavailable
from gateway.infra.breaker import CircuitBreaker, CircuitOpen
from gateway.infra.dependency_errors import REDIS_ERRORS

log = logging.getLogger(__name__)

# GCRA over any number of keys, all or nothing. ARGV: [interval_ms, period_ms] per key.
# A key holds its "theoretical arrival time" (TAT); a request is allowed while the new TAT stays
# within one period of now, which allows `limit` requests at once and then one per interval.
# The clock is Redis's own (TIME), so every gateway instance agrees on it.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local new_tats = {}
local wait = 0
for i, key in ipairs(KEYS) do
    local interval = tonumber(ARGV[2 * i - 1])
    local period = tonumber(ARGV[2 * i])
    local tat = tonumber(redis.call('GET', key) or now)
    if tat < now then tat = now end
    local new_tat = tat + interval
    local over = new_tat - now - period
    if over > wait then wait = over end
    new_tats[i] = new_tat
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
    redis.call('SET', key, new_tats[i], 'PX', new_tats[i] - now)
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Rate:
    """`limit` events per `period` seconds, all of them allowed at once."""

    limit: int
    period: float

    @property
    def interval_ms(self) -> int:
        """Milliseconds one event uses up."""
        return max(1, round(self.period * 1000 / self.limit))

    @property
    def period_ms(self) -> int:
        """The window in milliseconds."""
        return round(self.period * 1000)


# Called with (limiter, decision): ("mint"|"request", "allowed"|"limited"|"failed_open"|...).
DecisionListener = Callable[[str, str], None]


def _subject_tag(subject: str) -> str:
    # A subject is free text from the caller's JWT: hash it so keys stay short and clean.
    return hashlib.sha256(subject.encode()).hexdigest()[:32]


class MintLimiter:
    """Global mint limits per caller subject and per tenant, checked atomically in Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        per_subject: Rate | None,
        per_tenant: Rate | None,
        timeout: float,
        breaker: CircuitBreaker,
        fail_closed: bool = False,
        on_decision: DecisionListener | None = None,
    ) -> None:
        self._script = client.register_script(GCRA_SCRIPT)
        self._prefix = prefix
        self._per_subject = per_subject
        self._per_tenant = per_tenant
        self._timeout = timeout
        self._breaker = breaker
        self._fail_closed = fail_closed
        self._on_decision = on_decision or (lambda _limiter, _decision: None)

    async def before_mint(self, subject: str | None, tenant_id: str) -> None:
        """Spend one mint of the subject's and the tenant's budgets, or raise RateLimited.

        When Redis cannot answer, let the mint through (counted as "failed_open"), or raise
        Unavailable when configured to fail closed.
        """
        keys: list[str] = []
        args: list[int] = []
        if self._per_tenant is not None:
            keys.append(f"{self._prefix}rl:v1|tenant|{tenant_id}")
            args += [self._per_tenant.interval_ms, self._per_tenant.period_ms]
        # A caller without `sub` has no subject budget; the tenant's still applies.
        if self._per_subject is not None and subject is not None:
            keys.append(f"{self._prefix}rl:v1|sub|{_subject_tag(subject)}")
            args += [self._per_subject.interval_ms, self._per_subject.period_ms]
        if not keys:
            return
        try:
            wait_ms = await self._breaker.call(
                lambda: self._script(keys=keys, args=args),
                timeout=self._timeout,
                errors=REDIS_ERRORS,
            )
        except (CircuitOpen, *REDIS_ERRORS, TimeoutError):
            if self._fail_closed:
                self._on_decision("mint", "failed_closed")
                raise Unavailable(
                    "the rate limiter is unavailable", retry_after=1, reason="rate_limiter"
                ) from None
            self._on_decision("mint", "failed_open")
            return
        if int(wait_ms) > 0:
            self._on_decision("mint", "limited")
            raise RateLimited(
                "too many tokens minted; retry later",
                retry_after=math.ceil(int(wait_ms) / 1000),
                reason="mint_limit",
            )
        self._on_decision("mint", "allowed")


class RequestLimiter:
    """Per-process token buckets keyed by caller: `rate` per second, up to `burst` at once."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_callers: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        on_decision: DecisionListener | None = None,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._max_callers = max_callers
        self._clock = clock
        self._on_decision = on_decision or (lambda _limiter, _decision: None)
        # caller -> (tokens left, time of last refill); ordered by last use for eviction.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, caller: str) -> None:
        """Spend one request of `caller`'s bucket, or raise RateLimited (rate 0: no limit)."""
        if self._rate <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.pop(caller, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[caller] = (tokens, now)
            self._on_decision("request", "limited")
            raise RateLimited(
                "too many requests; retry later",
                retry_after=math.ceil((1.0 - tokens) / self._rate),
                reason="request_limit",
            )
        self._buckets[caller] = (tokens - 1.0, now)
        # The least recently seen caller goes first; at worst it gets a fresh bucket back.
        while len(self._buckets) > self._max_callers:
            self._buckets.popitem(last=False)
        self._on_decision("request", "allowed")
