"""Settings, and the registry of every GATEWAY_* variable: one field, one entry, one place.

Each field's `setting(...)` names its variable, default and parser; `VARIABLES` is read from the
fields, so a new variable is one line here (plus a cross-field rule in `load.py` if it needs one).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from gateway.settings.parsers import (
    LOG_FORMATS,
    LOG_LEVELS,
    REQUIRED,
    Parse,
    Var,
    algorithms,
    boolean,
    choice,
    integer,
    number,
    origins,
    pattern,
    redis_url,
    secret,
    text,
    url,
)

REDIS_MODES = ("standalone", "cluster", "sentinel")
MIN_SECRET_BYTES = 32
MAX_LEEWAY = 60
WEEK = 7 * 24 * 3600
_ID = r"[A-Za-z0-9_.:-]"


def setting(
    name: str,
    default: Any = REQUIRED,
    parse: Parse = text,
    *,
    secret: bool = False,
    keep_empty: bool = False,
    hidden: bool = False,
) -> Any:
    """A Settings field read from the variable `name` (hidden: kept out of repr)."""
    meta = {"var": Var(name, parse, default, secret=secret, keep_empty=keep_empty)}
    if default is REQUIRED:
        return field(metadata=meta, repr=not hidden)
    return field(default=default, metadata=meta, repr=not hidden)


def _secret(name: str, required: bool = False) -> Any:
    return setting(
        name, REQUIRED if required else None, secret(MIN_SECRET_BYTES), secret=True, hidden=True
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the service needs, validated; secrets are kept out of repr."""

    database_url: str = setting(
        "GATEWAY_DATABASE_URL", parse=url("postgresql", "postgres"), hidden=True
    )
    redis_url: str = setting("GATEWAY_REDIS_URL", parse=redis_url, hidden=True)
    api_key_id: str = setting("GATEWAY_API_KEY_ID")
    signing_secret: bytes = _secret("GATEWAY_SIGNING_SECRET", required=True)
    jwt_secret: bytes | None = _secret("GATEWAY_JWT_SECRET")
    jwt_jwks_url: str | None = setting("GATEWAY_JWT_JWKS_URL", None, url("http", "https"))
    # Default filled in by load.py from the keys configured: HS256 and/or RS256,ES256.
    jwt_algorithms: tuple[str, ...] = setting("GATEWAY_JWT_ALGORITHMS", ("HS256",), algorithms)
    jwt_issuer: str | None = setting("GATEWAY_JWT_ISSUER", None)
    jwt_audience: str | None = setting("GATEWAY_JWT_AUDIENCE", None)
    jwt_leeway: int = setting("GATEWAY_JWT_LEEWAY", 30, integer(0, MAX_LEEWAY))
    jwt_max_age: int | None = setting("GATEWAY_JWT_MAX_AGE", None, integer(1, 366 * 24 * 3600))
    jwt_jwks_lifespan: float = setting("GATEWAY_JWT_JWKS_LIFESPAN", 300.0, number(1.0, 86400.0))
    jwt_jwks_cooldown: float = setting("GATEWAY_JWT_JWKS_COOLDOWN", 30.0, number(0.0, 3600.0))
    jwt_jwks_timeout: float = setting("GATEWAY_JWT_JWKS_TIMEOUT", 5.0, number(0.1, 60.0))
    tenant_claim: str = setting(
        "GATEWAY_TENANT_CLAIM",
        "organization_id",
        pattern(f"{_ID}{{1,64}}", "must be a claim name ([A-Za-z0-9_.:-], 1-64)"),
    )
    token_ttl: int = setting("GATEWAY_TOKEN_TTL", 3600, integer(1, WEEK))
    refresh_buffer: int = setting("GATEWAY_REFRESH_BUFFER", 300, integer(0, WEEK))
    host: str = setting("GATEWAY_HOST", "127.0.0.1")
    port: int = setting("GATEWAY_PORT", 8080, integer(0, 65535))
    log_level: str = setting("GATEWAY_LOG_LEVEL", "info", choice(*LOG_LEVELS))
    log_format: str = setting("GATEWAY_LOG_FORMAT", "json", choice(*LOG_FORMATS))
    redis_prefix: str = setting(
        "GATEWAY_REDIS_PREFIX",
        "gw:",
        pattern(f"{_ID}{{0,64}}", "may only hold [A-Za-z0-9_.:-], at most 64"),
        keep_empty=True,
    )
    audit_batch_size: int = setting("GATEWAY_AUDIT_BATCH_SIZE", 500, integer(1, 100_000))
    audit_flush_interval: float = setting("GATEWAY_AUDIT_FLUSH_INTERVAL", 0.2, number(0.001, 60.0))
    audit_queue_size: int = setting("GATEWAY_AUDIT_QUEUE_SIZE", 100_000, integer(1, 10_000_000))
    db_timeout: float = setting("GATEWAY_DB_TIMEOUT", 1.0, number(0.01, 60.0))
    redis_timeout: float = setting("GATEWAY_REDIS_TIMEOUT", 0.05, number(0.001, 10.0))
    shutdown_timeout: float = setting("GATEWAY_SHUTDOWN_TIMEOUT", 10.0, number(0.0, 600.0))
    audit_spool_dir: str = setting("GATEWAY_AUDIT_SPOOL_DIR", "audit-spool")
    audit_required: bool = setting("GATEWAY_AUDIT_REQUIRED", False, boolean)
    audit_fsync: str = setting("GATEWAY_AUDIT_FSYNC", "off", choice("off", "batch", "always"))
    audit_write_timeout: float = setting("GATEWAY_AUDIT_WRITE_TIMEOUT", 5.0, number(0.01, 600.0))
    audit_partition_days_ahead: int = setting(
        "GATEWAY_AUDIT_PARTITION_DAYS_AHEAD", 7, integer(1, 366)
    )
    # 0 disables either in-process cache; the bounds keep a typo from holding tokens for hours.
    jwt_cache_ttl: float = setting("GATEWAY_JWT_CACHE_TTL", 60.0, number(0.0, 3600.0))
    jwt_cache_size: int = setting("GATEWAY_JWT_CACHE_SIZE", 20_000, integer(1, 10_000_000))
    local_cache_ttl: float = setting("GATEWAY_LOCAL_CACHE_TTL", 5.0, number(0.0, 300.0))
    local_cache_size: int = setting("GATEWAY_LOCAL_CACHE_SIZE", 10_000, integer(1, 10_000_000))
    # Production limits (README "Operations"); 0 turns a rate limit off.
    db_acquire_timeout: float = setting("GATEWAY_DB_ACQUIRE_TIMEOUT", 1.0, number(0.01, 60.0))
    redis_breaker_threshold: int = setting("GATEWAY_REDIS_BREAKER_THRESHOLD", 3, integer(1, 1000))
    redis_breaker_cooldown: float = setting(
        "GATEWAY_REDIS_BREAKER_COOLDOWN", 2.0, number(0.01, 600.0)
    )
    rate_limit_subject_mints: int = setting(
        "GATEWAY_RATE_LIMIT_SUBJECT_MINTS", 30, integer(0, 10**7)
    )
    rate_limit_tenant_mints: int = setting(
        "GATEWAY_RATE_LIMIT_TENANT_MINTS", 300, integer(0, 10**7)
    )
    rate_limit_requests_per_second: float = setting(
        "GATEWAY_RATE_LIMIT_REQUESTS_PER_SECOND", 20.0, number(0.0, 1e6)
    )
    rate_limit_request_burst: int = setting(
        "GATEWAY_RATE_LIMIT_REQUEST_BURST", 40, integer(1, 10**6)
    )
    rate_limit_fail_closed: bool = setting("GATEWAY_RATE_LIMIT_FAIL_CLOSED", False, boolean)
    cors_origins: tuple[str, ...] = setting("GATEWAY_CORS_ORIGINS", (), origins)
    # RFC 6265 section 4.1.1: a cookie name is an RFC 7230 token.
    jwt_cookie: str | None = setting(
        "GATEWAY_JWT_COOKIE",
        None,
        pattern(
            r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}", "must be a cookie name (an RFC 6265 token, 1-128)"
        ),
    )
    body_timeout: float = setting("GATEWAY_BODY_TIMEOUT", 10.0, number(0.1, 600.0))
    keepalive_timeout: float = setting("GATEWAY_KEEPALIVE_TIMEOUT", 15.0, number(0.0, 3600.0))
    max_header_size: int = setting("GATEWAY_MAX_HEADER_SIZE", 16384, integer(1024, 65536))
    access_log_sample: float = setting("GATEWAY_ACCESS_LOG_SAMPLE", 0.0, number(0.0, 1.0))
    # Deploying at scale (README): Redis topology, PgBouncer, a read replica for the directory.
    redis_mode: str = setting("GATEWAY_REDIS_MODE", "standalone", choice(*REDIS_MODES))
    redis_sentinel_master: str | None = setting("GATEWAY_REDIS_SENTINEL_MASTER", None)
    db_statement_cache_size: int = setting(
        "GATEWAY_DB_STATEMENT_CACHE_SIZE", 256, integer(0, 100_000)
    )
    database_read_url: str | None = setting(
        "GATEWAY_DATABASE_READ_URL", None, url("postgresql", "postgres"), hidden=True
    )
    database_read_lag: float = setting("GATEWAY_DATABASE_READ_LAG", 10.0, number(0.0, 3600.0))


# Field name -> its variable, in declaration order: the registry everything else reads.
VARIABLES: dict[str, Var] = {f.name: f.metadata["var"] for f in fields(Settings)}
# Read by the test suite and its helpers, not by the service; known so they never warn.
TOOLING_VARIABLES = (
    "GATEWAY_TEST_DATABASE_URL",
    "GATEWAY_TEST_REDIS_URL",
    "GATEWAY_PYTHON",
    "GATEWAY_SKIP_DEV_TEST",
)
KNOWN_NAMES: frozenset[str] = frozenset(
    [v.name for v in VARIABLES.values()]
    + [f"{v.name}_FILE" for v in VARIABLES.values() if v.secret]
    + list(TOOLING_VARIABLES)
)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis is and how to reach it: the one input of `infra.redis_client`."""

    url: str = field(repr=False)
    prefix: str
    mode: str = "standalone"
    sentinel_master: str | None = None
