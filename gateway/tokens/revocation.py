"""Revocation without scanning: increment a generation in the tenant's slot.

Every token entry records the generations it was stored under; once one moves on, the entry is
never served again, by any instance, whichever replica it is later read from (see store.py).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from gateway.tokens.keys import TENANT_FIELD, KeyLayout, alias_field, dashboard_field

# Increment one generation and, for a mapping change, mark the tenant "recently changed" so
# dashboard lookups read the primary for `lag` ms. KEYS: generations, changed. ARGV: field, ms.
REVOKE_SCRIPT = """
local gen = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return gen
"""


class NotReplicated(RedisError):
    """A generation was incremented on a primary no replica acknowledged: a failover may be
    under way, and a demoted primary's writes are lost when it resyncs. Try again."""


async def _bump(
    client: Redis | RedisCluster,
    layout: KeyLayout,
    tenant_id: str,
    field: str,
    lag: float,
    replicas: int,
) -> int:
    keys = [layout.generations(tenant_id), layout.changed(tenant_id)]
    args = [field, max(0, round(lag * 1000))]
    if replicas <= 0:
        return int(await client.eval(REVOKE_SCRIPT, 2, *keys, *args))
    # WAIT counts the replicas that have this connection's writes, so both go down one
    # connection: a pipeline.
    async with client.pipeline(transaction=False) as pipe:
        pipe.eval(REVOKE_SCRIPT, 2, *keys, *args)
        pipe.execute_command("WAIT", replicas, 2000)
        generation, acked = await pipe.execute()
    if int(acked) < replicas:
        raise NotReplicated(f"generation {generation} reached {acked} of {replicas} replica(s)")
    return int(generation)


async def revoke_tenant(
    client: Redis | RedisCluster,
    layout: KeyLayout,
    tenant_id: str,
    *,
    lag: float = 0.0,
    replicas: int = 0,
) -> int:
    """Revoke every token of a tenant (all workspaces and dashboards); the new generation.

    With `replicas`, raise NotReplicated unless that many replicas acknowledged it.
    """
    return await _bump(client, layout, tenant_id, TENANT_FIELD, lag, replicas)


async def revoke_dashboard(
    client: Redis | RedisCluster,
    layout: KeyLayout,
    tenant_id: str,
    dashboard_id: str,
    *,
    lag: float = 0.0,
    replicas: int = 0,
) -> int:
    """Revoke a tenant's tokens of one dashboard, default-dashboard entries holding it included."""
    return await _bump(client, layout, tenant_id, dashboard_field(dashboard_id), lag, replicas)


async def revoke_default_alias(
    client: Redis | RedisCluster,
    layout: KeyLayout,
    tenant_id: str,
    workspace_id: str,
    *,
    lag: float = 0.0,
    replicas: int = 0,
) -> int:
    """Revoke the "default dashboard" entries of one workspace (its default changed)."""
    return await _bump(client, layout, tenant_id, alias_field(workspace_id), lag, replicas)


async def prefix_in_use(client: Redis | RedisCluster, layout: KeyLayout) -> bool:
    """Whether a gateway ever started with this prefix on this Redis."""
    return bool(await client.exists(layout.in_use()))


async def mark_changed(
    client: Redis | RedisCluster, layout: KeyLayout, tenant_id: str, *, lag: float
) -> int:
    """For `lag` seconds, dashboard lookups of this tenant read the primary (read-your-writes);
    the generation, unchanged, is returned."""
    if lag > 0:
        await client.set(layout.changed(tenant_id), "1", px=max(1, round(lag * 1000)))
    return 0
