"""Embed token v1: byte-identical to the reference vectors, and the reuse rule."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from gateway.tokens.format import is_reusable, mint_v1, sign_v1, token_sha256, verify_v1
from tests.helpers import VECTORS_FILE

VECTORS = json.loads(VECTORS_FILE.read_text())["cases"]


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_mint_matches_reference_vector(case: dict) -> None:
    """Every reference case mints byte for byte the same token and signature."""
    secret = case["secret"].encode()
    assert sign_v1(secret, case["workspace_id"], case["valid_until"]) == case["signature"]
    token = mint_v1(
        secret,
        api_key_id=case["api_key_id"],
        workspace_id=case["workspace_id"],
        tenant_id=case["tenant_id"],
        dashboard_id=case["dashboard_id"],
        valid_until=case["valid_until"],
    )
    assert token == case["token"]


def test_mint_is_the_documented_serialisation_for_any_ids() -> None:
    """The mint spells json.dumps out; for ids with quotes, backslashes, control characters,
    non-ASCII and non-BMP text, and any int expiry, it writes exactly what json.dumps does."""
    rng = random.Random(15)
    alphabet = [chr(c) for c in [*range(128), 0xE9, 0x2028, 0xD7FF, 0xE000, 0xFFFD, 0x1F600]]
    secret = b"s" * 32
    for _ in range(2000):
        api_key_id, workspace_id, tenant_id, dashboard_id = (
            "".join(rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(4)
        )
        valid_until = rng.choice([0, -5, 1_700_000_000, 2**40])
        claims = {
            "api_key_id": api_key_id,
            "workspace_id": workspace_id,
            "tenant_id": tenant_id,
            "dashboard_id": dashboard_id,
            "valid_until": valid_until,
            "signature": sign_v1(secret, workspace_id, valid_until),
        }
        reference = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode()
        assert mint_v1(secret, **{k: v for k, v in claims.items() if k != "signature"}) == (
            reference
        )


def test_vectors_cover_the_documented_ambiguity() -> None:
    """The last two cases really share a signature: the v1 payload signs only workspace+expiry."""
    a, b = VECTORS[-2], VECTORS[-1]
    assert a["signature"] == b["signature"]
    assert a["workspace_id"] != b["workspace_id"]


@pytest.mark.parametrize(
    ("valid_until", "now", "buffer", "expected"),
    [
        (1000, 699.0, 300, True),  # 301 s left: reusable
        (1000, 700.0, 300, False),  # exactly the buffer left: mint a fresh one
        (1000, 700.5, 300, False),
        (1000, 999.0, 0, True),
        (1000, 1000.0, 0, False),
    ],
)
def test_reuse_rule_is_strictly_more_than_the_buffer(
    valid_until: int, now: float, buffer: int, expected: bool
) -> None:
    """A token is reused only while valid_until - now > buffer."""
    assert is_reusable(valid_until, now, buffer) is expected


def test_verify_accepts_own_token_and_rejects_tampering() -> None:
    """verify_v1 recomputes the HMAC and checks expiry; a changed signature or expiry fails."""
    case = VECTORS[0]
    secret = case["secret"].encode()
    claims = verify_v1(secret, case["token"], now=case["valid_until"] - 10)
    assert claims["tenant_id"] == case["tenant_id"]
    with pytest.raises(ValueError, match="expired"):
        verify_v1(secret, case["token"], now=case["valid_until"])
    with pytest.raises(ValueError, match="signature"):
        verify_v1(b"x" * 32, case["token"], now=case["valid_until"] - 10)


def test_token_sha256_is_hex_of_the_token() -> None:
    """The audit fingerprint is the lowercase hex SHA-256 of the token text."""
    digest = token_sha256(VECTORS[0]["token"])
    assert len(digest) == 64
    assert digest == digest.lower()
    assert digest != token_sha256(VECTORS[1]["token"])


def test_vendored_vectors_match_the_shared_ones() -> None:
    """tests/vectors is a copy of the shared reference; it must not drift from it."""
    here = json.loads((Path(__file__).parents[1] / "vectors" / "iframe-token-v1.json").read_text())
    assert here["cases"] == VECTORS
