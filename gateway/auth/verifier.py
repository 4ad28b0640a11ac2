"""Caller authentication: the bearer JWT's header, claims and signature, and the tenant rule.

Order matters: everything that needs no key (size, encoding, header, claims) is checked first,
so junk tokens never cost a key lookup, let alone a JWKS fetch.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.auth.claims import ClaimRules, check_claims
from gateway.auth.jwks import JwksKeys
from gateway.auth.jws import CompactJws, parse_compact
from gateway.errors import Forbidden, Unauthenticated, Unavailable
from gateway.settings import Settings

_HS_DIGESTS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}

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
    """Verifies caller JWTs in one pass: strict parse and claims here, signatures by HMAC or PyJWT.

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
        self._rules = ClaimRules(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway,
            max_age=settings.jwt_max_age,
        )
        # RFC 7518 3.2: an HMAC key shorter than the hash is refused for that algorithm (as
        # PyJWT's enforce_minimum_key_length did), decided once here rather than per token.
        self._hs_digests = {
            a: _HS_DIGESTS[a]
            for a in self._hs
            if a in _HS_DIGESTS
            and len(self._secret or b"") >= hashlib.new(_HS_DIGESTS[a]).digest_size
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
        # One pass: the strict parse's header, claims and signing input are what gets verified;
        # the claims were checked by check_claims (stricter than PyJWT's), so nothing is parsed
        # twice.
        jws = parse_compact(token)
        alg, kid = self._check_header(jws.header)
        check_claims(jws.claims, self._rules, self._clock())
        if alg in self._hs:
            self._check_hmac(jws, alg)
        else:
            _check_public(jws, await self._public_key(kid, alg))
        claims = jws.claims
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

    def _check_hmac(self, jws: CompactJws, alg: str) -> None:
        digest = self._hs_digests.get(alg)
        if digest is None:  # the secret is too short for this hash
            raise Unauthenticated("token is invalid", reason="invalid")
        assert self._secret is not None  # only HS algorithms with a secret get here
        # hmac.digest in C, compared in constant time: a third of PyJWT's cost for the same check.
        expected = hmac.digest(self._secret, jws.signing_input, digest)
        if not hmac.compare_digest(expected, jws.signature):
            raise Unauthenticated("token signature is invalid", reason="signature")


def _check_public(jws: CompactJws, key: jwt.PyJWK) -> None:
    """Verify with PyJWT's algorithm for the key (RSA, EC with raw r||s, EdDSA), no re-parse."""
    algorithm = key.Algorithm
    prepared = algorithm.prepare_key(key.key)
    if algorithm.check_key_length(prepared):
        raise Unauthenticated("token is invalid", reason="invalid")
    if not algorithm.verify(jws.signing_input, prepared, jws.signature):
        raise Unauthenticated("token signature is invalid", reason="signature")


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
