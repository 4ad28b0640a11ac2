"""Settings from the environment: defaults, and one clear error naming the bad variable."""

from __future__ import annotations

import pytest

from gateway.settings import ConfigError, load_settings

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


JWKS_BASE = {
    "GATEWAY_DATABASE_URL": "postgresql://u@h/db",
    "GATEWAY_REDIS_URL": "redis://h:6379/0",
    "GATEWAY_API_KEY_ID": "key",
    "GATEWAY_SIGNING_SECRET": "s" * 32,
    "GATEWAY_JWT_JWKS_URL": "https://idp.example.test/.well-known/jwks.json",
}


def test_jwks_defaults() -> None:
    """JWKS keys live 300 s, an unknown kid refetches at most every 30 s, fetches time out."""
    settings = load_settings(JWKS_BASE)
    assert settings.jwt_algorithms == ("RS256", "ES256")
    assert (settings.jwt_jwks_lifespan, settings.jwt_jwks_cooldown) == (300.0, 30.0)
    assert settings.jwt_jwks_timeout == 5.0
    assert settings.jwt_max_age is None
    assert settings.jwt_leeway == 30


def test_jwks_settings_are_read() -> None:
    """Every new variable is honoured."""
    settings = load_settings(
        {
            **JWKS_BASE,
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
        load_settings({**JWKS_BASE, name: value})


@pytest.mark.parametrize(("alg", "size"), [("HS384", 48), ("HS512", 64)])
def test_hmac_secret_must_match_the_hash_size(alg: str, size: int) -> None:
    """RFC 7518 3.2: an HS384/HS512 secret at least as long as the hash."""
    env = {**JWKS_BASE, "GATEWAY_JWT_ALGORITHMS": alg}
    with pytest.raises(ConfigError, match="GATEWAY_JWT_SECRET"):
        load_settings({**env, "GATEWAY_JWT_SECRET": "k" * (size - 1)})
    assert load_settings({**env, "GATEWAY_JWT_SECRET": "k" * size}).jwt_algorithms == (alg,)


OPS_ENV = {
    "GATEWAY_DATABASE_URL": "postgresql://u@h/db",
    "GATEWAY_REDIS_URL": "redis://h:6379/0",
    "GATEWAY_API_KEY_ID": "key",
    "GATEWAY_SIGNING_SECRET": "s" * 32,
    "GATEWAY_JWT_SECRET": "j" * 32,
}


def test_ops_defaults() -> None:
    """Unset, the limits are the documented defaults."""
    s = load_settings(OPS_ENV)
    assert (s.rate_limit_subject_mints, s.rate_limit_tenant_mints) == (30, 300)
    assert (s.rate_limit_requests_per_second, s.rate_limit_request_burst) == (20.0, 40)
    assert s.rate_limit_fail_closed is False
    assert (s.redis_timeout, s.redis_breaker_threshold, s.redis_breaker_cooldown) == (0.05, 3, 2.0)
    assert (s.db_timeout, s.db_acquire_timeout) == (1.0, 1.0)
    assert s.cors_origins == ()
    assert (s.body_timeout, s.keepalive_timeout, s.max_header_size) == (10.0, 15.0, 16384)


def test_ops_values_are_read() -> None:
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
def test_bad_ops_values_name_the_variable(name: str, value: str) -> None:
    """A bad value stops start-up with an error naming the variable."""
    with pytest.raises(ConfigError, match=name):
        load_settings(OPS_ENV | {name: value})


def test_every_field_is_one_registry_entry() -> None:
    """Each Settings field names its variable once; secrets also answer to NAME_FILE."""
    from dataclasses import fields  # noqa: PLC0415

    from gateway.settings import KNOWN_NAMES, VARIABLES, Settings  # noqa: PLC0415

    assert list(VARIABLES) == [f.name for f in fields(Settings)]
    names = [v.name for v in VARIABLES.values()]
    assert len(names) == len(set(names))
    # gateway/dev/environ.py spells a field's variable as GATEWAY_<FIELD>: keep them in step.
    assert all(var.name == f"GATEWAY_{f.upper()}" for f, var in VARIABLES.items())
    assert {"GATEWAY_TOKEN_TTL", "GATEWAY_SIGNING_SECRET_FILE", "GATEWAY_JWT_SECRET_FILE"} <= (
        KNOWN_NAMES
    )
    assert "GATEWAY_TOKEN_TTL_FILE" not in KNOWN_NAMES


def test_unknown_variable_warns_with_the_nearest_known_name() -> None:
    """A misspelt variable is reported with a suggestion; an unrelated one without."""
    from gateway.settings import unknown_variable_warnings  # noqa: PLC0415

    env = {**BASE, "GATEWAY_TOKEN_TTLL": "60", "GATEWAY_FROBNICATE": "1", "OTHER_TTLL": "1"}
    warnings = unknown_variable_warnings(env)
    assert warnings == [
        "GATEWAY_FROBNICATE is not a gateway setting and is ignored",
        "GATEWAY_TOKEN_TTLL is not a gateway setting and is ignored"
        " (did you mean GATEWAY_TOKEN_TTL?)",
    ]
    assert unknown_variable_warnings(BASE) == []


def test_missing_required_variable_names_its_misspelt_twin() -> None:
    """GATEWAY_DATABASE_URL unset but GATEWAY_DATABSE_URL set: the error says so."""
    env = {**BASE, "GATEWAY_DATABSE_URL": BASE["GATEWAY_DATABASE_URL"]}
    del env["GATEWAY_DATABASE_URL"]
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.problems == (
        "GATEWAY_DATABASE_URL is required (GATEWAY_DATABSE_URL is set: a misspelling?)",
    )
    assert "pw-in-dsn" not in str(info.value)


def test_every_invalid_variable_is_reported_at_once() -> None:
    """Three bad variables, three one-line problems, in one error, no value echoed."""
    env = {**BASE, "GATEWAY_PORT": "http", "GATEWAY_SIGNING_SECRET": "short-secret"}
    del env["GATEWAY_API_KEY_ID"]
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    problems = info.value.problems
    assert len(problems) == 3
    for name, problem in zip(
        ("GATEWAY_API_KEY_ID", "GATEWAY_SIGNING_SECRET", "GATEWAY_PORT"), problems, strict=True
    ):
        assert problem.startswith(name)
        assert "\n" not in problem
    assert "short-secret" not in str(info.value)


@pytest.mark.parametrize(("ttl", "buffer"), [("60", "300"), ("300", "300")])
def test_ttl_not_above_the_refresh_buffer_is_refused(ttl: str, buffer: str) -> None:
    """A token that is never reusable would be minted on every request: refuse, naming both."""
    env = {**BASE, "GATEWAY_TOKEN_TTL": ttl, "GATEWAY_REFRESH_BUFFER": buffer}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert "GATEWAY_TOKEN_TTL" in str(info.value)
    assert "GATEWAY_REFRESH_BUFFER" in str(info.value)
    assert load_settings({**env, "GATEWAY_TOKEN_TTL": "301"}).token_ttl == 301


def test_secret_file_drops_every_trailing_cr_and_lf(tmp_path) -> None:
    """A file saved with CRLF line ends (or several newlines) gives the bare secret."""
    path = tmp_path / "secret"
    path.write_bytes(b"f" * 40 + b"\r\n\r\n")
    env = {**BASE, "GATEWAY_SIGNING_SECRET_FILE": str(path)}
    del env["GATEWAY_SIGNING_SECRET"]
    assert load_settings(env).signing_secret == b"f" * 40
