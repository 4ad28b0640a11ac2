"""Revocation: purge a tenant's cached tokens from Redis."""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway.tokens.store import DEFAULT_DASHBOARD, decode_entry


def _escape(value: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in value)


def token_pattern(prefix: str, tenant_id: str, workspace_id: str | None = None) -> str:
    """SCAN pattern for a tenant's cached tokens (every signing key and API key id)."""
    workspace = "*" if workspace_id is None else _escape(workspace_id)
    return f"{prefix}tok:v1|*|*|{workspace}|{_escape(tenant_id)}|*"


async def purge_tokens(
    client: aioredis.Redis,
    prefix: str,
    tenant_id: str,
    *,
    workspace_id: str | None = None,
    dashboard_id: str | None = None,
    default_only: bool = False,
) -> int:
    """Delete a tenant's cached tokens; returns how many keys went.

    With `dashboard_id`, only that dashboard's tokens, including a "default dashboard" entry that
    holds one of them. With `default_only`, only the "default dashboard" entries (the default
    changed). Keys of old signing keys are purged too: they are the tenant's tokens all the same.
    """
    deleted = 0
    async for raw_key in client.scan_iter(
        match=token_pattern(prefix, tenant_id, workspace_id), count=500
    ):
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        key_dashboard = key.rsplit("|", 1)[-1]
        if default_only and key_dashboard != DEFAULT_DASHBOARD:
            continue
        if dashboard_id is not None and key_dashboard != dashboard_id:
            if key_dashboard != DEFAULT_DASHBOARD:
                continue
            raw = await client.get(key)
            entry = None if raw is None else decode_entry(raw)
            if entry is not None and entry.dashboard_id != dashboard_id:
                continue
        deleted += await client.delete(key)
    return deleted
