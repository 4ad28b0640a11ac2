"""Reading the environment into Settings: every problem reported at once, cross-field rules last.

Hand-written rather than pydantic-settings or msgspec: those would still need this module's
`_FILE` secrets, cross-field rules and "did you mean" lookups, and their errors span lines and
echo the input value, where the contract wants one line per variable and never a value.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.settings.model import KNOWN_NAMES, VARIABLES, RedisTarget, Settings
from gateway.settings.parsers import REQUIRED, ConfigError, Var

# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
_HS_MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


def _unknown(env: Mapping[str, str]) -> list[str]:
    return sorted(n for n in env if n.startswith("GATEWAY_") and n not in KNOWN_NAMES)


def _nearest(name: str) -> str | None:
    match = difflib.get_close_matches(name, KNOWN_NAMES, n=1, cutoff=0.8)
    return match[0] if match else None


def unknown_variable_warnings(env: Mapping[str, str] | None = None) -> list[str]:
    """One line per GATEWAY_* variable nobody reads, with the nearest known name if any."""
    env = os.environ if env is None else env
    lines = []
    for name in _unknown(env):
        near = _nearest(name)
        hint = f" (did you mean {near}?)" if near else ""
        lines.append(f"{name} is not a gateway setting and is ignored{hint}")
    return lines


def _missing(env: Mapping[str, str], name: str, also: str = "") -> str:
    twins = [n for n in _unknown(env) if _nearest(n) in (name, f"{name}_FILE")]
    hint = f" ({', '.join(twins)} is set: a misspelling?)" if twins else ""
    return f"{name}{also} is required{hint}"


def _raw(env: Mapping[str, str], var: Var) -> str | None:
    """The variable's text, or NAME_FILE's contents for a secret; None when unset."""
    direct = env.get(var.name)
    if var.secret:
        direct = direct or None  # a secret is taken byte for byte, spaces included
    elif not var.keep_empty and direct is not None:
        direct = direct.strip() or None
    if not var.secret:
        return direct
    path = (env.get(f"{var.name}_FILE") or "").strip()
    if not path:
        return direct
    if direct:
        raise ConfigError(f"set only one of {var.name} and {var.name}_FILE")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{var.name}_FILE cannot be read ({exc.strerror})") from None
    # Every trailing CR and LF goes: editors and `echo` add them, no secret ends with one.
    return data.rstrip(b"\r\n").decode("utf-8", "surrogateescape")


def read(env: Mapping[str, str], field: str, problems: list[str]) -> Any:
    """One field's value from env (its default when unset); a problem is appended, not raised."""
    var = VARIABLES[field]
    try:
        raw = _raw(env, var)
        if raw is not None:
            return var.parse(var.name, raw)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    if var.default is REQUIRED:
        also = f" (or {var.name}_FILE)" if var.secret else ""
        problems.append(_missing(env, var.name, also))
        return None
    return var.default


def _cross_field(values: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> None:
    """Rules between variables; each names every variable it involves."""
    secret, jwks = values["jwt_secret"], values["jwt_jwks_url"]
    key_failed = any(p.startswith(("GATEWAY_JWT_SECRET", "GATEWAY_JWT_JWKS_URL")) for p in problems)
    if secret is None and jwks is None and not key_failed:
        problems.append(
            _missing(
                env, "GATEWAY_JWT_SECRET", " (or GATEWAY_JWT_SECRET_FILE) or GATEWAY_JWT_JWKS_URL"
            )
        )
    if not (env.get("GATEWAY_JWT_ALGORITHMS") or "").strip():
        default: tuple[str, ...] = ("HS256",) if secret is not None else ()
        values["jwt_algorithms"] = default + (("RS256", "ES256") if jwks is not None else ())
    algs = values["jwt_algorithms"] or ()
    if any(a.startswith("HS") for a in algs) and secret is None and jwks is not None:
        problems.append(
            "GATEWAY_JWT_ALGORITHMS names an HS algorithm but GATEWAY_JWT_SECRET is unset"
        )
    if any(not a.startswith("HS") for a in algs) and jwks is None:
        problems.append(
            "GATEWAY_JWT_ALGORITHMS names an asymmetric algorithm but GATEWAY_JWT_JWKS_URL is unset"
        )
    if secret is not None:
        need = max((_HS_MIN_SECRET_BYTES.get(a, 0) for a in algs), default=0)
        if len(secret) < need:
            alg = next(a for a in algs if _HS_MIN_SECRET_BYTES.get(a, 0) == need)
            problems.append(f"GATEWAY_JWT_SECRET must be at least {need} bytes for {alg}")
    _sentinel_rule(values["redis_mode"], values["redis_sentinel_master"], problems)
    ttl, buffer = values["token_ttl"], values["refresh_buffer"]
    # A token is reused only while more than the buffer is left: a TTL at or under it would mint
    # on every request.
    if ttl is not None and buffer is not None and ttl <= buffer:
        problems.append(
            f"GATEWAY_TOKEN_TTL ({ttl}) must be greater than GATEWAY_REFRESH_BUFFER ({buffer})"
        )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment; ConfigError lists every bad variable, one line each."""
    env = os.environ if env is None else env
    problems: list[str] = []
    values = {field: read(env, field, problems) for field in VARIABLES}
    _cross_field(values, env, problems)
    if problems:
        raise ConfigError(*problems)
    return Settings(**values)


def database_url_from_env(env: Mapping[str, str] | None = None) -> str:
    """The PostgreSQL DSN alone, for commands that need nothing else (migrate, tenants)."""
    return value_from_env("database_url", env)


def redis_target_from_env(env: Mapping[str, str] | None = None) -> RedisTarget | None:
    """GATEWAY_REDIS_URL/_PREFIX/_MODE/_SENTINEL_MASTER for every command; None without a URL."""
    env = os.environ if env is None else env
    if not (env.get("GATEWAY_REDIS_URL") or "").strip():
        return None
    problems: list[str] = []
    url, prefix, mode, master = (
        read(env, name, problems)
        for name in ("redis_url", "redis_prefix", "redis_mode", "redis_sentinel_master")
    )
    _sentinel_rule(mode, master, problems)
    if problems:
        raise ConfigError(*problems)
    return RedisTarget(url, prefix, mode, master)


def statement_cache_size_from_env(env: Mapping[str, str] | None = None) -> int:
    """GATEWAY_DB_STATEMENT_CACHE_SIZE: asyncpg's prepared statements; 0 behind PgBouncer."""
    return value_from_env("db_statement_cache_size", env)


def _sentinel_rule(mode: str | None, master: str | None, problems: list[str]) -> None:
    if mode == "sentinel" and master is None:
        problems.append(
            "GATEWAY_REDIS_SENTINEL_MASTER is required with GATEWAY_REDIS_MODE=sentinel"
        )


def value_from_env(field: str, env: Mapping[str, str] | None = None) -> Any:
    """One Settings field read alone (its default when unset), for commands needing only it."""
    problems: list[str] = []
    value = read(os.environ if env is None else env, field, problems)
    if problems:
        raise ConfigError(*problems)
    return value


def log_config_from_env(
    default_format: str, env: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """(GATEWAY_LOG_LEVEL, GATEWAY_LOG_FORMAT) for any command; `default_format` when unset."""
    env = os.environ if env is None else env
    problems: list[str] = []
    level = read(env, "log_level", problems)
    fmt = read(env, "log_format", problems) if env.get("GATEWAY_LOG_FORMAT") else default_format
    if problems:
        raise ConfigError(*problems)
    return level, fmt
