"""Caller authentication: the bearer JWT's header, claims and signature, and the tenant rule.

Order matters: everything that needs no key (size, encoding, header, claims) is checked first,
so junk tokens never cost a key lookup, let alone a JWKS fetch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.auth.claims import ClaimRules, check_claims
from gateway.auth.jwks import JwksKeys
from gateway.auth.jws import parse_compact
from gateway.errors import Forbidden, Unauthenticated, Unavailable
from gateway.settings import Settings

MAX_KID_CHARS = 256
# Header members that carry or point at a key: the token never chooses its own key
# (RFC 8725 section 3.10), so a token that tries is refused rather than half-trusted.
KEY_REFERENCE_HEADERS = ("jku", "jwk", "x5u", "x5c")


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
    return token


class JwtVerifier:
    """Verifies caller JWTs: strict parsing and claims here, signatures by PyJWT.

    The HS secret verifies only the allowed HS algorithms; a JWKS key only its own algorithm.
    `generation` changes whenever the key set does, so a cache of verified tokens can flush.
    """

    def __init__(
        self,
        settings: Settings,
        keys: JwksKeys | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._secret = settings.jwt_secret
        self._keys = keys
        self._allowed = frozenset(settings.jwt_algorithms)
        self._hs = frozenset(
            a for a in settings.jwt_algorithms if a.startswith("HS") and self._secret is not None
        )
        self._tenant_claim = settings.tenant_claim
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway
        self._rules = ClaimRules(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway,
            max_age=settings.jwt_max_age,
        )
        self._options: dict[str, Any] = {
            "require": ["exp"],
            "verify_aud": settings.jwt_audience is not None,
            "verify_iss": settings.jwt_issuer is not None,
            "enforce_minimum_key_length": True,
        }

    @property
    def generation(self) -> int:
        """Changes whenever the keys that can verify a token change."""
        return 0 if self._keys is None else self._keys.generation

    def jwks_status(self) -> str | None:
        """For /readyz: None without a JWKS URL, "ok" once keys have loaded, else why not."""
        if self._keys is None:
            return None
        # Until the first fetch succeeds every JWKS-signed token is 503: not ready to serve.
        return "ok" if self._keys.loaded else "no keys loaded yet"

    async def verify(self, token: str) -> Caller:
        """Check encoding, header, claims and signature; Unauthenticated with a reason if any fail.

        Unavailable when the token needs a JWKS key and the key server has never answered.
        """
        jws = parse_compact(token)
        alg, kid = self._check_header(jws.header)
        check_claims(jws.claims, self._rules, self._clock())
        if alg in self._hs:
            assert self._secret is not None  # only set with a secret
            claims = self._decode(token, self._secret, alg)
        else:
            claims = self._decode(token, await self._public_key(kid, alg), alg)
        return Caller(
            subject=claims.get("sub"),
            tenant_claim=claims.get(self._tenant_claim),
            expires_at=float(claims["exp"]),
        )

    def _check_header(self, header: dict[str, Any]) -> tuple[str, str | None]:
        alg = header.get("alg")
        if isinstance(alg, str) and alg.lower() == "none":
            raise Unauthenticated("unsigned tokens are not accepted", reason="alg_none")
        if not isinstance(alg, str) or alg not in self._allowed:
            raise Unauthenticated("token algorithm is not allowed", reason="algorithm")
        if "crit" in header:
            # No extension is understood here, so any critical one is refused (RFC 7515 4.1.11).
            raise Unauthenticated("token has critical header extensions", reason="crit")
        if any(name in header for name in KEY_REFERENCE_HEADERS):
            raise Unauthenticated("token may not name its own key", reason="key_in_header")
        kid = header.get("kid")
        if "kid" in header and (not isinstance(kid, str) or not kid or len(kid) > MAX_KID_CHARS):
            raise Unauthenticated("token kid must be a short string", reason="invalid_kid")
        return alg, kid

    async def _public_key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        keys = self._keys
        if keys is None:
            raise Unauthenticated("no key can verify this token", reason="no_key")
        key = _find(keys, kid, alg)
        # A known kid without this alg is a mismatch, not a rotation: no refetch for it.
        if key is None and not keys.knows(kid) and await keys.refetch_for_unknown_kid():
            key = _find(keys, kid, alg)
        if key is not None:
            return key
        if not keys.loaded:
            raise Unavailable("caller signing keys are unavailable", reason="jwks_unavailable")
        if keys.knows(kid):
            raise Unauthenticated(
                "the key named by kid does not verify this algorithm", reason="key_algorithm"
            )
        raise Unauthenticated("no key matches the token's kid", reason="unknown_kid")

    def _decode(self, token: str, key: bytes | jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                options=self._options,  # type: ignore[arg-type]
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
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
        except jwt.PyJWTError:
            raise Unauthenticated("token is invalid", reason="invalid") from None
        return claims


def _find(keys: JwksKeys, kid: str | None, alg: str) -> jwt.PyJWK | None:
    try:
        return keys.find(kid, alg)
    except LookupError:
        raise Unauthenticated(
            "token must name a kid: several keys could verify it", reason="missing_kid"
        ) from None


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
