"""Settings from the environment: defaults, and one clear error naming the bad variable."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings

SECRET = "s" * 40
BASE = {
    "GATEWAY_DATABASE_URL": "postgresql://u:pw-in-dsn@db/x",
    "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0",
    "GATEWAY_API_KEY_ID": "key-1",
    "GATEWAY_SIGNING_SECRET": SECRET,
    "GATEWAY_JWT_SECRET": "j" * 40,
}


def test_defaults_match_the_contract() -> None:
    """Unset variables take the contract's defaults."""
    s = load_settings(BASE)
    assert (s.token_ttl, s.refresh_buffer, s.jwt_leeway) == (3600, 300, 30)
    assert (s.host, s.port, s.tenant_claim) == ("127.0.0.1", 8080, "organization_id")
    assert (s.log_level, s.log_format) == ("info", "json")
    assert s.jwt_algorithms == ("HS256",)


def test_secret_from_file(tmp_path) -> None:
    """_FILE variants read the secret from a file, ignoring a trailing newline."""
    path = tmp_path / "secret"
    path.write_text("f" * 40 + "\n")
    env = {**BASE, "GATEWAY_SIGNING_SECRET_FILE": str(path)}
    del env["GATEWAY_SIGNING_SECRET"]
    assert load_settings(env).signing_secret == b"f" * 40


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"GATEWAY_DATABASE_URL": None}, "GATEWAY_DATABASE_URL"),
        ({"GATEWAY_DATABASE_URL": "mysql://x"}, "GATEWAY_DATABASE_URL"),
        ({"GATEWAY_REDIS_URL": None}, "GATEWAY_REDIS_URL"),
        ({"GATEWAY_API_KEY_ID": ""}, "GATEWAY_API_KEY_ID"),
        ({"GATEWAY_SIGNING_SECRET": None}, "GATEWAY_SIGNING_SECRET"),
        ({"GATEWAY_SIGNING_SECRET": "short-secret"}, "GATEWAY_SIGNING_SECRET"),
        ({"GATEWAY_SIGNING_SECRET_FILE": "/nonexistent/x"}, "GATEWAY_SIGNING_SECRET"),
        ({"GATEWAY_JWT_SECRET": None}, "GATEWAY_JWT_SECRET"),
        ({"GATEWAY_TOKEN_TTL": "abc"}, "GATEWAY_TOKEN_TTL"),
        ({"GATEWAY_TOKEN_TTL": "0"}, "GATEWAY_TOKEN_TTL"),
        ({"GATEWAY_PORT": "70000"}, "GATEWAY_PORT"),
        ({"GATEWAY_LOG_LEVEL": "loud"}, "GATEWAY_LOG_LEVEL"),
        ({"GATEWAY_LOG_FORMAT": "xml"}, "GATEWAY_LOG_FORMAT"),
        ({"GATEWAY_JWT_ALGORITHMS": "none"}, "GATEWAY_JWT_ALGORITHMS"),
        ({"GATEWAY_JWT_ALGORITHMS": "RS256"}, "GATEWAY_JWT_ALGORITHMS"),
    ],
)
def test_bad_setting_names_the_variable_not_the_value(change, variable) -> None:
    """Each invalid setting raises ConfigError naming the variable, never echoing a secret."""
    env = {**BASE, **{k: v for k, v in change.items() if v is not None}}
    for k, v in change.items():
        if v is None:
            env.pop(k, None)
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert variable in message
    assert SECRET not in message
    assert "short-secret" not in message
    assert "pw-in-dsn" not in message
    assert "\n" not in message


def test_repr_hides_secrets() -> None:
    """Settings' repr (which may reach a log) shows no secret and no DSN."""
    text = repr(load_settings(BASE))
    assert SECRET not in text
    assert "pw-in-dsn" not in text
