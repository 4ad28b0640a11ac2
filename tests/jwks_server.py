"""A JWKS server for the tests (an aiohttp app on 127.0.0.1), generated keys, and token crafting."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.helpers import JWT_SECRET

ISSUER = "https://idp.example.test/"
AUDIENCE = "embed-gateway"


@dataclass(frozen=True)
class TestKey:
    """A private key, the kid and alg it is published under, and its public JWK."""

    __test__ = False

    kid: str
    alg: str
    private: Any

    def jwk(self, **changes: Any) -> dict[str, Any]:
        """The public JWK as a JWKS would publish it; changes add, override or (None) drop."""
        public = self.private.public_key()
        if self.alg.startswith("RS"):
            data = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif self.alg.startswith("ES"):
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = OKPAlgorithm.to_jwk(public, as_dict=True)
        data.update({"kid": self.kid, "alg": self.alg, "use": "sig", **changes})
        return {k: v for k, v in data.items() if v is not None}

    def public_pem(self) -> bytes:
        """The public key as PEM, as an attacker would find it."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        """A token signed with this key, its kid in the header unless overridden (None drops)."""
        merged = {k: v for k, v in {"kid": self.kid, **headers}.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=merged)


@dataclass(frozen=True)
class TestKeys:
    """The keys every JWKS test uses, generated once per session."""

    __test__ = False

    rsa: TestKey
    rsa_next: TestKey
    ec: TestKey
    ed: TestKey
    attacker_rsa: TestKey
    attacker_ec: TestKey


@functools.cache
def test_keys() -> TestKeys:
    """Generate the RSA, EC and Ed25519 keys (once: RSA generation is slow)."""
    return TestKeys(
        rsa=TestKey("rsa-1", "RS256", rsa.generate_private_key(65537, 2048)),
        rsa_next=TestKey("rsa-2", "RS256", rsa.generate_private_key(65537, 2048)),
        ec=TestKey("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1())),
        ed=TestKey("ed-1", "EdDSA", ed25519.Ed25519PrivateKey.generate()),
        attacker_rsa=TestKey("rsa-1", "RS256", rsa.generate_private_key(65537, 2048)),
        attacker_ec=TestKey("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1())),
    )


test_keys.__test__ = False  # type: ignore[attr-defined]


@dataclass
class JwksServer:
    """Serves `keys` at /jwks.json and counts every request; any other path is a trap."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    body: bytes | None = None
    delay: float = 0.0
    fetches: int = 0
    trap_hits: int = 0
    url: str = ""

    def app(self) -> web.Application:
        """The aiohttp app to hand to aiohttp_server."""
        app = web.Application()
        app.router.add_get("/jwks.json", self._jwks)
        app.router.add_route("*", "/{tail:.*}", self._trap)
        return app

    def trap_url(self, name: str) -> str:
        """A URL on this server that no verifier should ever fetch."""
        return self.url.replace("/jwks.json", f"/trap/{name}")

    async def _jwks(self, _request: web.Request) -> web.Response:
        self.fetches += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        body = self.body if self.body is not None else json.dumps({"keys": self.keys}).encode()
        return web.Response(status=self.status, body=body, content_type="application/json")

    async def _trap(self, _request: web.Request) -> web.Response:
        self.trap_hits += 1
        return web.json_response({"keys": []})


def b64(data: bytes | str | dict[str, Any] | list[Any]) -> str:
    """Unpadded base64url of bytes, text, or compact JSON."""
    if isinstance(data, dict | list):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(lifetime: int = 600, **extra: Any) -> dict[str, Any]:
    """Claims that pass every check of the JWKS test settings; extra overrides (None drops)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "organization_id": "org-123",
        "iat": now,
        "exp": now + lifetime,
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hs_token(
    header: dict[str, Any] | bytes | str,
    payload: dict[str, Any] | bytes | str,
    secret: bytes = JWT_SECRET,
) -> str:
    """A token HMAC-SHA256-signed over raw segments: any header or payload bytes can be tested."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def forged(kid: str, alg: str = "RS256") -> str:
    """A well-formed token with good claims, this kid and a junk signature: cheap to make."""
    return f"{b64({'alg': alg, 'kid': kid})}.{b64(claims())}.{b64(bytes(256))}"
