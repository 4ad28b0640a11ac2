"""What one token request learnt along the way, for its audit row and log line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Exchange:
    """Filled by the token handler as it goes; read by the middleware when it answers."""

    subject: str | None = None
    tenant_id: str | None = None
    workspace_id: str | None = None
    dashboard_id: str | None = None
    api_key_id: str | None = None
    token: str | None = None
    expires_at: int | None = None
    cache_hit: bool | None = None
    shared_mint: bool = False  # served by another request's mint: audited as token_reused
