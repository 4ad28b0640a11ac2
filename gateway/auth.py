"""Caller authentication: the bearer JWT, its claims, and the tenant rule."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.config import Settings
from gateway.errors import Forbidden, Unauthenticated

# base64url segments only; anything else (spaces, padding, '+', '/') is malformed, not "maybe ok".
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
MAX_TOKEN_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the verified JWT says."""

    subject: str | None
    tenant_claim: Any
    expires_at: float | None = None  # the token's exp: how long a verified-JWT cache may keep it


def bearer_token(authorization: Sequence[str]) -> str:
    """The token from exactly one `Authorization: Bearer …` header, or Unauthenticated."""
    if not authorization:
        raise Unauthenticated("missing bearer token", reason="missing_token")
    if len(authorization) > 1:
        raise Unauthenticated("more than one Authorization header", reason="multiple_headers")
    scheme, _, token = authorization[0].partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Authorization must use the Bearer scheme", reason="wrong_scheme")
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated("bearer token is too large", reason="token_too_large")
    if not _JWT_SHAPE.match(token):
        raise Unauthenticated("bearer token is malformed", reason="malformed")
    return token


class JwtVerifier:
    """Verifies caller JWTs with PyJWT against the configured key and claim rules."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._hs_algorithms = [a for a in settings.jwt_algorithms if a.startswith("HS")]
        self._options: dict[str, Any] = {
            "require": ["exp"],
            "verify_aud": settings.jwt_audience is not None,
            "verify_iss": settings.jwt_issuer is not None,
        }

    def verify(self, token: str) -> Caller:
        """Check signature and claims; Unauthenticated with a reason when anything fails."""
        settings = self._settings
        if settings.jwt_secret is None or not self._hs_algorithms:
            raise Unauthenticated("no key can verify this token", reason="no_key")
        try:
            claims = jwt.decode(
                token,
                settings.jwt_secret,
                algorithms=self._hs_algorithms,
                options=self._options,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                leeway=settings.jwt_leeway,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token has expired", reason="expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token is not valid yet", reason="not_yet_valid") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token audience is not accepted", reason="audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token issuer is not accepted", reason="issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(
                f"token lacks the {exc.claim} claim", reason="missing_claim"
            ) from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated("token algorithm is not allowed", reason="algorithm") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature is invalid", reason="signature") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("token is invalid", reason="invalid") from None
        subject = claims.get("sub")
        if subject is not None and not isinstance(subject, str):
            raise Unauthenticated("token sub must be a string", reason="invalid_sub")
        return Caller(
            subject=subject,
            tenant_claim=claims.get(settings.tenant_claim),
            expires_at=float(claims["exp"]),
        )


def check_tenant(caller: Caller, tenant_id: str) -> None:
    """Forbidden unless the tenant claim names tenant_id exactly (a string, or a list with it)."""
    claim = caller.tenant_claim
    if isinstance(claim, str):
        allowed = claim == tenant_id
    elif isinstance(claim, list) and claim and all(isinstance(t, str) for t in claim):
        allowed = tenant_id in claim
    else:
        allowed = False
    if not allowed:
        raise Forbidden(f"caller may not act for tenant {tenant_id}", reason="tenant_mismatch")
