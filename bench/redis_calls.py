"""The token store's Redis calls under concurrency: one command per call against the batcher.

    python -m bench.redis_calls [--redis redis://127.0.0.1:6379/0] [--concurrency 64]

Runs the Redis side of a hit (the read script) and of a miss (the read, then the share script
with the tenant's budget) from `concurrency` tasks at once in one process, alternating the two
modes round by round, and prints medians of CPU µs per request (this process) and requests/s.
No HTTP, no PostgreSQL: only what the batcher changes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from gateway.infra.ratelimit import Budget
from gateway.infra.redis_batch import RedisBatcher
from gateway.infra.redis_client import create_redis
from gateway.settings import RedisTarget
from gateway.tokens.format import EmbedToken
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.keys import KeyLayout
from gateway.tokens.store import TokenStore


def _where(layout: KeyLayout, tenant: str, dashboard: str):
    return TokenIssuer.where(
        _Keys(layout),  # type: ignore[arg-type]
        "ws-1",
        tenant,
        dashboard,
    )


class _Keys:
    """The attributes TokenIssuer.where reads, without building an issuer."""

    def __init__(self, layout: KeyLayout) -> None:
        self._layout = layout
        self._fingerprint = "f" * 16
        self._api_key_id = "key-1"


async def _round(store: TokenStore, layout: KeyLayout, path: str, n: int, conc: int) -> tuple:
    tag = uuid.uuid4().hex[:8]
    now = time.time()
    token = EmbedToken(token="t" * 200, dashboard_id="d", valid_until=int(now) + 3600)
    queue = list(range(n))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            tenant = f"t{i % 500}"
            if path == "hit":
                await store.get(_where(layout, tenant, "d"), now)
                continue
            where = _where(layout, tenant, f"{tag}-{i}")
            looked = await store.get(where, now)
            budget = Budget(layout.tenant_budget(tenant), 1, 60_000)
            await store.share(where, token, now, observed=looked.observed, budget=budget)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / n * 1e6, n / wall


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    prefix = f"bench-{uuid.uuid4().hex[:6]}:"
    layout = KeyLayout(prefix)
    client = create_redis(RedisTarget(opts.redis, prefix, "standalone", None), timeout=1.0)
    batcher = RedisBatcher(client, timeout=1.0)
    stores = {
        "per call": TokenStore(client, 300, 1.0),
        "batched": TokenStore(client, 300, 1.0, batcher=batcher),
    }
    now = time.time()
    token = EmbedToken(token="t" * 200, dashboard_id="d", valid_until=int(now) + 3600)
    for i in range(500):  # the hit path's entries
        await stores["per call"].share(_where(layout, f"t{i}", "d"), token, now)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for path in ("hit", "miss"):
        for _ in range(opts.rounds):
            for mode, store in stores.items():
                got = await _round(store, layout, path, opts.requests, opts.concurrency)
                results.setdefault((path, mode), []).append(got)
    print(f"concurrency {opts.concurrency}, {opts.requests} requests x {opts.rounds} rounds")
    print("| path | mode | CPU µs/request | requests/s |")
    print("|---|---|---:|---:|")
    for (path, mode), runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        rate = statistics.median(r[1] for r in runs)
        print(f"| {path} | {mode} | {cpu:.0f} | {rate:.0f} |")
    await batcher.aclose()
    # The shared Redis is not ours to litter: drop this run's keys (a benchmark may scan).
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.unlink(key)
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
