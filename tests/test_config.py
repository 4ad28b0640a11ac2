"""Settings for caller authentication: JWKS timings, leeway cap, maximum age, HMAC key sizes."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings

BASE = {
    "GATEWAY_DATABASE_URL": "postgresql://u@h/db",
    "GATEWAY_REDIS_URL": "redis://h:6379/0",
    "GATEWAY_API_KEY_ID": "key",
    "GATEWAY_SIGNING_SECRET": "s" * 32,
    "GATEWAY_JWT_JWKS_URL": "https://idp.example.test/.well-known/jwks.json",
}


def test_jwks_defaults() -> None:
    """JWKS keys live 300 s, an unknown kid refetches at most every 30 s, fetches time out."""
    settings = load_settings(BASE)
    assert settings.jwt_algorithms == ("RS256", "ES256")
    assert (settings.jwt_jwks_lifespan, settings.jwt_jwks_cooldown) == (300.0, 30.0)
    assert settings.jwt_jwks_timeout == 5.0
    assert settings.jwt_max_age is None
    assert settings.jwt_leeway == 30


def test_jwks_settings_are_read() -> None:
    """Every new variable is honoured."""
    settings = load_settings(
        {
            **BASE,
            "GATEWAY_JWT_JWKS_LIFESPAN": "600",
            "GATEWAY_JWT_JWKS_COOLDOWN": "0",
            "GATEWAY_JWT_JWKS_TIMEOUT": "1.5",
            "GATEWAY_JWT_MAX_AGE": "3600",
            "GATEWAY_JWT_LEEWAY": "60",
            "GATEWAY_JWT_ALGORITHMS": "RS256,EdDSA",
        }
    )
    assert (settings.jwt_jwks_lifespan, settings.jwt_jwks_cooldown) == (600.0, 0.0)
    assert (settings.jwt_jwks_timeout, settings.jwt_max_age) == (1.5, 3600)
    assert settings.jwt_leeway == 60
    assert settings.jwt_algorithms == ("RS256", "EdDSA")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_JWT_LEEWAY", "61"),
        ("GATEWAY_JWT_LEEWAY", "-1"),
        ("GATEWAY_JWT_MAX_AGE", "0"),
        ("GATEWAY_JWT_MAX_AGE", "soon"),
        ("GATEWAY_JWT_JWKS_LIFESPAN", "0"),
        ("GATEWAY_JWT_JWKS_COOLDOWN", "-1"),
        ("GATEWAY_JWT_JWKS_TIMEOUT", "0"),
        ("GATEWAY_JWT_ALGORITHMS", "none"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    """Out-of-range values stop start-up with a line naming the variable."""
    with pytest.raises(ConfigError, match=name):
        load_settings({**BASE, name: value})


@pytest.mark.parametrize(("alg", "size"), [("HS384", 48), ("HS512", 64)])
def test_hmac_secret_must_match_the_hash_size(alg: str, size: int) -> None:
    """RFC 7518 3.2: an HS384/HS512 secret at least as long as the hash."""
    env = {**BASE, "GATEWAY_JWT_ALGORITHMS": alg}
    with pytest.raises(ConfigError, match="GATEWAY_JWT_SECRET"):
        load_settings({**env, "GATEWAY_JWT_SECRET": "k" * (size - 1)})
    assert load_settings({**env, "GATEWAY_JWT_SECRET": "k" * size}).jwt_algorithms == (alg,)
