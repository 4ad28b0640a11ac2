"""The ONE Redis key layout (v2): every key of a tenant carries the tenant as its hash tag.

In a Redis Cluster a hash tag (`{...}`) picks the slot, so a tenant's token entries, its
default-dashboard aliases, its mint budget and its revocation generations all live in one slot
and one script may touch any of them. The tag is the tenant alone (not tenant + workspace)
because the tenant's mint budget and its revocation span all of its workspaces. Ids are checked
against `tokens.request.ID_RULE`, which allows none of `{`, `}` or `|`, so no id can break a key.
Nothing here is ever found by SCAN or KEYS: every key is computed from what a caller knows.
"""

from __future__ import annotations

import hashlib
import hmac

# Marks "the tenant's default dashboard" in a key; '*' can never appear in a validated id.
DEFAULT_DASHBOARD = "*"
VERSION = "v2"

# Fields of a tenant's generation hash: the tenant as a whole, one dashboard, one workspace's
# default-dashboard alias. A token entry records the values it was stored under.
TENANT_FIELD = "t"


def dashboard_field(dashboard_id: str) -> str:
    """The generation field of one dashboard (across the tenant's workspaces)."""
    return f"d:{dashboard_id}"


def alias_field(workspace_id: str) -> str:
    """The generation field of one workspace's default-dashboard alias."""
    return f"a:{workspace_id}"


def key_fingerprint(signing_secret: bytes) -> str:
    """A short, one-way tag of the signing key, so rotating it never serves an old token."""
    return hmac.new(signing_secret, b"embed-gateway cache key v1", hashlib.sha256).hexdigest()[:16]


def subject_tag(subject: str) -> str:
    """A subject is free text from the caller's JWT: hashed so keys stay short and clean."""
    return hashlib.sha256(subject.encode()).hexdigest()[:32]


class KeyLayout:
    """Every Redis key the gateway and its CLI use, under one configurable prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _tenant(self, tenant_id: str) -> str:
        return f"{self.prefix}{VERSION}:{{{tenant_id}}}"

    def token(
        self,
        fingerprint: str,
        api_key_id: str,
        workspace_id: str,
        tenant_id: str,
        dashboard_id: str,
    ) -> str:
        """One token entry: (signing key, api key, workspace, tenant, dashboard or '*')."""
        tail = f"{fingerprint}|{api_key_id}|{workspace_id}|{dashboard_id}"
        return f"{self._tenant(tenant_id)}:tok|{tail}"

    def generations(self, tenant_id: str) -> str:
        """The tenant's revocation generations (a hash; fields above)."""
        return f"{self._tenant(tenant_id)}:gen"

    def changed(self, tenant_id: str) -> str:
        """Present for a while after a mapping change: read the directory from the primary."""
        return f"{self._tenant(tenant_id)}:chg"

    def tenant_budget(self, tenant_id: str) -> str:
        """The tenant's mint budget (GCRA state)."""
        return f"{self._tenant(tenant_id)}:rl"

    def subject_budget(self, subject: str) -> str:
        """A caller subject's mint budget: its own slot, checked in its own call."""
        return f"{self.prefix}{VERSION}:{{sub:{subject_tag(subject)}}}:rl"

    def in_use(self) -> str:
        """Written by every gateway at start, so `gateway revoke` can tell a prefix is in use."""
        return f"{self.prefix}{VERSION}:in-use"
