"""Settings read from the environment once, at start-up, and validated there."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

MIN_SECRET_BYTES = 32
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "text")
# Asymmetric and HMAC algorithms PyJWT verifies; "none" is never among them.
SUPPORTED_ALGORITHMS = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "EdDSA",
)
# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
_HS_MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
MAX_LEEWAY = 60
_CLAIM_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{0,64}$")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable and never its value."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs, validated; secrets are kept out of repr."""

    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    api_key_id: str
    signing_secret: bytes = field(repr=False)
    jwt_secret: bytes | None = field(default=None, repr=False)
    jwt_jwks_url: str | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: int = 30
    jwt_max_age: int | None = None
    jwt_jwks_lifespan: float = 300.0
    jwt_jwks_cooldown: float = 30.0
    jwt_jwks_timeout: float = 5.0
    tenant_claim: str = "organization_id"
    token_ttl: int = 3600
    refresh_buffer: int = 300
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    log_format: str = "json"
    redis_prefix: str = "gw:"
    audit_batch_size: int = 500
    audit_flush_interval: float = 0.2
    audit_queue_size: int = 100_000
    db_timeout: float = 1.0
    redis_timeout: float = 0.05
    shutdown_timeout: float = 10.0
    audit_spool_dir: str = "audit-spool"
    audit_required: bool = False
    audit_fsync: str = "off"
    audit_write_timeout: float = 5.0
    audit_partition_days_ahead: int = 7
    jwt_cache_ttl: float = 60.0
    jwt_cache_size: int = 20_000
    local_cache_ttl: float = 5.0
    local_cache_size: int = 10_000
    # Production limits (README "Operations"); 0 turns a rate limit off.
    db_acquire_timeout: float = 1.0
    redis_breaker_threshold: int = 3
    redis_breaker_cooldown: float = 2.0
    rate_limit_subject_mints: int = 30
    rate_limit_tenant_mints: int = 300
    rate_limit_requests_per_second: float = 20.0
    rate_limit_request_burst: int = 40
    rate_limit_fail_closed: bool = False
    cors_origins: tuple[str, ...] = ()
    body_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    max_header_size: int = 16384
    access_log_sample: float = 0.0
    # Deploying at scale (README): Redis topology, PgBouncer, a read replica for the directory.
    redis_mode: str = "standalone"
    redis_sentinel_master: str | None = None
    db_statement_cache_size: int = 256
    database_read_url: str | None = field(default=None, repr=False)
    database_read_lag: float = 10.0


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _require(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name)
    if value is None:
        raise ConfigError(f"{name} is required")
    return value


def _secret(env: Mapping[str, str], name: str) -> bytes | None:
    """Read NAME or NAME_FILE (a path whose contents, minus a trailing newline, are the secret)."""
    direct = env.get(name)
    path = _get(env, f"{name}_FILE")
    if direct and path:
        raise ConfigError(f"set only one of {name} and {name}_FILE")
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE cannot be read ({exc.strerror})") from None
        return data.rstrip(b"\r\n")
    if direct:
        return direct.encode()
    return None


_N = TypeVar("_N", int, float)


def _number(
    env: Mapping[str, str], name: str, default: _N, low: _N, high: _N, kind: type[_N]
) -> _N:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return _number(env, name, default, low, high, int)


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _number(env, name, default, low, high, float)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false")


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = _get(env, "GATEWAY_CORS_ORIGINS")
    if raw is None:
        return ()
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        # Exact origins only: a wildcard would let any site mint tokens with a user's JWT.
        if not _ORIGIN.match(origin):
            raise ConfigError(
                "GATEWAY_CORS_ORIGINS must list exact origins like https://app.example.com"
                " (scheme://host[:port], comma-separated, no wildcard)"
            )
    return origins


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (_get(env, name) or default).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}")
    return value


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str:
    value = _require(env, name)
    if urlsplit(value).scheme not in schemes:
        raise ConfigError(
            f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
        )
    return value


def database_url_from_env(env: Mapping[str, str] | None = None) -> str:
    """The PostgreSQL DSN alone, for commands that need nothing else (migrate, tenants)."""
    return _url(
        os.environ if env is None else env, "GATEWAY_DATABASE_URL", ("postgresql", "postgres")
    )


REDIS_MODES = ("standalone", "cluster", "sentinel")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis is and how to reach it: the one input of `infra.redis_client`."""

    url: str = field(repr=False)
    prefix: str
    mode: str = "standalone"
    sentinel_master: str | None = None


def _redis_url(env: Mapping[str, str]) -> str:
    value = _get(env, "GATEWAY_REDIS_URL")
    # Cluster seeds and sentinels may be given as a bare "host:port,host:port" list.
    if value is not None and "://" not in value:
        return "redis://" + value
    return _url(env, "GATEWAY_REDIS_URL", ("redis", "rediss", "unix"))


def redis_target_from_env(env: Mapping[str, str] | None = None) -> RedisTarget | None:
    """GATEWAY_REDIS_URL/_PREFIX/_MODE/_SENTINEL_MASTER for every command; None without a URL."""
    env = os.environ if env is None else env
    if _get(env, "GATEWAY_REDIS_URL") is None:
        return None
    prefix = env.get("GATEWAY_REDIS_PREFIX", "gw:")
    if not _PREFIX.match(prefix):
        raise ConfigError("GATEWAY_REDIS_PREFIX may only hold [A-Za-z0-9_.:-], at most 64")
    mode = _choice(env, "GATEWAY_REDIS_MODE", "standalone", REDIS_MODES)
    master = _get(env, "GATEWAY_REDIS_SENTINEL_MASTER")
    if mode == "sentinel" and master is None:
        raise ConfigError(
            "GATEWAY_REDIS_SENTINEL_MASTER is required with GATEWAY_REDIS_MODE=sentinel"
        )
    return RedisTarget(_redis_url(env), prefix, mode, master)


def statement_cache_size_from_env(env: Mapping[str, str] | None = None) -> int:
    """GATEWAY_DB_STATEMENT_CACHE_SIZE: asyncpg's prepared statements; 0 behind PgBouncer."""
    return _int(
        os.environ if env is None else env, "GATEWAY_DB_STATEMENT_CACHE_SIZE", 256, 0, 100_000
    )


def _algorithms(env: Mapping[str, str], has_secret: bool, has_jwks: bool) -> tuple[str, ...]:
    raw = _get(env, "GATEWAY_JWT_ALGORITHMS")
    if raw is None:
        default: list[str] = []
        if has_secret:
            default.append("HS256")
        if has_jwks:
            default += ["RS256", "ES256"]
        return tuple(default)
    algorithms = tuple(a.strip() for a in raw.split(",") if a.strip())
    for alg in algorithms:
        if alg not in SUPPORTED_ALGORITHMS:
            raise ConfigError(
                f"GATEWAY_JWT_ALGORITHMS: {alg!r} is not supported "
                f"(choose from {', '.join(SUPPORTED_ALGORITHMS)})"
            )
    if not algorithms:
        raise ConfigError("GATEWAY_JWT_ALGORITHMS must name at least one algorithm")
    if any(a.startswith("HS") for a in algorithms) and not has_secret:
        raise ConfigError(
            "GATEWAY_JWT_ALGORITHMS names an HS algorithm but GATEWAY_JWT_SECRET is unset"
        )
    if any(not a.startswith("HS") for a in algorithms) and not has_jwks:
        raise ConfigError(
            "GATEWAY_JWT_ALGORITHMS names an asymmetric algorithm but GATEWAY_JWT_JWKS_URL is unset"
        )
    return algorithms


def _optional_int(env: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    if _get(env, name) is None:
        return None
    return _int(env, name, low, low, high)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment, raising ConfigError naming the first bad variable."""
    env = os.environ if env is None else env
    database_url = database_url_from_env(env)
    redis_url = _redis_url(env)
    redis = redis_target_from_env(env)
    read_url = _get(env, "GATEWAY_DATABASE_READ_URL")
    if read_url is not None:
        read_url = _url(env, "GATEWAY_DATABASE_READ_URL", ("postgresql", "postgres"))
    api_key_id = _require(env, "GATEWAY_API_KEY_ID")

    signing_secret = _secret(env, "GATEWAY_SIGNING_SECRET")
    if signing_secret is None:
        raise ConfigError("GATEWAY_SIGNING_SECRET (or GATEWAY_SIGNING_SECRET_FILE) is required")
    if len(signing_secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"GATEWAY_SIGNING_SECRET must be at least {MIN_SECRET_BYTES} bytes")

    jwt_secret = _secret(env, "GATEWAY_JWT_SECRET")
    # RFC 7518 section 3.2: an HS256 key shorter than the hash is guessable offline.
    if jwt_secret is not None and len(jwt_secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"GATEWAY_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    jwks_url = _get(env, "GATEWAY_JWT_JWKS_URL")
    if jwks_url is not None and urlsplit(jwks_url).scheme not in ("http", "https"):
        raise ConfigError("GATEWAY_JWT_JWKS_URL must be an http:// or https:// URL")
    if jwt_secret is None and jwks_url is None:
        raise ConfigError(
            "GATEWAY_JWT_SECRET (or GATEWAY_JWT_SECRET_FILE) or GATEWAY_JWT_JWKS_URL is required"
        )

    algorithms = _algorithms(env, jwt_secret is not None, jwks_url is not None)
    for alg in algorithms:
        if jwt_secret is not None and len(jwt_secret) < _HS_MIN_SECRET_BYTES.get(alg, 0):
            raise ConfigError(
                f"GATEWAY_JWT_SECRET must be at least {_HS_MIN_SECRET_BYTES[alg]} bytes for {alg}"
            )

    tenant_claim = _get(env, "GATEWAY_TENANT_CLAIM") or "organization_id"
    if not _CLAIM_NAME.match(tenant_claim):
        raise ConfigError("GATEWAY_TENANT_CLAIM must be a claim name ([A-Za-z0-9_.:-], 1-64)")
    prefix = env.get("GATEWAY_REDIS_PREFIX", "gw:")
    if not _PREFIX.match(prefix):
        raise ConfigError("GATEWAY_REDIS_PREFIX may only hold [A-Za-z0-9_.:-], at most 64")

    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        api_key_id=api_key_id,
        signing_secret=signing_secret,
        jwt_secret=jwt_secret,
        jwt_jwks_url=jwks_url,
        jwt_algorithms=algorithms,
        jwt_issuer=_get(env, "GATEWAY_JWT_ISSUER"),
        jwt_audience=_get(env, "GATEWAY_JWT_AUDIENCE"),
        jwt_leeway=_int(env, "GATEWAY_JWT_LEEWAY", 30, 0, MAX_LEEWAY),
        jwt_max_age=_optional_int(env, "GATEWAY_JWT_MAX_AGE", 1, 366 * 24 * 3600),
        jwt_jwks_lifespan=_float(env, "GATEWAY_JWT_JWKS_LIFESPAN", 300.0, 1.0, 86400.0),
        jwt_jwks_cooldown=_float(env, "GATEWAY_JWT_JWKS_COOLDOWN", 30.0, 0.0, 3600.0),
        jwt_jwks_timeout=_float(env, "GATEWAY_JWT_JWKS_TIMEOUT", 5.0, 0.1, 60.0),
        tenant_claim=tenant_claim,
        token_ttl=_int(env, "GATEWAY_TOKEN_TTL", 3600, 1, 7 * 24 * 3600),
        refresh_buffer=_int(env, "GATEWAY_REFRESH_BUFFER", 300, 0, 7 * 24 * 3600),
        host=_get(env, "GATEWAY_HOST") or "127.0.0.1",
        port=_int(env, "GATEWAY_PORT", 8080, 0, 65535),
        log_level=_choice(env, "GATEWAY_LOG_LEVEL", "info", LOG_LEVELS),
        log_format=_choice(env, "GATEWAY_LOG_FORMAT", "json", LOG_FORMATS),
        redis_prefix=prefix,
        audit_batch_size=_int(env, "GATEWAY_AUDIT_BATCH_SIZE", 500, 1, 100_000),
        audit_flush_interval=_float(env, "GATEWAY_AUDIT_FLUSH_INTERVAL", 0.2, 0.001, 60.0),
        audit_queue_size=_int(env, "GATEWAY_AUDIT_QUEUE_SIZE", 100_000, 1, 10_000_000),
        db_timeout=_float(env, "GATEWAY_DB_TIMEOUT", 1.0, 0.01, 60.0),
        redis_timeout=_float(env, "GATEWAY_REDIS_TIMEOUT", 0.05, 0.001, 10.0),
        shutdown_timeout=_float(env, "GATEWAY_SHUTDOWN_TIMEOUT", 10.0, 0.0, 600.0),
        audit_spool_dir=_get(env, "GATEWAY_AUDIT_SPOOL_DIR") or "audit-spool",
        audit_required=_bool(env, "GATEWAY_AUDIT_REQUIRED", False),
        audit_fsync=_choice(env, "GATEWAY_AUDIT_FSYNC", "off", ("off", "batch", "always")),
        audit_write_timeout=_float(env, "GATEWAY_AUDIT_WRITE_TIMEOUT", 5.0, 0.01, 600.0),
        audit_partition_days_ahead=_int(env, "GATEWAY_AUDIT_PARTITION_DAYS_AHEAD", 7, 1, 366),
        # 0 disables either in-process cache; the bounds keep a typo from holding tokens for hours.
        jwt_cache_ttl=_float(env, "GATEWAY_JWT_CACHE_TTL", 60.0, 0.0, 3600.0),
        jwt_cache_size=_int(env, "GATEWAY_JWT_CACHE_SIZE", 20_000, 1, 10_000_000),
        local_cache_ttl=_float(env, "GATEWAY_LOCAL_CACHE_TTL", 5.0, 0.0, 300.0),
        local_cache_size=_int(env, "GATEWAY_LOCAL_CACHE_SIZE", 10_000, 1, 10_000_000),
        db_acquire_timeout=_float(env, "GATEWAY_DB_ACQUIRE_TIMEOUT", 1.0, 0.01, 60.0),
        redis_breaker_threshold=_int(env, "GATEWAY_REDIS_BREAKER_THRESHOLD", 3, 1, 1000),
        redis_breaker_cooldown=_float(env, "GATEWAY_REDIS_BREAKER_COOLDOWN", 2.0, 0.01, 600.0),
        rate_limit_subject_mints=_int(env, "GATEWAY_RATE_LIMIT_SUBJECT_MINTS", 30, 0, 10**7),
        rate_limit_tenant_mints=_int(env, "GATEWAY_RATE_LIMIT_TENANT_MINTS", 300, 0, 10**7),
        rate_limit_requests_per_second=_float(
            env, "GATEWAY_RATE_LIMIT_REQUESTS_PER_SECOND", 20.0, 0.0, 1e6
        ),
        rate_limit_request_burst=_int(env, "GATEWAY_RATE_LIMIT_REQUEST_BURST", 40, 1, 10**6),
        rate_limit_fail_closed=_bool(env, "GATEWAY_RATE_LIMIT_FAIL_CLOSED", False),
        cors_origins=_origins(env),
        body_timeout=_float(env, "GATEWAY_BODY_TIMEOUT", 10.0, 0.1, 600.0),
        keepalive_timeout=_float(env, "GATEWAY_KEEPALIVE_TIMEOUT", 15.0, 0.0, 3600.0),
        max_header_size=_int(env, "GATEWAY_MAX_HEADER_SIZE", 16384, 1024, 65536),
        access_log_sample=_float(env, "GATEWAY_ACCESS_LOG_SAMPLE", 0.0, 0.0, 1.0),
        redis_mode="standalone" if redis is None else redis.mode,
        redis_sentinel_master=None if redis is None else redis.sentinel_master,
        db_statement_cache_size=statement_cache_size_from_env(env),
        database_read_url=read_url,
        database_read_lag=_float(env, "GATEWAY_DATABASE_READ_LAG", 10.0, 0.0, 3600.0),
    )
