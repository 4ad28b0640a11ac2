"""The demo's one set of names and its caller JWT, shared by `gateway dev` and its routes."""

from __future__ import annotations

import jwt

from gateway.settings import Settings

DEMO_SUBJECT = "demo-user"
DEMO_TENANT = "org-123"
DEMO_WORKSPACE = "workspace-456"
DEMO_DASHBOARD = "dashboard-789"
# The demo page signs in for ten minutes at a time; the JWT printed by `gateway dev` lasts a day
# so the curl line keeps working while one reads the README.
DEMO_JWT_LIFETIME = 600
BANNER_JWT_LIFETIME = 24 * 3600


def demo_jwt(settings: Settings, now: float, lifetime: int = DEMO_JWT_LIFETIME) -> str:
    """A caller JWT for the demo user of the demo tenant, signed with the dev JWT secret."""
    if settings.jwt_secret is None:
        raise ValueError("the demo needs GATEWAY_JWT_SECRET to sign its caller token")
    algorithm = next((a for a in settings.jwt_algorithms if a.startswith("HS")), "HS256")
    issued = int(now)
    claims: dict[str, object] = {
        "sub": DEMO_SUBJECT,
        settings.tenant_claim: DEMO_TENANT,
        "iat": issued,
        "exp": issued + lifetime,
    }
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm=algorithm)
