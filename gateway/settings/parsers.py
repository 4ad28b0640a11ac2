"""How one environment variable's text becomes a typed value, and the error when it cannot."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "text")


class ConfigError(Exception):
    """Settings are missing or invalid: one line per problem, naming the variable, never a value."""

    def __init__(self, *problems: str) -> None:
        self.problems: tuple[str, ...] = problems
        super().__init__("; ".join(problems))


Parse = Callable[[str, str], Any]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True, slots=True)
class Var:
    """One known GATEWAY_* variable: its name, default and parser (a Settings field's metadata)."""

    name: str
    parse: Parse
    default: Any = REQUIRED
    # Also read NAME_FILE (a path holding the value, as container secrets are mounted).
    secret: bool = False
    # An empty value is a value (a Redis prefix may be ""), not "unset".
    keep_empty: bool = False


def integer(low: int, high: int) -> Parse:
    """An integer in [low, high]."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}")
        return value

    return parse


def number(low: float, high: float) -> Parse:
    """A number in [low, high]."""

    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}")
        return value

    return parse


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def boolean(name: str, raw: str) -> bool:
    """true/false (also 1/0, yes/no, on/off)."""
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false")


def text(name: str, raw: str) -> str:
    """Any non-empty text."""
    return raw


def choice(*options: str) -> Parse:
    """One of the options, case-insensitive."""

    def parse(name: str, raw: str) -> str:
        if raw.lower() not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}")
        return raw.lower()

    return parse


def url(*schemes: str) -> Parse:
    """A URL with one of the schemes; the error never repeats the URL (it may hold a password)."""

    def parse(name: str, raw: str) -> str:
        if urlsplit(raw).scheme not in schemes:
            raise ConfigError(
                f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
            )
        return raw

    return parse


def redis_url(name: str, raw: str) -> str:
    """A Redis URL; cluster seeds and sentinels may also be a bare "host:port,host:port" list."""
    if "://" not in raw:
        return "redis://" + raw
    return url("redis", "rediss", "unix")(name, raw)


def pattern(regex: str, rule: str) -> Parse:
    """Text matching regex; `rule` says in words what is allowed."""
    compiled = re.compile(regex)

    def parse(name: str, raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ConfigError(f"{name} {rule}")
        return raw

    return parse


def secret(min_bytes: int) -> Parse:
    """A secret of at least min_bytes bytes (read from NAME or NAME_FILE)."""

    def parse(name: str, raw: str) -> bytes:
        value = raw.encode("utf-8", "surrogateescape")
        if len(value) < min_bytes:
            raise ConfigError(f"{name} must be at least {min_bytes} bytes")
        return value

    return parse


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def origins(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated exact origins (a wildcard would let any site mint with a user's JWT)."""
    values = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in values:
        if not _ORIGIN.match(origin):
            raise ConfigError(
                f"{name} must list exact origins like https://app.example.com"
                " (scheme://host[:port], comma-separated, no wildcard)"
            )
    return values


def algorithms(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated allow list of JWS algorithms PyJWT verifies."""
    values = tuple(a.strip() for a in raw.split(",") if a.strip())
    for alg in values:
        if alg not in SUPPORTED_ALGORITHMS:
            raise ConfigError(
                f"{name}: {alg!r} is not supported (choose from {', '.join(SUPPORTED_ALGORITHMS)})"
            )
    if not values:
        raise ConfigError(f"{name} must name at least one algorithm")
    return values
