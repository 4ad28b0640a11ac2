"""The one Redis client factory, for the service and every CLI command, in each topology.

- standalone: one server (`redis://host:port/db`, `rediss://`, `unix://`).
- cluster: `GATEWAY_REDIS_URL` names one or more seed nodes (`redis://h1:p1,h2:p2`); redis-py's
  asyncio RedisCluster follows MOVED/ASK and routes each key (each script) to its slot.
- sentinel: `GATEWAY_REDIS_URL` names the sentinels, `GATEWAY_REDIS_SENTINEL_MASTER` the service;
  the client asks the sentinels for the primary and follows it through a failover.
`rediss://` with `ssl_ca_certs` / `ssl_cert_reqs` (and `ssl_certfile` / `ssl_keyfile`) query
parameters turns TLS on in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from gateway.settings import ConfigError, RedisTarget

AnyRedis = Redis | RedisCluster
_TLS_PARAMS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """The parts of GATEWAY_REDIS_URL every mode needs."""

    hosts: list[tuple[str, int]]
    tls: dict[str, object]
    username: str | None
    password: str | None
    db: int


def parse_redis_url(url: str) -> ParsedUrl:
    """Seeds, TLS options and credentials of a (possibly comma-separated) Redis URL."""
    parts = urlsplit(url)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:
            host, port = item.strip(), ""
        try:
            hosts.append((host.strip("[]"), int(port or 6379)))
        except ValueError:
            raise ConfigError("GATEWAY_REDIS_URL has a host:port that is not one") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    tls: dict[str, object] = {}
    if parts.scheme == "rediss":
        tls = {"ssl": True} | {k: query[k] for k in _TLS_PARAMS if k in query}
    db = int(query.get("db") or (parts.path.strip("/") or 0))
    return ParsedUrl(hosts, tls, username, password, db)


def create_redis(
    target: RedisTarget,
    *,
    timeout: float = 5.0,
    max_connections: int = 64,
    health_check_interval: float = 30,
) -> AnyRedis:
    """A client for `target`'s topology; no I/O until the first command.

    No retries inside a call: the service's breaker decides when Redis is tried again.
    """
    no_retry = Retry(NoBackoff(), 0)
    if target.mode == "standalone":
        # A blocking pool: a burst waits for a connection (bounded by each call's deadline)
        # instead of failing with MaxConnectionsError, which would count as Redis being down.
        pool = BlockingConnectionPool.from_url(
            target.url,
            max_connections=max_connections,
            timeout=1.0,
            socket_connect_timeout=timeout,
            socket_timeout=max(timeout, 1.0),
            health_check_interval=health_check_interval,
            retry=no_retry,
        )
        return Redis.from_pool(pool)  # the client owns the pool and closes it
    parsed = parse_redis_url(target.url)
    common: dict[str, object] = {
        "username": parsed.username,
        "password": parsed.password,
        "socket_connect_timeout": timeout,
        "socket_timeout": max(timeout, 1.0),
        "health_check_interval": health_check_interval,
        **parsed.tls,
    }
    if target.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts],
            max_connections=max_connections,
            # A topology change is followed once (MOVED refreshes the slot map); more retries
            # would only stack waits inside one request's deadline.
            retry=Retry(NoBackoff(), 1),
            **common,
        )
    if target.sentinel_master is None:
        raise ConfigError(
            "GATEWAY_REDIS_SENTINEL_MASTER is required with GATEWAY_REDIS_MODE=sentinel"
        )
    # Sentinels seldom share the data nodes' credentials; they get the TLS and timeouts only.
    to_sentinels = {k: v for k, v in common.items() if k not in ("username", "password")}
    sentinel = Sentinel(parsed.hosts, sentinel_kwargs=to_sentinels, **common)
    return sentinel.master_for(
        target.sentinel_master,
        db=parsed.db,
        max_connections=max_connections,
        retry=no_retry,
    )


class RedisTopologyProblem(Exception):
    """Redis answers, but its topology cannot serve (the message says what is wrong)."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def topology_problem(client: AnyRedis, mode: str) -> str | None:
    """What is wrong with the Redis topology for serving, or None: for /readyz.

    cluster: the state is ok and all 16384 slots are covered; sentinel (and standalone): the
    node we write to is a primary, not a replica left behind by a failover.
    """
    if isinstance(client, RedisCluster):
        info = await client.cluster_info()
        state = _text(info.get("cluster_state", "?"))
        if state != "ok":
            return f"cluster_state is {state}"
        assigned = int(info.get("cluster_slots_assigned", 0))
        failing = int(info.get("cluster_slots_fail", 0)) + int(info.get("cluster_slots_pfail", 0))
        if assigned != 16384 or failing:
            return f"{assigned} of 16384 slots assigned, {failing} failing"
        return None
    try:
        role = await client.execute_command("ROLE")
    except ResponseError:
        # A proxy in front of Redis may not know ROLE: then reachable is all we can tell.
        await client.ping()
        return None
    name = _text(role[0]) if role else "?"
    if name != "master":
        return f"role is {name}, not master ({mode} mode): writes would fail"
    return None
