"""The Redis token cache: rotating the signing secret or API key id never serves an old token."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.tokens.directory import add_mapping
from gateway.tokens.format import verify_v1
from tests.helpers import SIGNING_SECRET, auth

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
NEW_SECRET = b"rotated-signing-secret-0123456789abcdef!!"


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return db


@pytest.mark.parametrize(
    "change",
    [{"signing_secret": NEW_SECRET}, {"api_key_id": "key-rotated"}],
    ids=["signing_secret", "api_key_id"],
)
async def test_rotation_never_serves_the_old_token(make_client, settings, mapped, change) -> None:
    """An instance started after a rotation shares Redis (same prefix) with the old one, yet
    mints its own token under the new key instead of reusing the cached old one; the old
    instance keeps its own entry."""
    old = await make_client(settings)
    new = await make_client(settings, **change)
    old_token = (await (await old.post(V1, json=BODY, headers=auth())).json())["token"]
    body = await (await new.post(V1, json=BODY, headers=auth())).json()
    assert body["token"] != old_token
    secret = change.get("signing_secret", SIGNING_SECRET)
    claims = verify_v1(secret, body["token"], now=body["expires_at"] - 1)
    assert claims["api_key_id"] == change.get("api_key_id", "key-test")
    if "signing_secret" in change:
        with pytest.raises(ValueError, match="signature does not match"):
            verify_v1(NEW_SECRET, old_token, now=body["expires_at"] - 1)
    again = await (await old.post(V1, json=BODY, headers=auth())).json()
    assert again["token"] == old_token
