"""Strict reading of a compact JWS before any key is touched: size, segments, base64url, JSON.

The verifier checks the signature over exactly what this parse read (PyJWT's algorithms for public
keys); this module refuses what PyJWT would tolerate: padding, duplicate member names (PyJWT keeps
the last one), JSON that is not an object, non-standard numbers, deep nesting and lone surrogates.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import Unauthenticated

MAX_TOKEN_CHARS = 8192
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The last characters whose unused low bits are zero: 4 bits after 2 characters, 2 after 3.
_CANONICAL_LAST = {
    2: frozenset(_B64URL[i] for i in range(0, 64, 16)),
    3: frozenset(_B64URL[i] for i in range(0, 64, 4)),
}


@dataclass(frozen=True, slots=True)
class CompactJws:
    """A token's header and claims, read but not yet verified, and what its signature covers."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes = b""
    signature: bytes = b""


class _DuplicateMember(ValueError):
    pass


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise _DuplicateMember(name)
        obj[name] = value
    return obj


def _malformed(message: str) -> Unauthenticated:
    return Unauthenticated(message, reason="malformed")


def b64url_segment(segment: str, part: str) -> bytes:
    """Decode one unpadded, canonical base64url segment; Unauthenticated(malformed) otherwise."""
    # fullmatch on the alphabet first: b64decode would silently drop '=', '+', spaces and more.
    rest = len(segment) % 4
    if not _SEGMENT.fullmatch(segment) or rest == 1:
        raise _malformed(f"token {part} is not unpadded base64url")
    # Non-zero trailing bits would give one token many spellings: the last character of a
    # segment that ends mid-byte must leave them zero (the same test as encoding the bytes back
    # and comparing, at a fraction of its cost).
    if rest and segment[-1] not in _CANONICAL_LAST[rest]:
        raise _malformed(f"token {part} is not canonical base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-rest % 4))
    except (binascii.Error, ValueError):
        raise _malformed(f"token {part} is not unpadded base64url") from None


def json_object(data: bytes, part: str) -> dict[str, Any]:
    """Parse strict JSON (RFC 8259, no duplicate names) that must be an object."""
    try:
        # orjson first: it rejects NaN/Infinity, overflowing numbers, lone surrogates, a BOM,
        # invalid UTF-8 and nesting past 1,024 levels, in microseconds.
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise Unauthenticated(f"token {part} is not valid JSON", reason="invalid_json") from None
    if not isinstance(value, dict):
        raise Unauthenticated(f"token {part} is not a JSON object", reason="not_an_object")
    if orjson.dumps(value) == data:
        # Text orjson writes back byte for byte repeats no member name (a dict holds each once)
        # and holds no number it rounded: the usual compact token, with no second parse.
        return value
    try:
        # Again with the standard parser, whose hook sees every member name, to refuse duplicates
        # (and to keep integers exact).
        parsed: dict[str, Any] = json.loads(data.decode(), object_pairs_hook=_unique_members)
    except _DuplicateMember:
        raise Unauthenticated(
            f"token {part} repeats a member name", reason="duplicate_member"
        ) from None
    except (ValueError, RecursionError):
        raise Unauthenticated(f"token {part} is not valid JSON", reason="invalid_json") from None
    return parsed


# Callers send the same few headers (`{"alg":"HS256","typ":"JWT"}`): each distinct header segment
# is decoded and parsed once. A pure function of the segment text, so a cached answer is the one
# a fresh parse would give; a refused segment raises and is not cached.
@functools.lru_cache(maxsize=64)
def _header(segment: str) -> dict[str, Any]:
    return json_object(b64url_segment(segment, "header"), "header")


def parse_compact(token: str) -> CompactJws:
    """Read a compact JWS strictly; Unauthenticated with a reason for anything off."""
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated("bearer token is too large", reason="token_too_large")
    parts = token.split(".")
    if len(parts) != 3:
        raise _malformed("token must have exactly three segments")
    header_b64, payload_b64, signature_b64 = parts
    if not header_b64 or not payload_b64:
        raise _malformed("token header and payload must not be empty")
    # The signature segment may be empty in shape (alg "none" tokens); the alg check refuses them.
    signature = b64url_segment(signature_b64, "signature")
    header = dict(_header(header_b64))  # a copy: the cached one is never handed out
    claims = json_object(b64url_segment(payload_b64, "payload"), "payload")
    # The segments are checked to be base64url above, so ASCII is exact.
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    return CompactJws(header, claims, signing_input, signature)
