"""The vendor's documented flow done literally: decode the JWT, look up, mint, on every request.

No cache of any kind, no audit: what a first implementation from the vendor's docs looks like.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time

import asyncpg
import jwt
import uvloop
from aiohttp import web

LOOKUP = (
    "SELECT dashboard_id FROM tenant_dashboards"
    " WHERE tenant_id = $1 AND workspace_id = $2 ORDER BY is_default DESC LIMIT 1"
)


def mint(secret: bytes, api_key_id: str, workspace: str, tenant: str, dashboard: str) -> dict:
    valid_until = int(time.time()) + 3600
    signature = hmac.new(secret, (workspace + str(valid_until)).encode(), hashlib.sha256)
    claims = {
        "api_key_id": api_key_id,
        "workspace_id": workspace,
        "tenant_id": tenant,
        "dashboard_id": dashboard,
        "valid_until": valid_until,
        "signature": signature.hexdigest(),
    }
    token = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode()
    return {"token": token, "dashboard_id": dashboard, "expires_at": valid_until}


async def issue(request: web.Request) -> web.Response:
    app = request.app
    auth = request.headers.get("Authorization", "")
    try:
        claims = jwt.decode(auth.removeprefix("Bearer "), app["jwt_secret"], algorithms=["HS256"])
    except jwt.InvalidTokenError:
        return web.json_response({"error": "unauthenticated"}, status=401)
    body = await request.json()
    tenant, workspace = body["tenant_id"], body["workspace_id"]
    if claims.get("organization_id") != tenant:
        return web.json_response({"error": "forbidden"}, status=403)
    dashboard = await app["pool"].fetchval(LOOKUP, tenant, workspace)
    if dashboard is None:
        return web.json_response({"error": "dashboard_not_found"}, status=404)
    answer = mint(app["signing_secret"], app["api_key_id"], workspace, tenant, dashboard)
    return web.json_response(answer, headers={"Cache-Control": "no-store"})


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def pool_ctx(app: web.Application):
    app["pool"] = await asyncpg.create_pool(os.environ["GATEWAY_DATABASE_URL"], max_size=10)
    yield
    await app["pool"].close()


def main() -> None:
    app = web.Application()
    app["jwt_secret"] = os.environ["GATEWAY_JWT_SECRET"].encode()
    app["signing_secret"] = os.environ["GATEWAY_SIGNING_SECRET"].encode()
    app["api_key_id"] = os.environ["GATEWAY_API_KEY_ID"]
    app.cleanup_ctx.append(pool_ctx)
    app.router.add_post("/api/v1/dashboards/iframe-token", issue)
    app.router.add_get("/healthz", healthz)
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
