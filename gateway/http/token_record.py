"""What one token request learnt along the way, for its audit row and log line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenRecord:
    """Made by the token API's audit middleware and handed down; the handler fills it in.

    The middleware owns it: it creates one per token request, passes it to the handler through
    the request, and turns it into the audit row once the answer is known.
    """

    api_key_id: str | None = None
    subject: str | None = None
    tenant_id: str | None = None
    workspace_id: str | None = None
    dashboard_id: str | None = None
    token: str | None = None
    expires_at: int | None = None
    cache_hit: bool | None = None
    # This request waited on another request's mint (so it is token_reused, not token_issued).
    shared_mint: bool = False
