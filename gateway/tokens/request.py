"""The token endpoint's body: a JSON object, snake_case or camelCase, ids by the contract's rule."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import orjson

from gateway.errors import InvalidRequest, UnsupportedMediaType

MAX_BODY_BYTES = 16 * 1024
MAX_CACHED_BODY = 512  # bytes: bounds what the parse cache holds (4096 bodies at most)
ID_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_FIELDS = (
    ("tenant_id", "tenantId"),
    ("workspace_id", "workspaceId"),
    ("dashboard_id", "dashboardId"),
)


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A validated request for an embed token."""

    tenant_id: str
    workspace_id: str
    dashboard_id: str | None


def check_media_type(content_type: str) -> None:
    """UnsupportedMediaType unless the body is declared application/json (parameters allowed)."""
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")


def _field(body: dict[str, object], name: str, alias: str, *, required: bool) -> str | None:
    if name in body and alias in body and body[name] != body[alias]:
        raise InvalidRequest(f"{name} and {alias} disagree", reason=f"conflicting_{name}")
    value = body.get(name, body.get(alias))
    if value is None:
        if required:
            raise InvalidRequest(f"{name} is required", reason=f"missing_{name}")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", reason=f"invalid_{name}")
    # fullmatch: '$' alone would let a trailing newline through.
    if not ID_RULE.fullmatch(value):
        raise InvalidRequest(
            f"{name} must be 1-128 characters of A-Z a-z 0-9 . _ : @ -,"
            " starting with a letter or digit",
            reason=f"invalid_{name}",
        )
    return value


def parse_token_request(body: bytes) -> TokenRequest:
    """Parse and validate the JSON body; InvalidRequest says what is wrong."""
    # Callers repeat their bodies byte for byte: a valid short one is parsed once per worker
    # (refusals raise, and exceptions are never cached).
    return _parse_cached(body) if len(body) <= MAX_CACHED_BODY else _parse(body)


@functools.lru_cache(maxsize=4096)
def _parse_cached(body: bytes) -> TokenRequest:
    return _parse(body)


def _parse(body: bytes) -> TokenRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("body is not valid JSON", reason="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object", reason="not_an_object")
    tenant_id = _field(data, *_FIELDS[0], required=True)
    workspace_id = _field(data, *_FIELDS[1], required=True)
    dashboard_id = _field(data, *_FIELDS[2], required=False)
    assert tenant_id is not None  # required=True guarantees both
    assert workspace_id is not None
    return TokenRequest(tenant_id=tenant_id, workspace_id=workspace_id, dashboard_id=dashboard_id)
