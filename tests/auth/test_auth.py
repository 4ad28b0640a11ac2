"""gateway/auth.py without HTTP: the Authorization header, check order, key rules, tenants."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.auth.verifier import Caller, JwtVerifier, bearer_token, check_tenant
from gateway.errors import Forbidden, Unauthenticated
from gateway.settings import Settings
from tests.helpers import JWT_SECRET
from tests.jwks_server import b64, claims, hs_token, test_keys

HS = {"alg": "HS256"}


def settings(**changes: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": "postgresql://unused",
        "redis_url": "redis://unused",
        "api_key_id": "k",
        "signing_secret": b"s" * 32,
        "jwt_secret": JWT_SECRET,
        "jwt_issuer": "https://idp.example.test/",
        "jwt_audience": "embed-gateway",
    }
    return Settings(**{**base, **changes})


async def reason_of(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as err:
        await verifier.verify(token)
    return err.value.reason


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], "missing_token"),
        (["Bearer a.b.c", "Bearer a.b.c"], "multiple_headers"),
        (["Basic dXNlcjpwYXNz"], "wrong_scheme"),
        (["Bearer"], "wrong_scheme"),
        (["Bearer "], "wrong_scheme"),
        (["Bearera.b.c"], "wrong_scheme"),
        (["a.b.c"], "wrong_scheme"),
    ],
)
def test_bearer_token_rejections(values: list[str], expected: str) -> None:
    """Exactly one Authorization header with the Bearer scheme and a token."""
    with pytest.raises(Unauthenticated) as err:
        bearer_token(values)
    assert err.value.reason == expected


def test_bearer_scheme_is_case_insensitive() -> None:
    """RFC 7235: the scheme name is case-insensitive; the token is returned untouched."""
    assert bearer_token(["bearer a.b.c"]) == "a.b.c"
    assert bearer_token(["BEARER a.b.c"]) == "a.b.c"


async def test_good_hs256_token_gives_the_caller() -> None:
    """A valid token yields its sub and tenant claim."""
    verifier = JwtVerifier(settings())
    token_claims = claims(organization_id=["a", "b"])
    caller = await verifier.verify(hs_token(HS, token_claims))
    assert caller == Caller(
        subject="user-1", tenant_claim=["a", "b"], expires_at=float(token_claims["exp"])
    )
    assert verifier.generation == 0


async def test_header_is_checked_before_claims_and_claims_before_the_signature() -> None:
    """Cheap checks run first: the first failing one names the reason."""
    verifier = JwtVerifier(settings())
    expired = claims(exp=int(time.time()) - 600)
    assert await reason_of(verifier, hs_token({"alg": "none"}, expired)) == "alg_none"
    assert await reason_of(verifier, hs_token(HS, expired, b"x" * 64)) == "expired"
    assert await reason_of(verifier, hs_token(HS, claims(), b"x" * 64)) == "signature"


async def test_secret_never_verifies_an_asymmetric_alg() -> None:
    """An RS256 token HMAC-signed with the secret is not checked with the secret."""
    verifier = JwtVerifier(settings(jwt_algorithms=("HS256", "RS256")))
    token = hs_token({"alg": "RS256", "kid": "rsa-1"}, claims())
    assert await reason_of(verifier, token) == "no_key"


async def test_hs_alg_is_refused_without_a_secret() -> None:
    """With only JWKS configured, an HS256 token is an algorithm not allowed."""
    verifier = JwtVerifier(settings(jwt_secret=None, jwt_algorithms=("RS256",)))
    assert await reason_of(verifier, hs_token(HS, claims())) == "algorithm"


async def test_public_key_as_hmac_secret_fails() -> None:
    """The classic HS/RS confusion: HMAC with the RSA public key is just a bad signature."""
    verifier = JwtVerifier(settings(jwt_algorithms=("HS256", "RS256")))
    token = hs_token(HS, claims(), test_keys().rsa.public_pem())
    assert await reason_of(verifier, token) == "signature"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"alg": "none"}, "alg_none"),
        ({"alg": "NoNe"}, "alg_none"),
        ({}, "algorithm"),
        ({"alg": None}, "algorithm"),
        ({"alg": "HS384"}, "algorithm"),
        ({"alg": "HS256", "crit": ["b64"], "b64": True}, "crit"),
        ({"alg": "HS256", "jku": "https://evil/"}, "key_in_header"),
        ({"alg": "HS256", "jwk": {"kty": "oct", "k": "AAAA"}}, "key_in_header"),
        ({"alg": "HS256", "x5u": "https://evil/"}, "key_in_header"),
        ({"alg": "HS256", "x5c": []}, "key_in_header"),
        ({"alg": "HS256", "kid": 1}, "invalid_kid"),
        ({"alg": "HS256", "kid": "k" * 257}, "invalid_kid"),
    ],
)
async def test_header_rules(header: dict[str, Any], expected: str) -> None:
    """alg from the allow list only, no crit, no key the token brings along, a sane kid."""
    verifier = JwtVerifier(settings())
    assert await reason_of(verifier, hs_token(header, claims())) == expected


async def test_kid_is_ignored_for_the_hs_secret() -> None:
    """The secret has no kid; a kid on an HS256 token does not change which key is used."""
    verifier = JwtVerifier(settings())
    caller = await verifier.verify(hs_token({**HS, "kid": "anything"}, claims()))
    assert caller.subject == "user-1"


async def test_pyjwt_rejections_are_mapped_too() -> None:
    """A token that only PyJWT's own checks would catch still gets a reason, not a crash."""
    verifier = JwtVerifier(settings())
    # PyJWT insists that jti is a string; nothing before it looks at jti.
    assert await reason_of(verifier, hs_token(HS, claims(jti=5))) == "invalid"
    short_signature = f"{b64(HS)}.{b64(claims())}.{b64(b'short')}"
    assert await reason_of(verifier, short_signature) == "signature"


@pytest.mark.parametrize(
    ("claim", "allowed"),
    [
        ("org-123", True),
        (["org-9", "org-123"], True),
        ("ORG-123", False),
        ("org-123 ", False),
        (" org-123", False),
        ("\uff4f\uff52\uff47-123", False),
        ("", False),
        (None, False),
        (123, False),
        ([123], False),
        (["org-123", 1], False),
        ([], False),
        ({"org-123": True}, False),
        ([["org-123"]], False),
    ],
)
def test_check_tenant(claim: Any, allowed: bool) -> None:
    """Exact, case-sensitive equality, or a list of strings holding it; nothing else."""
    caller = Caller(subject="u", tenant_claim=claim)
    if allowed:
        check_tenant(caller, "org-123")
    else:
        with pytest.raises(Forbidden):
            check_tenant(caller, "org-123")
