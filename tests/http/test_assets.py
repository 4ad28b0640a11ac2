"""The embed client as the gateway serves it: long-lived caching, CORS, and its SRI hash."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from gateway.http.assets import CLIENT_PATH, LONG_CACHE, load_asset

ROOT = Path(__file__).resolve().parents[2]
CLIENT_FILE = ROOT / "gateway" / "http" / "static" / "embed-client.js"


def test_integrity_is_the_sha384_of_the_file() -> None:
    """The SRI value is sha384 of the exact bytes served, base64-encoded."""
    asset = load_asset("embed-client.js", "text/javascript")
    expected = base64.b64encode(hashlib.sha384(CLIENT_FILE.read_bytes()).digest()).decode()
    assert asset.integrity == f"sha384-{expected}"
    assert asset.body == CLIENT_FILE.read_bytes()


def test_readme_prints_the_current_integrity_hash() -> None:
    """The README's integrity attribute matches the client as it is now (update both together)."""
    asset = load_asset("embed-client.js", "text/javascript")
    assert asset.integrity in (ROOT / "README.md").read_text()


async def test_client_served_in_serve_mode_with_long_cache(client) -> None:
    """GET /static/embed-client.js works without dev routes, cached a year, loadable cross-site."""
    resp = await client.get(CLIENT_PATH)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == LONG_CACHE
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert await resp.read() == CLIENT_FILE.read_bytes()


async def test_client_revalidation_answers_304(client) -> None:
    """A browser that has the same file (If-None-Match with its ETag) gets 304 and no body."""
    first = await client.get(CLIENT_PATH)
    etag = first.headers["ETag"]
    again = await client.get(CLIENT_PATH, headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    other = await client.get(CLIENT_PATH, headers={"If-None-Match": '"something-else"'})
    assert other.status == 200
