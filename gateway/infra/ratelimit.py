"""Rate limits: global mint limits in Redis (GCRA), and a per-worker limit on all requests.

The mint limiter answers for every instance at once, so it lives in Redis: the tenant's budget in
the tenant's slot, spent inside the token store's share script (`GCRA_SPEND`, one round trip with
the store); the caller subject's in its own slot, spent by the share script too on one Redis node
(standalone, or Sentinel's primary), and in a Redis Cluster (which cannot run one script over two
slots) by a single-key script of its own, one more round trip. The request limiter is a token
bucket in this process's memory: refusing a caller who hammers cache hits must not cost a Redis
round trip.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.errors import RateLimited, Unavailable
from gateway.infra.breaker import CircuitBreaker, CircuitOpen
from gateway.infra.dependency_errors import REDIS_ERRORS, note_redis_error
from gateway.infra.redis_batch import RedisBatcher, ScriptCall

log = logging.getLogger(__name__)

# GCRA for one key, as a Lua function a script calls (the token store's share script calls it for
# the tenant's budget, in the tenant's slot): 0 when spent, else the ms to wait. ARGV: interval
# ms, period ms. A key holds its "theoretical arrival time" (TAT); a request is allowed while the
# new TAT stays within one period of now, which allows `limit` requests at once and then one per
# interval. The clock is Redis's own (TIME), so every gateway instance agrees on it.
GCRA_SPEND = """
local function gcra_spend(key, interval, period)
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local tat = tonumber(redis.call('GET', key) or now)
    if tat < now then tat = now end
    local new_tat = tat + interval
    local over = new_tat - now - period
    if over > 0 then return over end
    redis.call('SET', key, new_tat, 'PX', new_tat - now)
    return 0
end
"""
# One budget on its own (the caller subject's, in its own slot). KEYS: budget. ARGV: as above.
GCRA_SCRIPT = GCRA_SPEND + "return gcra_spend(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))\n"


@dataclass(frozen=True, slots=True)
class Budget:
    """One GCRA budget to spend inside another script: its key and rate in milliseconds."""

    key: str
    interval_ms: int
    period_ms: int


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


# Where a budget lives: (tenant_id) -> key, (subject) -> key. Given by the token layer's layout.
KeyFor = Callable[[str], str]


class MintLimiter:
    """Global mint limits per caller subject and per tenant, in Redis.

    The tenant's budget is spent inside the token store's share script (`tenant_budget`), whose
    answer `settle` turns into a decision. The subject's is spent there too (`subject_budget`)
    unless the client is a cluster's (`subject_in_share` False): then by its own script
    (`spend_subject`), before the share script.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        tenant_key: KeyFor,
        subject_key: KeyFor,
        per_subject: Rate | None,
        per_tenant: Rate | None,
        timeout: float,
        breaker: CircuitBreaker,
        fail_closed: bool = False,
        on_decision: DecisionListener | None = None,
        batcher: RedisBatcher | None = None,
        subject_in_share: bool | None = None,
    ) -> None:
        self._script = ScriptCall(client, GCRA_SCRIPT, timeout=timeout, batcher=batcher)
        # One script may touch keys of any slot except in a cluster, where the subject's key is
        # in another slot than the tenant's (None: decided by the client's kind).
        self._subject_in_share = (
            not isinstance(client, RedisCluster) if subject_in_share is None else subject_in_share
        )
        self._tenant_key = tenant_key
        self._subject_key = subject_key
        self._per_subject = per_subject
        self._per_tenant = per_tenant
        self._breaker = breaker
        self._fail_closed = fail_closed
        self._on_decision = on_decision or (lambda _limiter, _decision: None)

    async def spend_subject(self, subject: str | None, _tenant_id: str) -> None:
        """Spend one mint of the subject's budget (its own slot), or raise RateLimited; a no-op
        where the share script spends it (`subject_budget`).

        The decision for the mint is recorded by `settle`, once the tenant's budget is known; a
        Redis failure here fails the request's later Redis calls too (the breaker), so `settle`
        then sees the share script fail and decides fail open or closed.
        """
        if self._per_subject is not None and subject is not None and not self._subject_in_share:
            await self._spend(self._subject_key(subject), self._per_subject)

    def subject_budget(self, subject: str | None) -> Budget | None:
        """The subject's budget for the share script to spend first (not in a cluster), or None:
        no subject limit, no subject, or `spend_subject` spends it in its own call."""
        if self._per_subject is None or subject is None or not self._subject_in_share:
            return None
        rate = self._per_subject
        return Budget(self._subject_key(subject), rate.interval_ms, rate.period_ms)

    def tenant_budget(self, tenant_id: str) -> Budget | None:
        """The tenant's budget, for the share script to spend in the tenant's slot."""
        if self._per_tenant is None:
            return None
        rate = self._per_tenant
        return Budget(self._tenant_key(tenant_id), rate.interval_ms, rate.period_ms)

    def settle(self, subject: str | None, wait_ms: int | None) -> None:
        """Record the mint's decision from the share script's answer, raising when refused.

        `wait_ms`: 0 spent (or no tenant budget), > 0 the tenant is over its budget, None the
        script could not run (Redis failed: fail open, or Unavailable when failing closed).
        """
        if self._per_tenant is None and (self._per_subject is None or subject is None):
            return  # no budget applies: no decision
        if wait_ms is None:
            if self._fail_closed:
                self._on_decision("mint", "failed_closed")
                raise Unavailable(
                    "the rate limiter is unavailable", retry_after=1, reason="rate_limiter"
                )
            self._on_decision("mint", "failed_open")
            return
        if wait_ms > 0:
            self._on_decision("mint", "limited")
            raise RateLimited(
                "too many tokens minted; retry later",
                retry_after=math.ceil(wait_ms / 1000),
                reason="mint_limit",
            )
        self._on_decision("mint", "allowed")

    async def _spend(self, key: str, rate: Rate) -> bool:
        """True when spent, False when Redis could not answer and the limit fails open."""
        try:
            wait_ms = await self._breaker.call(
                lambda: self._script([key], [rate.interval_ms, rate.period_ms]),
                timeout=self._script.deadline,
                errors=REDIS_ERRORS,
            )
        except (CircuitOpen, *REDIS_ERRORS, TimeoutError) as exc:
            note_redis_error(exc, "mint limit")
            if self._fail_closed:
                self._on_decision("mint", "failed_closed")
                raise Unavailable(
                    "the rate limiter is unavailable", retry_after=1, reason="rate_limiter"
                ) from None
            return False
        if int(wait_ms) > 0:
            self._on_decision("mint", "limited")
            raise RateLimited(
                "too many tokens minted; retry later",
                retry_after=math.ceil(int(wait_ms) / 1000),
                reason="mint_limit",
            )
        return True


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
        # Called with ("request", "allowed" | "limited") for every check (the metrics count).
        self.on_decision = on_decision or (lambda _limiter, _decision: None)
        # caller -> [tokens left, time of last refill, when the bucket is full again], updated
        # in place (one lookup a request). Past its last field an entry is the same as a fresh
        # bucket; the least recently seen goes first when there are too many.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def check(self, caller: str) -> None:
        """Spend one request of `caller`'s bucket, or raise RateLimited (rate 0: no limit)."""
        rate = self._rate
        if rate <= 0:
            return
        now = self._clock()
        burst = float(self._burst)
        buckets = self._buckets
        bucket = buckets.get(caller)
        if bucket is None:
            # Up to two of the longest-untouched buckets go if they are full again (the same as
            # no bucket): the map holds about the callers of the last seconds, not every caller
            # ever seen, and memory stays flat under a stream of new callers.
            for _ in range(2):
                oldest = next(iter(buckets.values()), None)
                if oldest is None or oldest[2] > now:
                    break
                buckets.popitem(last=False)
            bucket = buckets[caller] = [burst, now, now]
            if len(buckets) > self._max_callers:
                buckets.popitem(last=False)  # at worst an evicted caller gets a fresh bucket
            tokens = burst
        else:
            buckets.move_to_end(caller)
            tokens = burst if now >= bucket[2] else min(burst, bucket[0] + (now - bucket[1]) * rate)
        if tokens < 1.0:
            bucket[0], bucket[1], bucket[2] = tokens, now, now + (burst - tokens) / rate
            self.on_decision("request", "limited")
            raise RateLimited(
                "too many requests; retry later",
                retry_after=math.ceil((1.0 - tokens) / rate),
                reason="request_limit",
            )
        tokens -= 1.0
        bucket[0], bucket[1], bucket[2] = tokens, now, now + (burst - tokens) / rate
        self.on_decision("request", "allowed")

    def __len__(self) -> int:
        """Callers holding a bucket now."""
        return len(self._buckets)
