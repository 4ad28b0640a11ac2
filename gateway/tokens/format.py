"""Embed token format v1 (the vendor's documented "iframe token") and the reuse rule."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii

# base64.urlsafe_b64encode is b2a_base64 then this translation; called directly on the mint path.
_URLSAFE = bytes.maketrans(b"+/", b"-_")


@dataclass(frozen=True, slots=True)
class EmbedToken:
    """A signed token and the facts about it that callers and the cache need."""

    token: str
    dashboard_id: str
    valid_until: int


def sign_v1(secret: bytes, workspace_id: str, valid_until: int) -> str:
    """Hex HMAC-SHA256 over workspace_id + str(valid_until), as the vendor documents it."""
    message = (workspace_id + str(valid_until)).encode()
    # hmac.digest runs in C; hmac.new builds a Python HMAC object first (same bytes).
    return hmac.digest(secret, message, "sha256").hex()


def mint_v1(
    secret: bytes,
    *,
    api_key_id: str,
    workspace_id: str,
    tenant_id: str,
    dashboard_id: str,
    valid_until: int,
) -> str:
    """Build a v1 token byte-identical to the reference: json.dumps defaults, '=' padding kept."""
    signature = sign_v1(secret, workspace_id, valid_until)
    if (
        type(valid_until) is int
        and type(api_key_id) is str
        and type(workspace_id) is str
        and type(tenant_id) is str
        and type(dashboard_id) is str
    ):
        # What json.dumps(claims) writes, spelt out (a third of its cost on the mint path): its
        # ", " and ": " separators, each string through the same ASCII escaper it uses, the int
        # as int.__repr__. The reference vectors pin the bytes.
        q = encode_basestring_ascii
        text = (
            f'{{"api_key_id": {q(api_key_id)}, "workspace_id": {q(workspace_id)}, '
            f'"tenant_id": {q(tenant_id)}, "dashboard_id": {q(dashboard_id)}, '
            f'"valid_until": {int.__repr__(valid_until)}, "signature": {q(signature)}}}'
        )
        return binascii.b2a_base64(text.encode(), newline=False).translate(_URLSAFE).decode()
    claims = {
        "api_key_id": api_key_id,
        "workspace_id": workspace_id,
        "tenant_id": tenant_id,
        "dashboard_id": dashboard_id,
        "valid_until": valid_until,
        "signature": signature,
    }
    # The vendor's verifier parses exactly this serialisation; orjson's compact one would differ.
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode()


def verify_v1(secret: bytes, token: str, now: float) -> dict[str, object]:
    """Decode a v1 token and check its signature (constant-time) and expiry; ValueError if bad."""
    try:
        claims = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        raise ValueError("token is not base64url-encoded JSON") from None
    if not isinstance(claims, dict):
        raise ValueError("token is not a JSON object")
    workspace_id, valid_until, signature = (
        claims.get("workspace_id"),
        claims.get("valid_until"),
        claims.get("signature"),
    )
    if not isinstance(workspace_id, str) or type(valid_until) is not int:
        raise ValueError("token lacks workspace_id or valid_until")
    if not isinstance(signature, str):
        raise ValueError("token lacks a signature")
    expected = sign_v1(secret, workspace_id, valid_until)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise ValueError("signature does not match")
    if valid_until <= now:
        raise ValueError("token has expired")
    return claims


def is_reusable(valid_until: int, now: float, refresh_buffer: int) -> bool:
    """A cached token may be handed out only while it has more than the buffer left."""
    return valid_until - now > refresh_buffer


# A reused token is hashed once per worker, not on every request that hands it out again.
@functools.lru_cache(maxsize=4096)
def token_sha256(token: str) -> str:
    """Hex SHA-256 of a token: what the audit trail stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()
