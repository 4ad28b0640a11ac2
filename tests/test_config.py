"""The production settings: defaults, and one clear error line naming a bad variable."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings

OPS_ENV = {
    "GATEWAY_DATABASE_URL": "postgresql://u@h/db",
    "GATEWAY_REDIS_URL": "redis://h:6379/0",
    "GATEWAY_API_KEY_ID": "key",
    "GATEWAY_SIGNING_SECRET": "s" * 32,
    "GATEWAY_JWT_SECRET": "j" * 32,
}


def test_defaults() -> None:
    """Unset, the limits are the documented defaults."""
    s = load_settings(OPS_ENV)
    assert (s.rate_limit_subject_mints, s.rate_limit_tenant_mints) == (30, 300)
    assert (s.rate_limit_requests_per_second, s.rate_limit_request_burst) == (20.0, 40)
    assert s.rate_limit_fail_closed is False
    assert (s.redis_timeout, s.redis_breaker_threshold, s.redis_breaker_cooldown) == (0.05, 3, 2.0)
    assert (s.db_timeout, s.db_acquire_timeout) == (1.0, 1.0)
    assert s.cors_origins == ()
    assert (s.body_timeout, s.keepalive_timeout, s.max_header_size) == (10.0, 15.0, 8190)


def test_values_are_read() -> None:
    """Set, they are parsed: booleans, lists of origins (trailing slash dropped), numbers."""
    s = load_settings(
        OPS_ENV
        | {
            "GATEWAY_RATE_LIMIT_FAIL_CLOSED": "true",
            "GATEWAY_CORS_ORIGINS": "https://a.example.com/, http://localhost:3000",
            "GATEWAY_RATE_LIMIT_SUBJECT_MINTS": "0",
        }
    )
    assert s.rate_limit_fail_closed is True
    assert s.cors_origins == ("https://a.example.com", "http://localhost:3000")
    assert s.rate_limit_subject_mints == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_CORS_ORIGINS", "*"),
        ("GATEWAY_CORS_ORIGINS", "https://*.example.com"),
        ("GATEWAY_CORS_ORIGINS", "https://a.example.com/path"),
        ("GATEWAY_RATE_LIMIT_FAIL_CLOSED", "maybe"),
        ("GATEWAY_RATE_LIMIT_REQUEST_BURST", "0"),
        ("GATEWAY_REDIS_BREAKER_COOLDOWN", "x"),
        ("GATEWAY_MAX_HEADER_SIZE", "10"),
        ("GATEWAY_DB_ACQUIRE_TIMEOUT", "-1"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    """A bad value stops start-up with an error naming the variable."""
    with pytest.raises(ConfigError, match=name):
        load_settings(OPS_ENV | {name: value})
