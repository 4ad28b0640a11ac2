"""Registered-claim rules at their boundaries, with the clock given explicitly."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth.claims import MAX_NUMERIC_DATE, ClaimRules, check_claims
from gateway.errors import Unauthenticated

NOW = 1_700_000_000.0
RULES = ClaimRules(issuer="https://idp/", audience="gw", leeway=30)


def good(**changes: Any) -> dict[str, Any]:
    claims = {"iss": "https://idp/", "aud": "gw", "exp": NOW + 600, "iat": NOW, "sub": "u"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not ...}


def reason(claims: dict[str, Any], rules: ClaimRules = RULES) -> str | None:
    try:
        check_claims(claims, rules, NOW)
    except Unauthenticated as exc:
        return exc.reason
    return None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"exp": NOW - 30}, "expired"),  # exactly at the leeway's edge is expired
        ({"exp": NOW - 29}, None),
        ({"exp": NOW + 0.5}, None),  # NumericDate may be fractional
        ({"nbf": NOW + 30}, None),
        ({"nbf": NOW + 31}, "not_yet_valid"),
        ({"iat": NOW + 30}, None),
        ({"iat": NOW + 31}, "not_yet_valid"),
        ({"exp": ...}, "missing_claim"),
        ({"exp": None}, "invalid_exp"),
        ({"exp": "1700000600"}, "invalid_exp"),
        ({"exp": True}, "invalid_exp"),
        ({"exp": float("inf")}, "invalid_exp"),
        ({"exp": MAX_NUMERIC_DATE + 1}, "invalid_exp"),
        ({"iat": "now"}, "invalid_iat"),
        ({"nbf": [NOW]}, "invalid_nbf"),
        ({"iss": ...}, "missing_claim"),
        ({"iss": "https://idp"}, "issuer"),
        ({"iss": "HTTPS://IDP/"}, "issuer"),
        ({"iss": ["https://idp/"]}, "issuer"),
        ({"aud": ...}, "missing_claim"),
        ({"aud": ["x", "gw"]}, None),
        ({"aud": ["x"]}, "audience"),
        ({"aud": []}, "audience"),
        ({"aud": ["gw", 1]}, "audience"),
        ({"aud": "GW"}, "audience"),
        ({"sub": ...}, None),
        ({"sub": 1}, "invalid_sub"),
        ({"sub": None}, "invalid_sub"),
    ],
)
def test_claim_rules(changes: dict[str, Any], expected: str | None) -> None:
    """Each claim is exact, typed and within the leeway; `...` removes the claim."""
    assert reason(good(**changes)) == expected


def test_unconfigured_issuer_and_audience_are_not_checked() -> None:
    """Without GATEWAY_JWT_ISSUER/AUDIENCE, iss and aud may be anything."""
    assert reason(good(iss=1, aud=2), ClaimRules()) is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"exp": NOW + 3600}, None),
        ({"exp": NOW + 3601}, "lifetime"),
        ({"iat": NOW - 3000, "exp": NOW + 601}, "lifetime"),
        ({"iat": ..., "exp": NOW + 3600}, None),  # without iat the time left bounds it
        ({"iat": ..., "exp": NOW + 3601}, "lifetime"),
    ],
)
def test_maximum_lifetime(changes: dict[str, Any], expected: str | None) -> None:
    """With a maximum age, exp - iat (or exp - now without iat) may not exceed it."""
    rules = ClaimRules(issuer="https://idp/", audience="gw", leeway=30, max_age=3600)
    assert reason(good(**changes), rules) == expected
