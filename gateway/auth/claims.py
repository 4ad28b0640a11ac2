"""The registered claims of a caller JWT, checked strictly and cheaply, before any key is fetched.

This is the only claims check (the signature is verified on the same parse, see verifier.py); it
is stricter than PyJWT's (it refuses `"exp": "123"`, `true` and dates past year 9999, which PyJWT
coerces) and runs first, so a token that could never pass costs no key lookup, let alone a JWKS
fetch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gateway.errors import Unauthenticated

# 9999-12-31T23:59:59Z: any later NumericDate is junk, not a long-lived token.
MAX_NUMERIC_DATE = 253_402_300_799


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """What the configuration asks of every caller token."""

    issuer: str | None = None
    audience: str | None = None
    leeway: int = 30
    max_age: int | None = None


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    # bool is an int in Python; JSON true is not a date.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthenticated(f"token {name} must be a NumericDate", reason=f"invalid_{name}")
    if not math.isfinite(value) or abs(value) > MAX_NUMERIC_DATE:
        raise Unauthenticated(f"token {name} is out of range", reason=f"invalid_{name}")
    return float(value)


def _audience_ok(claim: Any, audience: str) -> bool:
    if isinstance(claim, str):
        return claim == audience
    if isinstance(claim, list) and claim and all(isinstance(a, str) for a in claim):
        return audience in claim
    return False


def check_claims(claims: dict[str, Any], rules: ClaimRules, now: float) -> None:
    """Unauthenticated with a reason unless exp, nbf, iat, iss, aud, sub and lifetime are right."""
    _check_times(claims, rules, now)
    _check_names(claims, rules)


def _check_times(claims: dict[str, Any], rules: ClaimRules, now: float) -> None:
    exp = _numeric_date(claims, "exp")
    if exp is None:
        raise Unauthenticated("token lacks the exp claim", reason="missing_claim")
    nbf = _numeric_date(claims, "nbf")
    iat = _numeric_date(claims, "iat")
    if exp <= now - rules.leeway:
        raise Unauthenticated("token has expired", reason="expired")
    if nbf is not None and nbf > now + rules.leeway:
        raise Unauthenticated("token is not valid yet", reason="not_yet_valid")
    if iat is not None and iat > now + rules.leeway:
        raise Unauthenticated("token was issued in the future", reason="not_yet_valid")
    if rules.max_age is not None:
        # Without iat, the time left is the least the lifetime can be.
        start = iat if iat is not None else now
        if exp - start > rules.max_age:
            raise Unauthenticated("token lifetime is too long", reason="lifetime")


def _check_names(claims: dict[str, Any], rules: ClaimRules) -> None:
    if rules.issuer is not None:
        if "iss" not in claims:
            raise Unauthenticated("token lacks the iss claim", reason="missing_claim")
        # Exact string equality: a prefix, a trailing slash or another case is another issuer.
        if claims["iss"] != rules.issuer or not isinstance(claims["iss"], str):
            raise Unauthenticated("token issuer is not accepted", reason="issuer")
    if rules.audience is not None:
        if "aud" not in claims:
            raise Unauthenticated("token lacks the aud claim", reason="missing_claim")
        if not _audience_ok(claims["aud"], rules.audience):
            raise Unauthenticated("token audience is not accepted", reason="audience")
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise Unauthenticated("token sub must be a string", reason="invalid_sub")
    # RFC 7519 4.1.7 (and PyJWT, which once checked these claims a second time).
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise Unauthenticated("token is invalid: jti must be a string", reason="invalid")
