"""The one Redis client factory: URL forms, TLS parameters and the topology each mode gets."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.infra.redis_client import create_redis, parse_redis_url
from gateway.settings import ConfigError, RedisTarget, redis_target_from_env


def test_seed_lists_tls_and_credentials_are_parsed() -> None:
    parsed = parse_redis_url(
        "rediss://user:p%40ss@h1:7000,h2:7001/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=none"
    )
    assert parsed.hosts == [("h1", 7000), ("h2", 7001)]
    assert parsed.tls == {"ssl": True, "ssl_ca_certs": "/ca.pem", "ssl_cert_reqs": "none"}
    assert (parsed.username, parsed.password) == ("user", "p@ss")
    assert parse_redis_url("redis://h").hosts == [("h", 6379)]
    assert parse_redis_url("redis://h:1").tls == {}


def test_each_mode_gets_its_client() -> None:
    standalone = create_redis(RedisTarget("redis://127.0.0.1:1/0", "gw:"))
    assert type(standalone) is Redis
    cluster = create_redis(RedisTarget("redis://127.0.0.1:1,127.0.0.1:2", "gw:", "cluster"))
    assert isinstance(cluster, RedisCluster)
    sentinel = create_redis(RedisTarget("redis://127.0.0.1:1", "gw:", "sentinel", "mymaster"))
    assert type(sentinel.connection_pool).__name__ == "SentinelConnectionPool"
    assert sentinel.connection_pool.service_name == "mymaster"


def test_standalone_tls_query_parameters_reach_the_connection() -> None:
    client = create_redis(
        RedisTarget("rediss://127.0.0.1:6380/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=none", "gw:")
    )
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_cert_reqs"]) == ("/ca.pem", "none")


def test_environment_names_the_mode_and_its_needs() -> None:
    base = {"GATEWAY_REDIS_URL": "h1:7000,h2:7000"}
    target = redis_target_from_env(base | {"GATEWAY_REDIS_MODE": "cluster"})
    assert target is not None
    assert (target.url, target.mode) == ("redis://h1:7000,h2:7000", "cluster")
    with pytest.raises(ConfigError, match="GATEWAY_REDIS_SENTINEL_MASTER"):
        redis_target_from_env(base | {"GATEWAY_REDIS_MODE": "sentinel"})
    with pytest.raises(ConfigError, match="GATEWAY_REDIS_MODE"):
        redis_target_from_env(base | {"GATEWAY_REDIS_MODE": "clustered"})
    assert redis_target_from_env({}) is None


def test_configuration_errors_are_recognised_inside_scripts_too() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415
    from redis.exceptions import ReadOnlyError, ResponseError  # noqa: PLC0415

    from gateway.infra.dependency_errors import config_error_kind  # noqa: PLC0415

    wrapped = ResponseError("Error running script (call to f_1): @user_script:8: -READONLY You")
    assert config_error_kind(wrapped) == "readonly"
    assert config_error_kind(ReadOnlyError("READONLY")) == "readonly"
    assert config_error_kind(ResponseError("CROSSSLOT Keys in request")) == "crossslot"
    assert config_error_kind(ResponseError("ERR unknown command 'EVALSHA'")) == "unknown_command"
    assert config_error_kind(ResponseError("WRONGTYPE Operation")) is None
    assert config_error_kind(RedisConnectionError("refused")) is None


def test_scale_settings_are_validated_by_name() -> None:
    from gateway.settings import statement_cache_size_from_env  # noqa: PLC0415

    assert statement_cache_size_from_env({}) == 256
    assert statement_cache_size_from_env({"GATEWAY_DB_STATEMENT_CACHE_SIZE": "0"}) == 0
    with pytest.raises(ConfigError, match="GATEWAY_DB_STATEMENT_CACHE_SIZE"):
        statement_cache_size_from_env({"GATEWAY_DB_STATEMENT_CACHE_SIZE": "-1"})
